"""The model presets: the settings the docs promise, and (with ../shared/data) a short run of each."""

import pytest
from omegaconf import OmegaConf

from conftest import SHARED_DATA, read_metrics
from seqlab.cli.train import train

PRESETS = ["sst2_lstm", "sst2_transformer", "shakespeare_gpt", "shakespeare_lstm"]


def test_shakespeare_gpt_is_nanogpts_cpu_config(compose_config):
    cfg = OmegaConf.to_container(compose_config(["experiment=shakespeare_gpt"]), resolve=True)
    assert cfg["data"]["_target_"].endswith("TinyShakespeareDataModule") and cfg["data"]["train_fraction"] == 0.9
    assert (cfg["data"]["block_size"], cfg["data"]["batch_size"], cfg["model"]["block_size"]) == (64, 12, 64)
    model = cfg["model"]
    assert (model["num_layers"], model["num_heads"], model["hidden_dim"], model["dropout"]) == (4, 4, 128, 0.0)
    assert cfg["optimizer"]["lr"] == 1e-3 and cfg["scheduler"]["warmup_steps"] == 100
    # AdamW as nanoGPT's: betas (0.9, 0.99), decay 0.1 on every matrix, embeddings included.
    assert cfg["optimizer"]["betas"] == [0.9, 0.99] and cfg["optimizer"]["weight_decay"] == 0.1
    assert cfg["task"]["decay_embeddings"] is True
    assert cfg["optimizer"]["lr"] * cfg["scheduler"]["min_lr_ratio"] == pytest.approx(1e-4)
    assert cfg["trainer"]["max_steps"] == 2000
    assert (cfg["monitor"], cfg["monitor_mode"]) == ("val/loss", "min")


def test_shakespeare_lstm_shares_the_split_and_budget(compose_config):
    gpt = compose_config(["experiment=shakespeare_gpt"])
    lstm = compose_config(["experiment=shakespeare_lstm"])
    assert lstm.model._target_.endswith("RNNLanguageModel") and lstm.model.cell == "lstm"
    assert OmegaConf.to_container(lstm.data, resolve=True) == OmegaConf.to_container(gpt.data, resolve=True)
    assert lstm.trainer.max_steps == gpt.trainer.max_steps and lstm.monitor == "val/loss"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data (SST-2 and tiny Shakespeare)")
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_on_the_shared_data(compose_config, in_hydra, tmp_path, preset):
    cfg = compose_config(
        [
            f"experiment={preset}",
            f"paths.data_dir={SHARED_DATA}",
            "debug=limit",
            "trainer.max_steps=10",
            "trainer.val_check_interval=null",
            "callbacks.progress_bar=null",
        ]
    )
    in_hydra(train, cfg)
    assert "test/loss" in read_metrics(tmp_path / "run")
