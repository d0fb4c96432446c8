"""seqlab-predict: label every text of an input file with a checkpoint, a fold ensemble or an exported bundle.

The input streams through in batches under a progress bar; the output, one line per text in input
order (JSONL, or CSV/TSV by its suffix) with the text's other input fields, appears only when every
text has been labelled. With `sort_by_length`, each run of `SORTED_BATCHES` batches' texts is
labelled in batches of texts of similar length, longest first (less padding), and written in input order.

Imports of torch (and of the seqlab modules that import it) happen inside the functions that load a
model, so `--help` answers at once.
"""

import itertools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.deploy.inputs import read_text_batches
from seqlab.deploy.outputs import PredictionWriter
from seqlab.errors import SeqlabError, reports_errors
from seqlab.launch.memory import keep_freed_memory
from seqlab.launch.threads import use_threads

if TYPE_CHECKING:
    from seqlab.deploy.predictors import Predictions, Predictor

log = logging.getLogger(__name__)

# How many batches' texts are read and sorted by length together: enough that batches hold texts of
# similar length, few enough that the input still streams.
SORTED_BATCHES = 50


@reports_errors
def predict(cfg: DictConfig) -> int:
    """Write predictions for `input` to `output`; return how many texts were labelled."""
    check_override_types(cfg)
    if bool(cfg.get("ckpt_path")) == bool(cfg.get("bundle")):
        raise SeqlabError("seqlab-predict needs one of ckpt_path=<checkpoint> or bundle=<exported dir>")
    if not cfg.get("input") or not cfg.get("output"):
        raise SeqlabError("seqlab-predict needs input=<file> (one text a line, or CSV/JSONL with a text column) and output=<file.jsonl or .csv>")
    if cfg.batch_size < 1:
        raise SeqlabError(f"batch_size must be at least 1, got {cfg.batch_size}")
    input_path, output_path = Path(cfg.input), Path(cfg.output)
    if not input_path.is_file():
        raise SeqlabError(f"input {input_path} does not exist")
    use_threads(cfg.get("threads"))
    keep_freed_memory(cfg.get("keep_freed_memory", True))

    # The model first: a checkpoint says how its training file was read, and so how to read an input of that kind.
    predictor = load_predictor(cfg, "seqlab-predict")
    read_size = cfg.batch_size * SORTED_BATCHES if cfg.sort_by_length else cfg.batch_size
    batches = read_text_batches(input_path, read_size, cfg.text_column, predictor.trained_on)
    first = next(batches, None)
    if first is None:
        raise SeqlabError(f"input {input_path} holds no texts")

    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    count, truncated, first_truncated = 0, 0, None
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[texts]} texts"),
        TimeRemainingColumn(),
    ]
    try:
        with open(partial, "w", encoding="utf-8", newline="") as out, Progress(*columns, transient=True) as progress:
            writer = PredictionWriter(out, output_path, predictor.label_names)
            bar = progress.add_task("predicting", total=input_path.stat().st_size, texts=0)
            for batch in itertools.chain([first], batches):
                predictions = predict_longest_first(predictor, batch.texts, cfg.batch_size) if cfg.sort_by_length else predictor.predict(batch.texts)
                for item, fields in zip(predictions.items, batch.fields):
                    writer.write(item, fields)
                if predictions.truncated and first_truncated is None:
                    first_truncated = count + predictions.truncated[0] + 1
                truncated += len(predictions.truncated)
                count += len(batch.texts)
                progress.update(bar, completed=batch.bytes_read, texts=count)
        os.replace(partial, output_path)
    finally:
        partial.unlink(missing_ok=True)
    if truncated:
        log.warning(
            "%d of %d texts were longer than the model's limit of %d tokens and were truncated to it (the first is text %d)",
            truncated,
            count,
            predictor.max_length,
            first_truncated,
        )
    log.info("wrote %d predictions to %s", count, output_path)
    return count


def predict_longest_first(predictor: "Predictor", texts: list[str], batch_size: int) -> "Predictions":
    """The predictions of `texts` in their order, made in batches of `batch_size` texts of similar length
    (by characters, which track tokens closely enough to cut padding), longest first."""
    from seqlab.deploy.predictors import Predictions

    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    items: list = [None] * len(texts)
    truncated = []
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        predictions = predictor.predict([texts[index] for index in positions])
        for position, item in zip(positions, predictions.items):
            items[position] = item
        truncated.extend(positions[index] for index in predictions.truncated)
    return Predictions(items, sorted(truncated))


def load_predictor(cfg: DictConfig, command: str) -> "Predictor":
    """The model named by `ckpt_path` (PyTorch; a fold ensemble when it names several) or `bundle`
    (ONNX Runtime or PyTorch): a classifier, or a translation model (task=seq2seq)."""
    from seqlab import runs
    from seqlab.deploy.loading import predictor_for_bundle, predictor_for_checkpoint
    from seqlab.deploy.predictors import predictor_from_checkpoints
    from seqlab.sweeps.ensemble import ENSEMBLE_USE, ensemble_members

    if cfg.get("bundle"):
        return predictor_for_bundle(cfg.bundle, command, cfg.device, cfg.trusted_packages)
    members = ensemble_members(cfg.ckpt_path, cfg.ensemble.allow_missing)
    if members is not None:
        named = [(member.name, member.ckpt_path) for member in members]
        return predictor_from_checkpoints(named, cfg.paths, ENSEMBLE_USE, cfg.device, cfg.trusted_packages)
    return predictor_for_checkpoint(runs.resolve_ckpt_path(cfg), cfg.paths, command, cfg.device, cfg.trusted_packages)


def main() -> None:
    """seqlab-predict: refuse a config group set to null in one line, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    run_predict()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="predict")
def run_predict(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
