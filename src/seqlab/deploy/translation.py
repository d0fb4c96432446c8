"""Translation models ready for inference: source texts in, translations out, for seqlab-predict and
seqlab-serve; and their bundles, which seqlab-export writes: safetensors (the weights and the run's
config) or ONNX (an encoder graph and a decoder-step graph, `seqlab.deploy.translation_onnx`).

A checkpoint's translation model (`task=seq2seq`) is rebuilt from its run record like any other;
sources are tokenised with the run's (source-side) tokenizer, cut to the run's `max_source_length`,
padded to the longest of the batch and translated with the run's test beam (`beam_size` overrides it);
translations are decoded with the target side's own tokenizer when the run has one.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.data.download import sha256_of
from seqlab.data.parallel_text import ParallelTextDataModule
from seqlab.data.tokenizers import TextTokenizer
from seqlab.deploy import bundle
from seqlab.deploy.predictors import Predictions, Predictor
from seqlab.errors import SeqlabError
from seqlab.runs.build import build_task, restore_datamodule
from seqlab.runs.legacy import upgrade_recorded_config
from seqlab.runs.record import SavedRun
from seqlab.runs.trained import load_weights
from seqlab.tasks.seq2seq import Seq2SeqTask

TRANSLATION_TASK = f"{Seq2SeqTask.__module__}.{Seq2SeqTask.__qualname__}"


def holds_translation_model(saved: SavedRun) -> bool:
    """Whether the checkpoint's run trained `task=seq2seq`."""
    task = saved.config.get("task") or {}
    return isinstance(task, dict) and task.get("_target_") == TRANSLATION_TASK


class TranslationPredictor(Predictor):
    """Each text's translation: `{"translation": text}` per input, in order."""

    label_names: list[str] = []

    def __init__(self, task: Seq2SeqTask, tokenizer: TextTokenizer, max_length: int | None, beam_size: int | None = None, device: str = "cpu") -> None:
        """`tokenizer` encodes the sources; the task's own (the target side's) decodes its translations."""
        self.task = task.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.beam_size = beam_size or task.beam_sizes["test"]
        self.device = device

    def text_probabilities(self, texts: Sequence[str]) -> tuple[Any, list[int]]:
        raise SeqlabError("a translation model gives translations, not label probabilities")

    def translate(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """The translations of `texts`, and the positions of those cut to the model's source limit."""
        encoded = self.tokenizer.encode_batch(list(texts))
        truncated = [index for index, ids in enumerate(encoded) if self.max_length and len(ids) > self.max_length]
        encoded = [ids[: self.max_length] if self.max_length else ids for ids in encoded]
        lengths = torch.tensor([max(len(ids), 1) for ids in encoded])
        source_ids = torch.full((len(encoded), int(lengths.max())), self.tokenizer.pad_id, dtype=torch.long)
        for row, ids in enumerate(encoded):
            source_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        with torch.inference_mode():
            translations = self.task.translate(source_ids.to(self.device), lengths.to(self.device), self.beam_size)
        return translations, truncated

    def predict(self, texts: Sequence[str]) -> Predictions:
        translations, truncated = self.translate(texts)
        return Predictions([{"translation": translation} for translation in translations], truncated)


def translator_from_run(saved: SavedRun, paths: DictConfig, beam_size: int | None = None, device: str = "cpu") -> TranslationPredictor:
    """The translation model of a checkpoint read by `read_run`."""
    config = OmegaConf.create(saved.config)
    with open_dict(config):
        config.paths = paths  # the run's own data dir may not exist where this command runs
    datamodule = restore_datamodule(config, saved.tokenizer, target_tokenizer=saved.target_tokenizer)
    task = build_task(config, datamodule)
    load_weights(task, saved)
    max_length = datamodule.max_source_length if isinstance(datamodule, ParallelTextDataModule) else None
    return TranslationPredictor(task, datamodule.tokenizer, max_length, beam_size, device)


# -- bundles -------------------------------------------------------------------------------

TRANSLATION = bundle.TRANSLATION  # the `kind` a translation model's bundle names in its manifest
# Source length the ONNX check reaches when the run has no `max_source_length`.
CHECK_LENGTH_WITHOUT_LIMIT = 64


def write_translation_model(directory: Path, saved: SavedRun, ckpt_path: str, cfg: DictConfig) -> dict[str, Any]:
    """Write the translation model of `ckpt_path` (as `read_run` read it) in `directory` as a `cfg.format` bundle
    (the tokenizer and a target side's own; safetensors: the weights and config.json; ONNX: the two graphs, and
    the settings decoding needs in the manifest) and return what the manifest says of it."""
    from safetensors.torch import save_model  # the deploy extra's

    translator = translator_from_run(saved, cfg.paths)
    bundle.write_bundle_tokenizer(directory, translator.tokenizer, None)
    if saved.target_tokenizer is not None:
        bundle.write_bundle_tokenizer(directory, saved.target_tokenizer, None, bundle.TARGET_TOKENIZER, bundle.TARGET_TOKENIZER_SETTINGS)
    fields = {"kind": TRANSLATION, "max_length": translator.max_length, "source_checkpoint": {"path": ckpt_path, "sha256": sha256_of(ckpt_path)}}
    if cfg.format == bundle.ONNX:
        from seqlab.deploy.translation_onnx import decoding_settings, export_translation_onnx

        tokenizer = translator.tokenizer
        check_length = translator.max_length or CHECK_LENGTH_WITHOUT_LIMIT
        fields["onnx_check"] = export_translation_onnx(translator.task, directory, tokenizer.vocab_size, tokenizer.pad_id, check_length)
        return {**fields, "decoding": decoding_settings(translator.task)}
    config = OmegaConf.create(saved.config)
    with open_dict(config):
        config.paths = cfg.paths
    config = OmegaConf.to_container(config, resolve=True)
    run_config = {key: config[key] for key in ("data", "model", "task", "optimizer", "scheduler") if key in config}
    (directory / bundle.CONFIG).write_text(json.dumps(run_config, indent=2) + "\n")
    save_model(translator.task, str(directory / bundle.MODEL_FILES[bundle.SAFETENSORS]))  # stores the tied output weight once
    return fields


def translator_from_bundle(opened: bundle.Bundle, device: str = "cpu") -> TranslationPredictor:
    """The translation model of a bundle (of kind `TRANSLATION`) that `open_bundle` has already checked."""
    from safetensors.torch import load_model  # the deploy extra's

    if opened.format == bundle.ONNX:
        from seqlab.deploy.translation_onnx import OnnxEncoderDecoder, OnnxTranslationModel

        decoding = opened.manifest["decoding"]
        net = OnnxEncoderDecoder(opened.path, decoding["bos_id"], decoding["eos_id"], decoding["pad_id"], device)
        tokenizer = opened.tokenizer()
        model = OnnxTranslationModel(net, opened.target_tokenizer() or tokenizer, decoding)
        return TranslationPredictor(model, tokenizer, opened.max_length, device=device)
    config = OmegaConf.create(upgrade_recorded_config(json.loads((opened.path / bundle.CONFIG).read_text())))
    tokenizer = opened.tokenizer()
    task = build_task(config, restore_datamodule(config, tokenizer, target_tokenizer=opened.target_tokenizer()))
    load_model(task, str(opened.model_path))
    return TranslationPredictor(task.eval(), tokenizer, opened.max_length, device=device)
