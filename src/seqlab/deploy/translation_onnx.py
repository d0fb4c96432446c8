"""ONNX export of a translation model as two graphs, and the ONNX Runtime model that decodes with them.

    encoder.onnx       `start`: source_ids (B, S) and source_lengths (B,) -> the decoding state's tensors
    decoder_step.onnx  `step`: the state's tensors and tokens (N,) -> log_probs (N, V) and the tensors the
                       step changes, named `next_<name>` (the rest of the state is read, never changed)

The state's names are the model's own (`seqlab.models.decoding`): a Transformer's keys and values of
each decoder layer over the target so far (`self_k<i>`, `self_v<i>`) grow by one position a step, so
their length is a dynamic axis (`cache`) and a step reads the kept keys and values, not the prefix.
Batch, source length and cache length are dynamic axes of both graphs.

`OnnxEncoderDecoder` runs the two graphs behind `start` and `step`, so seqlab's own greedy and beam
search decode with it unchanged. The export is checked on random sources: greedy and beam
translations equal to PyTorch's token for token and every step's log-probabilities within TOLERANCE,
or no bundle is written.

The recurrent encoder reads packed sequences, which torch.export cannot trace; it exports as the
equivalent padded forward of the classifiers' export (`PaddedRNNEncoder`), which the check covers.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqlab.data.tokenizers import TextTokenizer
from seqlab.deploy.bundle import TRANSLATION_ONNX_FILES
from seqlab.deploy.onnx_export import _single_layer, forget_recurrence_kernels, quiet_exporter, random_batches
from seqlab.errors import SeqlabError
from seqlab.models.decoding import GeneratesTranslations, State, beam_search, greedy_decode
from seqlab.models.masks import padding_mask
from seqlab.models.rnn_seq2seq import RNNSeq2Seq
from seqlab.tasks.seq2seq import Seq2SeqTask

log = logging.getLogger(__name__)

ENCODER, DECODER_STEP = TRANSLATION_ONNX_FILES
TOLERANCE = 1e-4
SOURCE_INPUTS = ["source_ids", "source_lengths"]
NEXT = "next_"


class PaddedRNNEncoder(nn.Module):
    """`RNNSeq2Seq`'s bidirectional encoder without packed sequences, giving the same states.

    Each direction of each layer runs as a single-layer nn.GRU or nn.LSTM with the encoder's weights;
    the backward direction reads every source reversed within its length, so its last state is the
    packed encoder's. Memory at padded positions is zero, as `pad_packed_sequence` leaves it.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for layer in range(encoder.num_layers):
            cells = nn.ModuleList()
            for direction in range(2):
                cell_type, weights = _single_layer(encoder, layer, direction)
                single = cell_type(weights["weight_ih_l0"].size(1), encoder.hidden_size, num_layers=1, bias="bias_ih_l0" in weights, batch_first=True)
                single.load_state_dict({name: tensor.detach() for name, tensor in weights.items()})
                cells.append(single)
            self.layers.append(cells)
        self.hidden_size = encoder.hidden_size

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embedded (B, S, E), lengths (B,) at least 1 -> memory (B, S, 2H), last states (layers, 2, B, H)."""
        steps = torch.arange(embedded.size(1), device=embedded.device)[None, :]  # (1, S)
        last = (lengths - 1)[:, None]  # (B, 1)
        valid = steps <= last  # (B, S)
        reversed_steps = torch.where(valid, last - steps, steps)  # step t of the reversed source is len-1-t

        def reverse(x: torch.Tensor) -> torch.Tensor:
            return x.gather(1, reversed_steps[:, :, None].expand(-1, -1, x.size(-1)))

        x, finals = embedded, []
        for cells in self.layers:
            forward_out = cells[0](x)[0]  # (B, S, H)
            backward_out = reverse(cells[1](reverse(x))[0])
            forward_last = forward_out.gather(1, last[:, :, None].expand(-1, 1, self.hidden_size))[:, 0]  # (B, H)
            finals.append(torch.stack((forward_last, backward_out[:, 0]), dim=0))  # (2, B, H)
            x = torch.cat((forward_out, backward_out), dim=-1) * valid[:, :, None].to(embedded.dtype)
        return x, torch.stack(finals, dim=0)


class EncoderGraph(nn.Module):
    """What encoder.onnx computes: `start`'s state as a tuple in `names` order."""

    def __init__(self, net: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.net = net
        self.names = names
        self.padded = PaddedRNNEncoder(net.encoder) if isinstance(net, RNNSeq2Seq) else None

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.padded_rnn_start(source_ids, source_lengths) if self.padded is not None else self.net.start(source_ids, source_lengths)
        return tuple(state[name] for name in self.names)

    def padded_rnn_start(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        """`RNNSeq2Seq.encode` with the padded encoder."""
        net = self.net
        lengths = source_lengths.clamp(min=1)
        memory, finals = self.padded(net.source_embedding(source_ids), lengths)  # finals (layers, 2, B, H)
        both_directions = finals.permute(0, 2, 1, 3).flatten(2)  # (layers, B, 2H)
        start = torch.tanh(net.bridge(both_directions))
        state = {
            "memory": memory,
            "keys": net.attention.project_keys(memory),
            "valid": padding_mask(lengths, source_ids.size(1)),
            "hidden": start.transpose(0, 1).contiguous(),
            "feed": memory.new_zeros(source_ids.size(0), net.hidden_dim),
        }
        if net.cell == "lstm":
            state["cell"] = torch.zeros_like(state["hidden"])
        return state


class DecoderStepGraph(nn.Module):
    """What decoder_step.onnx computes: `step` on the state's tensors (in `names` order) and tokens ->
    log_probs and the tensors named `changed`."""

    def __init__(self, net: nn.Module, names: list[str], changed: list[str]) -> None:
        super().__init__()
        self.net, self.names, self.changed = net, names, changed

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *tensors, tokens = inputs
        log_probs, state = self.net.step(dict(zip(self.names, tensors)), tokens)
        return (log_probs, *(state[name] for name in self.changed))


class OnnxEncoderDecoder(GeneratesTranslations):
    """An `EncoderDecoder` whose `start` and `step` run encoder.onnx and decoder_step.onnx in ONNX Runtime."""

    def __init__(self, directory: Path, bos_id: int, eos_id: int, pad_id: int, device: str = "cpu") -> None:
        import onnxruntime  # the optional `deploy` extra

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.encoder = onnxruntime.InferenceSession(str(directory / ENCODER), providers=providers)
        self.decoder_step = onnxruntime.InferenceSession(str(directory / DECODER_STEP), providers=providers)
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.device = torch.device(device)
        self.state_names = [output.name for output in self.encoder.get_outputs()]
        self.step_inputs = [graph_input.name for graph_input in self.decoder_step.get_inputs()]
        self.step_outputs = [output.name for output in self.decoder_step.get_outputs()]

    def start(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        arrays = self.encoder.run(self.state_names, {"source_ids": source_ids.cpu().numpy(), "source_lengths": source_lengths.cpu().numpy()})
        return {name: torch.from_numpy(array).to(self.device) for name, array in zip(self.state_names, arrays)}

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        feeds = {name: (tokens if name == "tokens" else state[name]).cpu().numpy() for name in self.step_inputs}
        log_probs, *changed = self.decoder_step.run(self.step_outputs, feeds)
        updated = {name.removeprefix(NEXT): torch.from_numpy(array).to(self.device) for name, array in zip(self.step_outputs[1:], changed)}
        return torch.from_numpy(log_probs).to(self.device), {**state, **updated}

    def eval(self) -> "OnnxEncoderDecoder":  # seqlab's decoding switches a model to eval mode; these graphs only infer
        return self

    def train(self, mode: bool = True) -> "OnnxEncoderDecoder":
        return self

    training = False


class OnnxTranslationModel:
    """An ONNX bundle's translation model, as `TranslationPredictor` uses a `Seq2SeqTask`: `translate` is
    the task's own, so sources and translations are cut and decoded exactly as from the checkpoint."""

    translate = Seq2SeqTask.translate

    def __init__(self, net: OnnxEncoderDecoder, tokenizer: TextTokenizer, decoding: dict[str, Any]) -> None:
        """`tokenizer` decodes translations (the target side's); `decoding` is the manifest's record of
        the task's settings (`decoding_settings`)."""
        self.net, self.tokenizer = net, tokenizer
        self.beam_sizes = {"test": decoding["test_beam_size"]}
        self.max_decode_length = decoding["max_decode_length"]
        self.length_penalty = decoding["length_penalty"]

    def to(self, device: str) -> "OnnxTranslationModel":  # the sessions' providers were chosen when they were opened
        return self

    def eval(self) -> "OnnxTranslationModel":
        return self


def decoding_settings(task: Seq2SeqTask) -> dict[str, Any]:
    """What an ONNX bundle's manifest records of the task, for `OnnxTranslationModel`."""
    net = task.net
    return {
        "bos_id": net.bos_id,
        "eos_id": net.eos_id,
        "pad_id": net.pad_id,
        "test_beam_size": task.beam_sizes["test"],
        "max_decode_length": task.max_decode_length,
        "length_penalty": task.length_penalty,
    }


def export_translation_onnx(task: Any, directory: Path, vocab_size: int, pad_id: int, max_length: int) -> dict[str, Any]:
    """Write `task.net` as encoder.onnx and decoder_step.onnx in `directory`; return the agreement check.
    `vocab_size` and `pad_id` are the source side's, `max_length` the longest source to check.
    Raises SeqlabError when the export fails or ONNX Runtime translates differently from PyTorch."""
    net = task.net.cpu().eval()
    name = type(net).__name__
    max_length = min(max_length, getattr(net, "max_len", max_length))
    samples = [sample_state(net, batch, source, steps, vocab_size, pad_id) for batch, source, steps in ((3, 6, 4), (5, 9, 2))]
    before, after, tokens, sample_source, _ = samples[0]
    state_names = list(before)
    changed = [key for key, tensor in after.items() if tensor is not before[key]]
    axes = state_axes(samples, max_length, getattr(net, "max_len", None))
    batch = axes["batch"]
    source_shapes = {"source_ids": {0: batch, 1: axes["source"]}, "source_lengths": {0: batch}}
    try:
        forget_recurrence_kernels()
        with torch.no_grad(), quiet_exporter():
            torch.onnx.export(
                EncoderGraph(net, state_names).eval(),
                sample_source,
                str(directory / ENCODER),
                input_names=SOURCE_INPUTS,
                output_names=state_names,
                dynamic_shapes=source_shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            forget_recurrence_kernels()
            step_inputs = (*(before[key] for key in state_names), tokens)
            torch.onnx.export(
                DecoderStepGraph(net, state_names, changed).eval(),
                step_inputs,
                str(directory / DECODER_STEP),
                input_names=[*state_names, "tokens"],
                output_names=["log_probs", *(NEXT + key for key in changed)],
                dynamic_shapes=((*(dynamic_dims(samples, key, axes) for key in state_names), {0: batch}),),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many kinds; the user needs the first line and a way out
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SeqlabError(f"ONNX export of {name} failed ({first_line}); format=safetensors exports any translation model") from None
    name_source_axes(directory / ENCODER, {key: dynamic_dims(samples, key, axes) for key in state_names if key not in changed})
    return check_translation_onnx(task, directory, vocab_size, pad_id, max_length)


def sample_state(net: nn.Module, batch: int, source: int, steps: int, vocab_size: int, pad_id: int) -> tuple:
    """A decoding state of `batch` sources of up to `source` tokens after `steps` random tokens; the state
    before and after one more step, that step's tokens, and the sources."""
    generator = torch.Generator().manual_seed(batch)
    source_ids = torch.randint(0, vocab_size, (batch, source), generator=generator)
    source_lengths = torch.randint(1, source + 1, (batch,), generator=generator)
    source_lengths[0] = source
    source_ids[torch.arange(source)[None, :] >= source_lengths[:, None]] = pad_id
    target_vocab = net.target_embedding.num_embeddings
    with torch.no_grad():
        state = net.start(source_ids, source_lengths)
        for _ in range(steps):
            _, state = net.step(state, torch.randint(0, target_vocab, (batch,), generator=generator))
        tokens = torch.randint(0, target_vocab, (batch,), generator=generator)
        _, after = net.step(state, tokens)
    return state, after, tokens, (source_ids, source_lengths), (batch, source, steps)


def state_axes(samples: list[tuple], max_source: int, max_len: int | None) -> dict[str, torch.export.Dim]:
    """The dynamic axes: batch, source length and (a Transformer's kept keys and values) cache length."""
    cache_max = {"max": max_len - 1} if max_len else {}
    return {
        "batch": torch.export.Dim("batch", min=1),
        "source": torch.export.Dim("source", min=1, max=max(max_source, samples[-1][4][1])),
        "cache": torch.export.Dim("cache", min=0, **cache_max),
    }


def dynamic_dims(samples: list[tuple], key: str, axes: dict[str, torch.export.Dim]) -> dict[int, torch.export.Dim]:
    """The axes of state tensor `key` that follow the batch, source or cache length: those whose sizes in
    the two samples are the samples' batch sizes, source lengths or step counts."""
    (first, *_, sizes_a), (second, *_, sizes_b) = samples[0], samples[1]
    by_sizes = {(a, b): axis for axis, a, b in zip(("batch", "source", "cache"), sizes_a, sizes_b)}
    dims = {}
    for dim, (a, b) in enumerate(zip(first[key].shape, second[key].shape)):
        if a != b:
            dims[dim] = axes[by_sizes[(a, b)]]
    return dims


def name_source_axes(path: Path, dims: dict[str, dict[int, torch.export.Dim]]) -> None:
    """Name the batch and source axes of encoder.onnx's outputs where the exporter recorded the sample's
    sizes (the recurrent encoder's outputs), so ONNX Runtime does not warn of a mismatch on every source."""
    import onnx

    model = onnx.load(str(path))
    for output in model.graph.output:
        for index, dim in dims.get(output.name, {}).items():
            output.type.tensor_type.shape.dim[index].dim_param = dim.__name__
    del model.graph.value_info[:]  # the intermediate shapes recorded with the same sizes; ONNX Runtime infers them again
    onnx.save(model, str(path))


def check_translation_onnx(task: Any, directory: Path, vocab_size: int, pad_id: int, max_length: int) -> dict[str, Any]:
    """Greedy and beam translations of random sources by ONNX Runtime and by PyTorch, and the largest
    difference of their step log-probabilities along PyTorch's greedy path."""
    net = task.net
    onnx_net = OnnxEncoderDecoder(directory, net.bos_id, net.eos_id, net.pad_id)
    beam_size = task.beam_sizes["test"]
    shapes, worst = [], 0.0
    for ids, lengths in random_batches(vocab_size, pad_id, max_length, seed=1)[:4]:
        source_ids, source_lengths = torch.from_numpy(ids), torch.from_numpy(lengths)
        max_len = min(task.max_decode_length, 2 * int(source_lengths.max()) + 10)  # as Seq2SeqTask.translate
        with runtime_errors_reported(ids.shape):
            worst = max(worst, step_difference(net, onnx_net, source_ids, source_lengths, max_len))
        if not worst <= TOLERANCE:
            raise SeqlabError(
                f"the exported ONNX graphs disagree with PyTorch (step log-probs max abs difference {worst:.3g} > {TOLERANCE:g}); no bundle was written"
            )
        with runtime_errors_reported(ids.shape):
            greedy = [greedy_decode(model, source_ids, source_lengths, max_len) for model in (net, onnx_net)]
            beams = [beam_search(model, source_ids, source_lengths, beam_size, max_len, task.length_penalty) for model in (net, onnx_net)]
        for search, (expected, actual) in (("greedy", greedy), (f"beam {beam_size}", beams)):
            if not torch.equal(expected, actual):
                raise SeqlabError(
                    f"the exported ONNX graphs translate differently from PyTorch ({search} search, sources of shape {list(ids.shape)}); no bundle was written"
                )
        shapes.append(list(ids.shape))
    log.info("ONNX Runtime vs PyTorch: same greedy and beam translations; step log-probs max abs difference %.3g over sources %s", worst, shapes)
    return {"max_abs_diff": worst, "tolerance": TOLERANCE, "batch_shapes": shapes, "same_translations": ["greedy", f"beam {beam_size}"]}


@contextmanager
def runtime_errors_reported(shape: tuple[int, ...]) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # ONNX Runtime's own exception types
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SeqlabError(f"the exported ONNX graphs fail on sources of shape {list(shape)} ({first_line}); no bundle was written") from None


@torch.no_grad()
def step_difference(net: nn.Module, onnx_net: OnnxEncoderDecoder, source_ids: torch.Tensor, source_lengths: torch.Tensor, steps: int) -> float:
    """Max abs difference of the two models' log-probabilities at every step of PyTorch's greedy path."""
    state, onnx_state = net.start(source_ids, source_lengths), onnx_net.start(source_ids, source_lengths)
    tokens = torch.full((source_ids.size(0),), net.bos_id, dtype=torch.long)
    worst = 0.0
    for _ in range(steps):
        log_probs, state = net.step(state, tokens)
        onnx_log_probs, onnx_state = onnx_net.step(onnx_state, tokens)
        worst = max(worst, float((log_probs - onnx_log_probs).abs().max()))
        tokens = log_probs.argmax(-1)
    return worst
