"""seqlab-cv-summary: summarise the folds of a cross-validation sweep dir, also an interrupted one."""

import argparse
from pathlib import Path

from seqlab.errors import SeqlabError, reports_errors
from seqlab.sweeps.cv import SUMMARY_JSON, folds_without_result, summarize_sweep


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seqlab-cv-summary",
        description="Summarise the folds of a cross-validation sweep dir (also an interrupted one): "
        "writes cv_summary.json and cv_summary.csv there and prints the table. Exits 1 when a fold "
        "failed, has no result yet, or has no job dir.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun's sweep dir (it holds multirun.yaml and one dir per job)")
    args = parser.parse_args(argv)
    if not (args.sweep_dir / "multirun.yaml").is_file():
        raise SeqlabError(f"{args.sweep_dir} is not a sweep dir (it has no multirun.yaml)")
    summary = summarize_sweep(args.sweep_dir.resolve())
    if summary is None:
        raise SeqlabError(f"{args.sweep_dir} holds no job that trained a fold (no job dir whose config sets data.fold)")
    unfinished = folds_without_result(summary)
    if unfinished:
        raise SeqlabError(f"{args.sweep_dir}: {', '.join(unfinished)}; {SUMMARY_JSON} summarises the completed folds only")


if __name__ == "__main__":
    main()
