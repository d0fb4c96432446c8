"""scripts/pretraining_gain.py: each fine-tuned run stands at its pretrained checkpoint's training
minutes (Lightning's Timer state), from-scratch runs at 0, seeds at one time are averaged."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretraining_gain.py"


def run_dir(path: Path, accuracy: float, from_ckpt: Path | None = None) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"test/acc": accuracy}))
    finetune = f"finetune:\n  from_ckpt: {from_ckpt}\n" if from_ckpt else "finetune: {}\n"
    (path / ".hydra" / "config.yaml").write_text(finetune)
    return path


def checkpoint(path: Path, train_s: float, validate_s: float) -> Path:
    torch.save({"callbacks": {"Timer": {"time_elapsed": {"train": train_s, "validate": validate_s, "test": 0}}}}, path)
    return path


def gain(tmp_path: Path, monkeypatch, *arguments: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *arguments, "--out", str(tmp_path / "gain.png")])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_points_stand_at_the_checkpoints_training_minutes_and_seeds_are_grouped(tmp_path, monkeypatch, capsys):
    early = checkpoint(tmp_path / "early.ckpt", train_s=540, validate_s=60)
    late = checkpoint(tmp_path / "late.ckpt", train_s=1740, validate_s=60)
    runs = [run_dir(tmp_path / "a", 0.90, early), run_dir(tmp_path / "b", 0.92, late), run_dir(tmp_path / "c", 0.94, late)]
    scratch = run_dir(tmp_path / "scratch", 0.88)
    gain(tmp_path, monkeypatch, *map(str, runs), "--scratch", str(scratch), "--reference", "cnn=0.9")
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if "min:" in line]
    assert [(line[0], line[3:]) for line in lines] == [("0.0", ["0.8800"]), ("10.0", ["0.9000"]), ("30.0", ["0.9200,", "0.9400"])]
    assert (tmp_path / "gain.png").stat().st_size > 0


def test_a_run_fine_tuned_from_a_run_dir_stands_at_that_runs_best_checkpoint(tmp_path, monkeypatch, capsys):
    pretraining = tmp_path / "pretraining"
    (pretraining / "checkpoints").mkdir(parents=True)
    checkpoint(pretraining / "checkpoints" / "best-epoch001.ckpt", train_s=1140, validate_s=60)
    checkpoint(pretraining / "checkpoints" / "last.ckpt", train_s=1740, validate_s=60)
    (pretraining / "metrics.json").write_text(json.dumps({"ckpt_path": "checkpoints/best-epoch001.ckpt"}))
    gain(tmp_path, monkeypatch, str(run_dir(tmp_path / "a", 0.9, pretraining)))
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines() if "min:" in line] == ["20.0"]


@pytest.mark.parametrize(("name", "finished", "message"), [("scratch", True, "not fine-tuned from a checkpoint"), ("missing", False, "no metrics.json")])
def test_a_run_that_was_not_fine_tuned_or_not_finished_is_refused_in_one_line(tmp_path, monkeypatch, name, finished, message):
    path = run_dir(tmp_path / name, 0.88) if finished else tmp_path / name
    with pytest.raises(SystemExit) as exit:
        gain(tmp_path, monkeypatch, str(path))
    assert message in str(exit.value.code) and "\n" not in str(exit.value.code)
    assert not (tmp_path / "gain.png").exists()
