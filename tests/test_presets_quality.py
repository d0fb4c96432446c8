"""The CNN and IMDb presets: their settings, one batch of each through train, val and test (debug=fdr)
on small generated SST-2 and aclImdb folders (tokenising the real 50,000 IMDb reviews would take
longer than the whole check), and (slow) each IMDb preset trained end to end on generated reviews.
The full runs on ../shared/data, and their figures, are in docs/results.md."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import read_metrics
from data_fixtures import make_aclimdb, make_sst2
from seqlab.cli.train import train

IMDB_PRESETS = ["imdb_cnn", "imdb_lstm", "imdb_transformer"]


@pytest.fixture(scope="module")
def generated_data(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    make_sst2(data_dir)
    make_aclimdb(data_dir, per_folder=40)
    return data_dir


def test_kims_settings_are_the_sst2_cnns(compose_config):
    cfg = OmegaConf.to_container(compose_config(["experiment=sst2_cnn"]), resolve=True)
    model = cfg["model"]
    assert model["_target_"] == "seqlab.models.cnn.TextCNNClassifier"
    assert (model["filter_widths"], model["hidden_dim"], model["dropout"], cfg["data"]["batch_size"]) == ([3, 4, 5], 100, 0.5, 50)
    max_norm = cfg["callbacks"]["max_norm"]
    assert (max_norm["parameters"], max_norm["max_norm"]) == (["net.head.weight"], 3.0)


@pytest.mark.parametrize("preset", IMDB_PRESETS)
def test_imdb_presets_read_imdb_and_stop_inside_their_budget(compose_config, preset):
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.data._target_.endswith("IMDBDataModule") and cfg.data.max_length >= 400  # reviews cut, never unbounded
    hours, minutes, seconds = (int(part) for part in cfg.trainer.max_time.split(":")[1:])
    assert hours * 3600 + minutes * 60 + seconds <= 28 * 60  # fitting stops in time to test inside 30 minutes


@pytest.mark.parametrize("preset", ["sst2_cnn", *IMDB_PRESETS])
def test_preset_runs_one_batch_of_each_stage(compose_config, in_hydra, generated_data, preset):
    cfg = compose_config([f"experiment={preset}", f"paths.data_dir={generated_data}", "debug=fdr", "callbacks.progress_bar=null"])
    assert in_hydra(train, cfg) is not None


@pytest.mark.slow
@pytest.mark.parametrize("preset", IMDB_PRESETS)
def test_imdb_preset_trains_end_to_end_on_generated_reviews(compose_config, in_hydra, tmp_path, preset):
    data_dir = tmp_path / "data"
    make_aclimdb(data_dir, per_folder=100)
    cfg = compose_config(
        [
            f"experiment={preset}",
            f"paths.data_dir={data_dir}",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=4",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
            "callbacks.progress_bar=null",
        ]
    )
    in_hydra(train, cfg)
    metrics = read_metrics(tmp_path / "run")
    assert metrics["epoch"] == 2 and 0.0 <= metrics["test/acc"] <= 1.0
    if "max_norm" in cfg.callbacks:
        head = torch.load(metrics["ckpt_path"], weights_only=True)["state_dict"]["net.head.weight"]
        assert head.norm(dim=1).max() <= cfg.callbacks.max_norm.max_norm + 1e-5
