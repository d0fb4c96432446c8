"""Checkpoints and bundles written before the model settings took one name per idea (`hidden_dim`,
`num_layers`, `num_heads`, `ff_dim`) and before `compile` became a run setting build the same model."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST
from seqlab import runs
from seqlab.runs.legacy import upgrade_recorded_config
from seqlab.runs.record import RUN_RECORD_KEY

GPT_NAMES = {"hidden_dim": "n_embd", "num_layers": "n_layer", "num_heads": "n_head"}
# Today's key -> the key a record of an earlier version holds, by model config.
OLD_NAMES = {
    "transformer": {"hidden_dim": "d_model", "num_layers": "n_layers", "num_heads": "n_heads", "ff_dim": "d_ff"},
    "gpt_classifier": GPT_NAMES,
    "gpt": GPT_NAMES,
}
SIZES = {
    "transformer": ["model.hidden_dim=16", "model.num_heads=2", "model.num_layers=1", "model.ff_dim=24"],
    "gpt_classifier": ["model.hidden_dim=16", "model.num_heads=2", "model.num_layers=1"],
    "gpt": ["model.hidden_dim=16", "model.num_heads=2", "model.num_layers=1", "model.block_size=16"],
}


def as_recorded_earlier(config: dict, model: str) -> dict:
    """A run record's config as an earlier seqlab wrote it: old model keys and `model.compile`."""
    old = {key: value for key, value in config.items() if key != "compile"}
    old["model"] = {OLD_NAMES[model].get(key, key): value for key, value in config["model"].items()}
    old["model"]["compile"] = config["compile"]
    return old


@pytest.mark.parametrize("model", list(OLD_NAMES))
def test_a_checkpoint_with_the_old_model_keys_loads_and_builds_the_same_model(compose_config, tmp_path, model):
    if model == "gpt":
        text = tmp_path / "corpus.txt"
        text.write_text("the cat sat on the mat.\n" * 50)
        data = ["data=text_lm", f"data.files=[{text}]", "data.block_size=16", "task=language_modeling"]
    else:
        data = [o for o in FAST if o.startswith("data.")]
    cfg = compose_config([*data, f"paths.data_dir={tmp_path}", f"model={model}", *SIZES[model], "compile=true"])
    today = OmegaConf.to_container(cfg)
    datamodule = runs.build_datamodule(cfg)
    trained = runs.build_task(cfg, datamodule)
    recorded = as_recorded_earlier(today, model)
    assert set(recorded["model"]) & set(OLD_NAMES[model].values()), "the record must hold the old keys"
    ckpt = tmp_path / "old.ckpt"
    record = {"config": recorded, "tokenizer": datamodule.tokenizer.to_dict(), "label_names": getattr(datamodule, "label_names", None)}
    torch.save({"state_dict": trained.state_dict(), RUN_RECORD_KEY: record}, ckpt)

    saved = runs.read_run(str(ckpt))
    assert saved.config["model"] == today["model"] and saved.config["compile"] is True
    built = runs.build_task(OmegaConf.create(saved.config), datamodule)
    assert type(built.net) is type(trained.net)
    assert built.net._compiled_call_impl is not None  # compile=true, from the old model.compile=true
    built.load_state_dict(saved.state_dict)  # strict: the same parameter names and shapes


def test_a_record_of_today_is_left_as_it_is(compose_config):
    today = OmegaConf.to_container(compose_config(["model=transformer"]))
    assert upgrade_recorded_config(today) == today
