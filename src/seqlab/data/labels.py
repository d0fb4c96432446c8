"""labels.json, written to run dirs and bundles alike: each label name with the id the model outputs it at.

Kept free of torch, so serving an ONNX bundle reads it without importing torch.
"""

import json
from collections.abc import Sequence
from pathlib import Path


def write_label_ids(path: Path, label_names: Sequence[str]) -> None:
    """Write `{name: id}` for `label_names` in output order."""
    path.write_text(json.dumps({name: index for index, name in enumerate(label_names)}, indent=2) + "\n")


def read_label_names(path: Path) -> list[str]:
    """The label names of a labels.json, in the model's output order."""
    label_ids = json.loads(path.read_text())
    if isinstance(label_ids, list):  # bundles exported before labels.json took the run dir's form
        return label_ids
    return sorted(label_ids, key=label_ids.__getitem__)
