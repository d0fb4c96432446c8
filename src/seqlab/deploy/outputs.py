"""seqlab-predict's output: one line per input text, in input order, with the text's other input fields.

The format follows the output's suffix: `.csv` and `.tsv` write a table (the input's other columns,
`label`, then `probs.<label name>` per label), anything else JSONL (`{<the input's other fields>,
"label": name, "probs": {name: probability}}`). An input field named `label` or `probs` (a labelled
test file) is written as `input_label` or `input_probs`, beside the prediction.
"""

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from seqlab.errors import SeqlabError

PREDICTION_KEYS = ("label", "probs")
DELIMITERS = {".csv": ",", ".tsv": "\t"}


def input_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The input's fields, those named like a prediction's keys renamed `input_<name>`."""
    return {f"input_{name}" if name in PREDICTION_KEYS else name: value for name, value in fields.items()}


class PredictionWriter:
    """Writes predictions to an open file in the format that `path`'s suffix names."""

    def __init__(self, out: TextIO, path: Path, label_names: list[str]) -> None:
        self.out, self.path = out, path
        self.label_names = label_names
        self.delimiter = DELIMITERS.get(path.suffix.lower())
        self.table: csv.DictWriter | None = None
        self.written = 0

    def write(self, prediction: dict[str, Any], fields: dict[str, Any]) -> None:
        """One line: the input's `fields` and the `prediction` ({"label", "probs"})."""
        row = {**input_fields(fields), **prediction}
        if self.delimiter is None:
            self.out.write(json.dumps(row) + "\n")
        else:
            self._write_row(row)
        self.written += 1

    def _write_row(self, row: dict[str, Any]) -> None:
        probs = row.pop("probs", {})  # a translation has none
        row.update({f"probs.{name}": probs[name] for name in self.label_names})
        if self.table is None:  # the first row's fields name the columns
            self.table = csv.DictWriter(self.out, fieldnames=list(row), delimiter=self.delimiter, lineterminator="\n")
            self.table.writeheader()
        extra = [name for name in row if name not in self.table.fieldnames]
        if extra:
            raise SeqlabError(
                f"input text {self.written + 1} has fields that the first one lacks ({', '.join(extra)}), which {self.path.suffix} "
                "output has no column for; write JSONL instead (output=<file.jsonl>)"
            )
        self.table.writerow({name: json.dumps(value) if isinstance(value, (dict, list)) else value for name, value in row.items()})
