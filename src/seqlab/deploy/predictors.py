"""Text classifiers ready for inference: texts in, a label and the probability of every label out.

The same tokenisation, truncation and padding serve a checkpoint (PyTorch), a safetensors bundle
(PyTorch) and an ONNX bundle (ONNX Runtime), so their predictions agree.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.data.batching import PadToLongest, longest_first
from seqlab.data.text_files import TextFilesDataModule, format_of
from seqlab.data.tokenizers import TextTokenizer
from seqlab.deploy.bundle import ONNX, Bundle, open_bundle
from seqlab.deploy.inputs import TrainingFile
from seqlab.runs.record import SavedRun, read_run
from seqlab.runs.trained import CLASSIFICATION, check_same_labels, require_kind, token_limit, trained_task_from_run

# Texts a model call takes at most: enough to amortise a call, few enough that texts of similar
# length share one (see ClassificationPredictor.text_probabilities).
RUN_OF_TEXTS = 32


@dataclass
class Predictions:
    items: list[dict[str, Any]]  # {"label": name, "probs": {name: probability}} per text, in order
    truncated: list[int]  # positions of the texts cut to the model's limit


class Predictor(ABC):
    """Texts in, each text's most probable label and the probability of every label out: one
    classifier (`ClassificationPredictor`) or the mean of several (`EnsemblePredictor`)."""

    label_names: list[str]  # in the order of the probabilities
    max_length: int | None  # the most tokens of a text the model reads; longer texts are truncated
    # How the run read its training file, when it trained on one and the model comes from its checkpoint.
    trained_on: TrainingFile | None = None

    @abstractmethod
    def text_probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """(len(texts), num_labels) probabilities in `label_names` order, and the positions of the texts truncated."""

    def predict(self, texts: Sequence[str]) -> Predictions:
        probs, truncated = self.text_probabilities(texts)
        names = self.label_names
        items = [{"label": names[int(row.argmax())], "probs": {name: float(p) for name, p in zip(names, row)}} for row in probs]
        return Predictions(items, truncated)


class ClassificationPredictor(Predictor):
    """Tokenises, truncates to `max_length` tokens (the length the model was trained on), pads to the
    longest text of the batch and asks the model for class probabilities."""

    def __init__(self, tokenizer: TextTokenizer, label_names: Sequence[str], max_length: int | None) -> None:
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.max_length = max_length
        self._collate = PadToLongest(tokenizer.pad_id)

    @abstractmethod
    def probabilities(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(B, T) int64 ids and (B,) int64 lengths -> (B, num_labels) float probabilities."""

    def text_probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        encoded = self.tokenizer.encode_batch(list(texts))
        limit = self.max_length
        truncated = [i for i, ids in enumerate(encoded) if limit and len(ids) > limit]
        # Cut as training cut: the tokenizer's own truncation, which keeps a pretrained tokenizer's final [SEP].
        for i, ids in zip(truncated, self.tokenizer.encode_batch([texts[i] for i in truncated], max_length=limit)):
            encoded[i] = ids
        probs = np.empty((len(encoded), len(self.label_names)), dtype=np.float32)
        # Longest first, in runs of at most RUN_OF_TEXTS: each run is padded to its own longest text,
        # not the whole call's (seqlab-serve merges concurrent requests into one call, and a model
        # exported for ONNX Runtime computes every padded position).
        order = longest_first([len(ids) for ids in encoded])
        for start in range(0, len(order), RUN_OF_TEXTS):
            run = order[start : start + RUN_OF_TEXTS]
            batch = self._collate([(np.asarray(encoded[i], dtype=np.int64), 0) for i in run])
            probs[run] = self.probabilities(batch["input_ids"].numpy(), batch["lengths"].numpy())
        return probs, truncated


class EnsemblePredictor(Predictor):
    """The mean of its members' class probabilities (in the first member's label order). Each member
    tokenises and truncates with its own tokenizer: the folds of a cross-validation each fitted theirs."""

    def __init__(self, members: Sequence[Predictor], names: Sequence[str]) -> None:
        check_same_labels([(name, member.label_names) for name, member in zip(names, members)])
        self.members = list(members)
        self.label_names = list(members[0].label_names)
        limits = [member.max_length for member in members if member.max_length]
        self.max_length = min(limits) if limits else None  # a text this long is truncated by some member
        self.trained_on = members[0].trained_on
        self._label_orders = [[member.label_names.index(name) for name in self.label_names] for member in members]

    def text_probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        total, truncated = None, set()
        for member, order in zip(self.members, self._label_orders):
            probs, member_truncated = member.text_probabilities(texts)
            probs = probs[:, order].astype(np.float64)
            total = probs if total is None else total + probs
            truncated.update(member_truncated)
        return total / len(self.members), sorted(truncated)


class TorchPredictor(ClassificationPredictor):
    """A classification task's own forward (probabilities) in PyTorch."""

    def __init__(self, task: Any, tokenizer: TextTokenizer, label_names: Sequence[str], max_length: int | None, device: str = "cpu") -> None:
        super().__init__(tokenizer, label_names, max_length)
        self.device = torch.device(device)
        self.task = task.to(self.device).eval()

    def probabilities(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            probs = self.task(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(lengths).to(self.device))
        return probs.float().cpu().numpy()


class OnnxPredictor(ClassificationPredictor):
    """An exported ONNX model run by ONNX Runtime; inputs `input_ids` and `lengths`, output `probs`."""

    def __init__(self, model_path: str, tokenizer: TextTokenizer, label_names: Sequence[str], max_length: int | None, device: str = "cpu") -> None:
        import onnxruntime  # the optional `deploy` extra, which checkpoint predictions do without

        super().__init__(tokenizer, label_names, max_length)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(model_path, providers=providers)

    def probabilities(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(["probs"], {"input_ids": input_ids, "lengths": lengths})[0]


def predictor_from_checkpoint(ckpt_path: str, paths: Any, command: str, device: str = "cpu", trusted_packages: Iterable[str] = ()) -> TorchPredictor:
    return predictor_from_run(read_run(ckpt_path, trusted_packages=trusted_packages), ckpt_path, paths, command, device)


def predictor_from_run(saved: SavedRun, ckpt_path: str, paths: Any, command: str, device: str = "cpu") -> TorchPredictor:
    """The classifier of a checkpoint `read_run` has already read."""
    trained = trained_task_from_run(saved, ckpt_path, paths, CLASSIFICATION, command)
    datamodule = trained.datamodule
    limit = token_limit(datamodule, trained.task.net)
    predictor = TorchPredictor(trained.task, datamodule.tokenizer, datamodule.label_names, limit, device)
    if isinstance(datamodule, TextFilesDataModule):
        train_file = Path(datamodule.file_names["train"])
        predictor.trained_on = TrainingFile(train_file.suffix.lower(), datamodule.format or format_of(train_file), datamodule.text_column)
    return predictor


def predictor_from_checkpoints(
    named_ckpt_paths: Sequence[tuple[str, str]], paths: Any, command: str, device: str = "cpu", trusted_packages: Iterable[str] = ()
) -> EnsemblePredictor:
    """The ensemble of the classifiers in (name, checkpoint) pairs."""
    members = [predictor_from_checkpoint(ckpt_path, paths, command, device, trusted_packages) for _, ckpt_path in named_ckpt_paths]
    return EnsemblePredictor(members, [name for name, _ in named_ckpt_paths])


def predictor_from_bundle(bundle_dir: str, command: str, device: str = "cpu", trusted_packages: Iterable[str] = ()) -> Predictor:
    return classifier_from_bundle(open_bundle(bundle_dir, trusted_packages), command, device)


def classifier_from_bundle(bundle: Bundle, command: str, device: str = "cpu") -> Predictor:
    """The classifier (or fold ensemble) of a bundle `open_bundle` has already checked."""
    require_kind(bundle.kind, CLASSIFICATION, f"bundle {bundle.path}", command)
    if bundle.members:
        return EnsemblePredictor([model_predictor(member, device) for member in bundle.members], [str(member.path) for member in bundle.members])
    return model_predictor(bundle, device)


def model_predictor(bundle: Bundle, device: str) -> ClassificationPredictor:
    """The predictor of a bundle's (or an ensemble bundle member's) one model."""
    if bundle.format == ONNX:
        return OnnxPredictor(str(bundle.model_path), bundle.tokenizer(), bundle.label_names(), bundle.max_length, device)
    return TorchPredictor(bundle.torch_task(), bundle.tokenizer(), bundle.label_names(), bundle.max_length, device)
