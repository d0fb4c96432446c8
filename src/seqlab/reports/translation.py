"""The report seqlab-eval writes for a translation model: BLEU and chrF of the test set, sample
translations beside their references, and every test translation in `translations.jsonl`."""

import json
from pathlib import Path
from typing import Any

from seqlab.atomic_files import write_text_atomically
from seqlab.tasks.seq2seq import Seq2SeqTask


def translation_report(task: Seq2SeqTask, metrics: dict[str, float], run_dir: Path, num_samples: int = 10) -> dict[str, Any]:
    """The test's scores and decoding settings, and `num_samples` translations spread over the test set
    (which evaluation reads shortest first); writes every translation to `run_dir/translations.jsonl`."""
    pairs = task.translations["test"]
    write_text_atomically(run_dir / "translations.jsonl", "".join(json.dumps({"translation": h, "reference": r}, ensure_ascii=False) + "\n" for h, r in pairs))
    every = max(len(pairs) // num_samples, 1)
    return {
        "bleu": metrics["test/bleu"],
        "chrf": metrics["test/chrf"],
        "sentences": len(pairs),
        "beam_size": task.beam_sizes["test"],
        "length_penalty": task.length_penalty,
        "samples": [{"translation": h, "reference": r} for h, r in pairs[::every][:num_samples]],
        "translations_file": "translations.jsonl",
    }
