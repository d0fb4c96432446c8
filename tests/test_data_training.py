"""The data groups train end to end: SST-2 from ../shared/data (skipped without it) and the user's own files."""

import json

import pytest

import conftest
from conftest import read_metrics
from data_fixtures import labelled_rows, write_rows
from seqlab.cli.train import train

SMALL_MODEL = ["model.hidden_dim=32", "model.embed_dim=32", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def test_sst2_trains_end_to_end_with_its_published_split_sizes(compose_config, in_hydra, tmp_path):
    if not (conftest.SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"SST-2 is not at {conftest.SHARED_DATA / 'sst2'} (a fresh clone has no ../shared/data)")
    # The whole dataset is read, tokenised and split; training is cut to a few batches to stay quick.
    overrides = ["data=sst2", f"paths.data_dir={conftest.SHARED_DATA}", f"data.cache_dir={tmp_path / 'cache'}", "debug=limit", "trainer.max_epochs=1"]
    in_hydra(train, compose_config([*overrides, *SMALL_MODEL]))
    metrics = read_metrics(tmp_path / "run")
    assert (metrics["data/train_size"], metrics["data/val_size"], metrics["data/test_size"]) == (6920, 872, 1821)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {"0": 0, "1": 1}


def test_text_files_trains_end_to_end_and_its_run_dir_holds_the_label_mapping(compose_config, in_hydra, tmp_path):
    write_rows(tmp_path / "data" / "reviews.jsonl", labelled_rows(300, ("bad", "good")), "jsonl")
    cfg = compose_config(
        [
            "data=text_files",
            "data.train_file=reviews.jsonl",
            f"paths.data_dir={tmp_path / 'data'}",
            "data.bucket_by_length=true",
            "debug=limit",
            "trainer.max_epochs=1",
            *SMALL_MODEL,
        ]
    )
    in_hydra(train, cfg)
    metrics = read_metrics(tmp_path / "run")
    assert (metrics["data/train_size"], metrics["data/val_size"], metrics["data/test_size"]) == (240, 30, 30)
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {"bad": 0, "good": 1}
    assert len(list((tmp_path / "data" / ".cache").iterdir())) == 1
