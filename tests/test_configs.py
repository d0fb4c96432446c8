"""Every option of every config group composes, and the composed config resolves."""

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf


def _group_options() -> list[tuple[str, str]]:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        pairs = [(group, option) for group in loader.list_groups("") if group != "hydra" for option in loader.get_group_options(group)]
    GlobalHydra.instance().clear()
    return pairs


GROUP_OPTIONS = _group_options()


def test_every_group_has_options():
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"data", "model", "task", "trainer", "logger", "callbacks", "paths", "debug", "experiment"} <= groups


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_option_composes(compose_config, group, option):
    cfg = compose_config([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.data._target_ and cfg.model._target_ and cfg.trainer._target_


def test_each_config_file_says_what_it_is_for():
    from importlib.resources import files

    root = files("seqlab.conf")
    stack, missing = [root], []
    while stack:
        for entry in stack.pop().iterdir():
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".yaml"):
                lines = [line for line in entry.read_text().splitlines() if not line.startswith("# @package")]
                if not lines or not lines[0].startswith("# "):
                    missing.append(str(entry))
    assert not missing, f"config files without a one-line purpose comment: {missing}"
