"""ONNX export of a classification task with dynamic batch and sequence axes, checked against PyTorch.

torch.onnx.export's exporter (torch.export) cannot trace packed sequences, which the recurrent
classifiers use so that padding never reaches the recurrence. For export they run an equivalent
forward on padded batches (`PaddedRNNClassifier`): unpacked recurrences, the backward direction
reading each sequence reversed within its length. The check compares ONNX Runtime with the
task's own (packed) forward, so it covers that rewrite as well as the export.
"""

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.masks import padding_mask
from seqlab.models.rnn import ElmanRNN, RNNClassifier

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
INPUT_NAMES = ["input_ids", "lengths"]
OUTPUT_NAMES = ["probs"]


class PaddedRNNClassifier(nn.Module):
    """`RNNClassifier`'s inference forward without packed sequences, giving the same outputs.

    Each direction of each layer runs as its own single-layer nn.LSTM or nn.GRU (which the tanh
    Elman RNN is a case of) with the classifier's weights, which ONNX has operators for.
    Outputs at valid steps of the forward direction never depend on later padding; the backward
    direction reads every sequence reversed within its length, so it starts at the last real
    token, as the packed forward does.
    """

    def __init__(self, classifier: RNNClassifier) -> None:
        super().__init__()
        recurrence = classifier.recurrence
        self.embedding = classifier.embedding
        self.head = classifier.head
        self.pooling = classifier.pooling
        self.bidirectional = classifier.bidirectional
        directions = 2 if self.bidirectional else 1
        self.layers = nn.ModuleList()
        for layer in range(recurrence.num_layers):
            cells = nn.ModuleList()
            for direction in range(directions):
                cell_type, weights = _single_layer(recurrence, layer, direction)
                hidden_size, input_size = weights["weight_hh_l0"].size(1), weights["weight_ih_l0"].size(1)
                single = cell_type(input_size, hidden_size, num_layers=1, bias="bias_ih_l0" in weights, batch_first=True)
                single.load_state_dict({name: tensor.detach() for name, tensor in weights.items()})
                cells.append(single)
            self.layers.append(cells)
        self.hidden_dim = hidden_size

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(input_ids.size(1), device=input_ids.device)[None, :]  # (1, T)
        last = (lengths - 1).clamp(min=0)[:, None]  # (B, 1)
        valid = padding_mask(last[:, 0] + 1, input_ids.size(1))  # (B, T), up to `last` (step 0 for a length 0)
        # Step t of the reversed sequence is step len-1-t of the original; padding stays in place.
        reversed_steps = torch.where(valid, last - steps, steps)

        def reverse(x: torch.Tensor) -> torch.Tensor:
            return x.gather(1, reversed_steps[:, :, None].expand(-1, -1, x.size(-1)))

        x = self.embedding(input_ids)
        for cells in self.layers:
            outputs = [cells[0](x)[0]]
            if self.bidirectional:
                outputs.append(reverse(cells[1](reverse(x))[0]))
            x = torch.cat(outputs, dim=-1)  # (B, T, H * dirs)

        pooled = []  # concat: last, max, mean, as RNNClassifier orders them
        if self.pooling in ("last", "concat"):
            forward_last = x.gather(1, last[:, :, None].expand(-1, 1, x.size(-1)))[:, 0, : self.hidden_dim]
            pooled.append(torch.cat([forward_last, x[:, 0, self.hidden_dim :]], dim=-1) if self.bidirectional else forward_last)
        if self.pooling in ("max", "concat"):
            pooled.append(x.masked_fill(~valid[:, :, None], float("-inf")).amax(1))
        if self.pooling in ("mean", "concat"):
            mask = valid[:, :, None].to(x.dtype)
            pooled.append((x * mask).sum(1) / mask.sum(1).clamp(min=1))
        return self.head(torch.cat(pooled, dim=-1))


# A gate pre-activation this large saturates the sigmoid to exactly 0 or 1 in float32.
SATURATED = 1e4


def _single_layer(recurrence: nn.Module, layer: int, direction: int) -> tuple[type[nn.Module], dict[str, torch.Tensor]]:
    """The torch recurrence type and single-layer state dict of one layer and direction.

    A tanh Elman RNN step is a GRU step whose reset gate is held open and update gate shut
    (n = tanh(W_in x + b_in + r * W_hn h), h' = (1 - z) n + z h with r = 1, z = 0), so it exports as
    a GRU: torch.export turns nn.RNN into a fixed-length loop, but nn.GRU into ONNX's GRU operator.
    """
    if isinstance(recurrence, ElmanRNN):
        index = layer * (2 if recurrence.bidirectional else 1) + direction
        input_map, recurrent_map = recurrence.input_maps[index], recurrence.recurrent_maps[index]
        hidden = recurrent_map.weight.size(0)
        closed = torch.zeros(hidden, dtype=input_map.bias.dtype, device=input_map.bias.device)
        return nn.GRU, {
            "weight_ih_l0": torch.cat([torch.zeros_like(input_map.weight)] * 2 + [input_map.weight]),
            "weight_hh_l0": torch.cat([torch.zeros_like(recurrent_map.weight)] * 2 + [recurrent_map.weight]),
            "bias_ih_l0": torch.cat([closed + SATURATED, closed - SATURATED, input_map.bias]),
            "bias_hh_l0": torch.zeros(3 * hidden, dtype=closed.dtype, device=closed.device),
        }
    suffix = "_reverse" if direction else ""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if recurrence.bias else [])
    return type(recurrence), {f"{name}_l0": getattr(recurrence, f"{name}_l{layer}{suffix}") for name in names}


def has_padded_form(net: nn.Module) -> bool:
    """Recurrent classifiers whose cells ONNX's LSTM and GRU operators compute: LSTM, GRU and the
    tanh Elman RNN (a sigmoid or relu Elman RNN keeps its own forward, a loop over time steps)."""
    if not isinstance(net, RNNClassifier):
        return False
    recurrence = net.recurrence
    if isinstance(recurrence, ElmanRNN):
        return recurrence.nonlinearity == "tanh"
    return isinstance(recurrence, (nn.LSTM, nn.GRU))


class ProbabilityModel(nn.Module):
    """What the ONNX model computes: token ids and lengths to class probabilities."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task
        self.net = PaddedRNNClassifier(task.net) if has_padded_form(task.net) else task.net

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.task.probabilities(self.net(input_ids, lengths))


def random_batches(vocab_size: int, pad_id: int, max_length: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Padded batches of several sizes and lengths, each with rows of different lengths (one full)."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (2, 3), (5, min(17, max_length)), (8, max(1, max_length // 2)), (16, max_length)]
    batches = []
    for batch_size, width in shapes:
        lengths = rng.integers(1, width + 1, size=batch_size)
        lengths[0] = width
        ids = rng.integers(0, vocab_size, size=(batch_size, width))
        ids[np.arange(width)[None, :] >= lengths[:, None]] = pad_id
        batches.append((ids.astype(np.int64), lengths.astype(np.int64)))
    return batches


def export_onnx(task: nn.Module, path: Path, vocab_size: int, pad_id: int, max_length: int) -> dict:
    """Write `task` as ONNX at `path`; return the agreement check. Raises SeqlabError if ONNX Runtime
    and PyTorch differ by more than TOLERANCE on any batch."""
    task = task.cpu().eval()
    model = ProbabilityModel(task).eval()
    sample_ids, sample_lengths = random_batches(vocab_size, pad_id, max(max_length, 4))[2]
    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=1)
    forget_recurrence_kernels()
    try:
        with torch.no_grad(), quiet_exporter():
            torch.onnx.export(
                model,
                (torch.from_numpy(sample_ids), torch.from_numpy(sample_lengths)),
                str(path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "lengths": {0: batch}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many kinds; the user needs the first line and a way out
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SeqlabError(f"ONNX export of {type(task.net).__name__} failed ({first_line}); format=safetensors exports any model") from None
    require_dynamic_axes(path, type(task.net).__name__)
    return check_onnx(task, path, vocab_size, pad_id, max_length)


def forget_recurrence_kernels() -> None:
    """Make the exporter's own LSTM and GRU decompositions apply to every export of the process.

    The exporter registers them for each export and removes them after, but the operators keep the
    kernel they dispatched to the first time in a private cache; without clearing it, a second
    export in one process (the members of a fold ensemble) traces the recurrences step by step for
    the sample's length and loses the dynamic sequence axis.
    """
    for operator in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        operator._dispatch_cache.clear()


def require_dynamic_axes(path: Path, model_name: str) -> None:
    """A model whose forward loops over time steps in Python exports for the sample's length only."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for graph_input in graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        fixed = [index for index, dim in enumerate(dims) if not dim.dim_param]
        if fixed:
            raise SeqlabError(
                f"{model_name} exports to ONNX only for fixed sizes ({graph_input.name} axes {fixed} are not dynamic); format=safetensors exports any model"
            )


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter narrates every pass at INFO and prints its steps; seqlab reports the outcome instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_onnx(task: nn.Module, path: Path, vocab_size: int, pad_id: int, max_length: int) -> dict:
    """Max abs difference between ONNX Runtime and the task's PyTorch forward over random batches."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes, worst = [], 0.0
    for ids, lengths in random_batches(vocab_size, pad_id, max_length, seed=1):
        with torch.no_grad():
            expected = task(torch.from_numpy(ids), torch.from_numpy(lengths)).float().numpy()
        try:
            actual = session.run(OUTPUT_NAMES, {"input_ids": ids, "lengths": lengths})[0]
        except Exception as error:  # ONNX Runtime's own exception types
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise SeqlabError(f"the exported ONNX model fails on a batch of shape {list(ids.shape)} ({first_line}); no bundle was written") from None
        difference = float(np.abs(expected - actual).max())
        shapes.append(list(ids.shape))
        worst = max(worst, difference)
    log.info("ONNX Runtime vs PyTorch: max abs difference %.3g over batches %s", worst, shapes)
    if not worst <= TOLERANCE:
        raise SeqlabError(f"the exported ONNX model disagrees with PyTorch (max abs difference {worst:.3g} > {TOLERANCE:g}); no bundle was written")
    return {"max_abs_diff": worst, "tolerance": TOLERANCE, "batch_shapes": shapes}
