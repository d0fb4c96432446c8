"""Cross-validation for evaluation (`cv.protocol=test`, `data.fold_split=test`) and training on the
source's validation split too (`data.merge_val=true`): which texts land in which split, and the
summary's headline, in one run (`cv.folds=K`) and as a multirun over `data.fold`."""

import json
import statistics
from collections import Counter

import pytest

from conftest import FAST, read_metrics, run_cli
from data_fixtures import labelled_rows, make_sst2, write_rows
from seqlab.cli.eval import evaluate
from seqlab.cli.train import train
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.sst2 import SST2DataModule
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import CharTokenizer
from seqlab.errors import SeqlabError

K = 3
# conftest.FAST in one epoch: these runs train several folds each.
QUICK = [*(o for o in FAST if not o.startswith("trainer.max_epochs")), "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0"]


def texts(datamodule, split):
    dataset = datamodule.datasets[split]
    return [datamodule.tokenizer.decode(dataset.ids[i].tolist()) for i in range(len(dataset))]


def split_texts(datamodule):
    datamodule.setup()
    return {split: texts(datamodule, split) for split in ("train", "val", "test")}


def three_files(tmp_path, sizes=(60, 24, 15)):
    """Train, validation and test files of distinct rows; returns the files and each file's texts."""
    rows = labelled_rows(sum(sizes))
    files, contents, start = {}, {}, 0
    for split, size in zip(("train", "val", "test"), sizes):
        files[split] = write_rows(tmp_path / f"{split}.jsonl", rows[start : start + size], "jsonl")
        contents[split] = [text for text, _ in rows[start : start + size]]
        start += size
    return files, contents


def text_files_module(tmp_path, files, **settings):
    names = {f"{split}_file": str(path) for split, path in files.items()}
    return TextFilesDataModule(**names, tokenizer=CharTokenizer(), split_seed=3, **{"cache_dir": str(tmp_path / ".cache"), **settings})


# -- data.merge_val -------------------------------------------------------------------------------


def test_merge_val_trains_on_the_validation_file_and_draws_validation_from_the_pool(tmp_path):
    files, contents = three_files(tmp_path)
    apart = split_texts(text_files_module(tmp_path, files))
    assert (len(apart["train"]), len(apart["val"]), len(apart["test"])) == (60, 24, 15)

    # Same cache dir: the setting is part of the cache key.
    merged = split_texts(text_files_module(tmp_path, files, merge_val=True, val_fraction=1 / 3))
    assert (len(merged["train"]), len(merged["val"]), len(merged["test"])) == (56, 28, 15)
    assert Counter(merged["train"] + merged["val"]) == Counter(contents["train"] + contents["val"])
    assert set(merged["val"]) - set(contents["val"])  # drawn from the pool, not the validation file again
    assert merged["test"] == contents["test"]

    # With folds, fold i of the pool validates.
    folds = [split_texts(text_files_module(tmp_path, files, merge_val=True, num_folds=K, fold=k)) for k in range(K)]
    assert Counter(text for fold in folds for text in fold["val"]) == Counter(contents["train"] + contents["val"])


def test_merge_val_changes_nothing_without_a_validation_split(tmp_path):
    files, _ = three_files(tmp_path)
    del files["val"]
    assert split_texts(text_files_module(tmp_path, files, merge_val=True)) == split_texts(text_files_module(tmp_path, files, cache_dir=None))


# -- data.fold_split=test -------------------------------------------------------------------------


def test_test_folds_partition_the_pooled_training_and_validation_files(tmp_path, caplog):
    files, contents = three_files(tmp_path)
    pool = Counter(contents["train"] + contents["val"])
    with caplog.at_level("INFO", logger="seqlab"):
        folds = [split_texts(text_files_module(tmp_path, files, num_folds=K, fold=k, fold_split="test", val_fraction=0.1)) for k in range(K)]
    assert Counter(text for fold in folds for text in fold["test"]) == pool  # the K test folds partition the pool
    for fold in folds:
        # No test share is carved out first: train, validation and this fold's test set are the whole pool.
        assert Counter(fold["train"] + fold["val"] + fold["test"]) == pool
        assert not set(fold["test"]) & set(fold["train"] + fold["val"])
        assert not set(contents["test"]) & set(fold["train"] + fold["val"] + fold["test"])
        assert len(fold["test"]) == len(pool) // K
        assert len(fold["val"]) == round(0.1 * (len(pool) - len(pool) // K))
    assert "the source's own test split (15 texts) is not used" in caplog.text


def test_test_folds_of_sst2_pool_train_and_dev(tmp_path):
    make_sst2(tmp_path, (30, 12, 9))
    pool_size = 42
    folds = [split_texts(SST2DataModule(data_dir=str(tmp_path), tokenizer=CharTokenizer(), num_folds=K, fold=k, fold_split="test")) for k in range(K)]
    assert sum(len(fold["test"]) for fold in folds) == pool_size
    for fold in folds:
        assert sum(len(fold[split]) for split in ("train", "val", "test")) == pool_size


def test_fold_split_settings_are_checked_in_one_line(tmp_path):
    files, _ = three_files(tmp_path)
    with pytest.raises(SeqlabError, match=r"data.fold_split=test needs data.num_folds"):
        text_files_module(tmp_path, files, fold_split="test").setup()
    with pytest.raises(SeqlabError, match=r"data.fold_split must be validation or test, got 'val'"):
        text_files_module(tmp_path, files, num_folds=K, fold=0, fold_split="val").setup()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("all the world's a stage\n" * 20)
    language_model = LanguageModelingDataModule(files=[str(corpus)], tokenizer=CharTokenizer(), block_size=8, num_folds=K, fold=0, fold_split="test")
    with pytest.raises(SeqlabError, match=r"data.fold_split=test .* classification"):
        language_model.setup()


# -- end to end -----------------------------------------------------------------------------------


def assert_test_headline(summary, fold_dirs):
    headline = summary["headline"]
    values = [read_metrics(d)["test/acc"] for d in fold_dirs]
    assert headline["metric"] == "test/acc"
    assert headline["n"] == len(fold_dirs)
    assert headline["mean"] == pytest.approx(statistics.fmean(values))
    assert headline["std"] == pytest.approx(statistics.stdev(values))
    low, high = headline["ci95"]
    assert low <= headline["mean"] <= high


def test_in_process_cv_for_evaluation_headlines_the_mean_test_metric(compose_config, in_hydra, tmp_path, capsys):
    cfg = compose_config([*QUICK, "cv.folds=3", "cv.protocol=test"])
    value = in_hydra(train, cfg)
    run_dir = tmp_path / "run"
    fold_dirs = [run_dir / f"fold_{k}" for k in range(3)]
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    assert_test_headline(summary, fold_dirs)
    # optimized_metric keeps its meaning: the mean of val/acc, not the headline.
    assert value == pytest.approx(statistics.fmean(read_metrics(d)["val/acc"] for d in fold_dirs))
    # The generated data's own validation split joins training; the 200 test reviews are not used.
    for fold_dir in fold_dirs:
        metrics = read_metrics(fold_dir)
        assert metrics["data/test_size"] == 700 // 3 + (fold_dir.name == "fold_0")
        assert metrics["data/train_size"] + metrics["data/val_size"] + metrics["data/test_size"] == 700

    # seqlab-eval of a fold's checkpoint tests on that fold again.
    fold_run = read_metrics(fold_dirs[1])
    eval_cfg = compose_config([f"ckpt_path={fold_run['ckpt_path']}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval")
    in_hydra(evaluate, eval_cfg)
    evaluated = read_metrics(tmp_path / "eval")
    assert (evaluated["data/test_size"], evaluated["test/acc"]) == (fold_run["data/test_size"], pytest.approx(fold_run["test/acc"]))

    # The folds as an ensemble: every text of the pool trained some fold, so no fold's test set is held
    # out from the ensemble; the source's own test split, which no fold saw, is.
    ensemble_cfg = compose_config([f"ckpt_path={run_dir}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "ensemble")
    with pytest.raises(SystemExit):
        in_hydra(evaluate, ensemble_cfg)
    assert "trained under cv.protocol=test" in capsys.readouterr().err
    held_out = [f"ckpt_path={run_dir}", "callbacks.progress_bar=null", "data.fold_split=validation", "data.num_folds=null", "data.fold=null"]
    in_hydra(evaluate, compose_config(held_out, config_name="eval", run_dir=tmp_path / "ensemble"))
    assert json.loads((tmp_path / "ensemble" / "metrics.json").read_text())["data/test_size"] == 200


def test_cv_for_evaluation_on_a_training_file_alone(tmp_path):
    write_rows(tmp_path / "reviews.csv", labelled_rows(120), "csv")
    result = run_cli(
        "seqlab-train",
        "data=text_files",
        "data.train_file=reviews.csv",
        "cv.folds=2",
        "cv.protocol=test",
        *QUICK[3:],
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fold_dirs = [tmp_path / "run" / f"fold_{k}" for k in range(2)]
    for fold_dir in fold_dirs:
        metrics = read_metrics(fold_dir)
        assert metrics["data/test_size"] == 60
        assert metrics["data/train_size"] + metrics["data/val_size"] == 60
    assert_test_headline(json.loads((tmp_path / "run" / "cv_summary.json").read_text()), fold_dirs)
    assert result.stdout.index("test/acc") < result.stdout.index("cross-validation, 2 folds")


@pytest.mark.slow
def test_multirun_cv_for_evaluation(tmp_path):
    result = run_cli("seqlab-train", "-m", "crossval=multirun", "cv.protocol=test", "data.num_folds=2", *QUICK, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep" / "cv_summary.json").read_text())
    assert_test_headline(summary, [tmp_path / "sweep" / entry["job_dir"] for entry in summary["folds"]])
    for entry in summary["folds"]:
        assert entry["metrics"]["data/test_size"] == 350
