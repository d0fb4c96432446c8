"""The config tree a run prints when it starts and keeps as `config_tree.log` in its run dir.

The root names the run dir; then the config groups with the option each run chose, then the
settings. What the command line set (a group option or a key) is marked `(overridden)`, so a reader
sees at a glance how this run differs from the defaults. The console shows the settings the command
line set, to stay readable on every run; the file holds every setting of the resolved config.
`print_config=false` turns both the print and the file off.
"""

import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

CONFIG_TREE = "config_tree.log"
OVERRIDDEN = "  (overridden)"
OVERRIDDEN_STYLE = "bold yellow"
# Wide enough that a long path or list stays on one line of the file.
FILE_WIDTH = 400


@rank_zero_only
def show_config_tree(cfg: DictConfig) -> None:
    """Print the run dir and the config tree, and save it as config_tree.log in the run dir."""
    if not cfg.get("print_config", True):
        return
    run_dir = Path(cfg.paths.output_dir)
    Console().print(config_tree(cfg, run_dir, every_setting=False))
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / CONFIG_TREE).open("w") as file:
        Console(file=file, width=FILE_WIDTH, color_system=None).print(config_tree(cfg, run_dir, every_setting=True))


def config_tree(cfg: DictConfig, run_dir: Path, every_setting: bool) -> Tree:
    """The tree of the groups and either every setting or only those the command line set."""
    overrides, choices = command_line_choices()
    tree = Tree(Text(f"run dir: {run_dir}", style="bold"))
    if choices:
        groups = tree.add(Text("groups", style="bold"))
        for group, option in sorted(choices.items()):
            _add_leaf(groups, group, option, group.replace("/", ".") in overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    if every_setting:
        _add_settings(tree, config, "", overrides)
        return tree
    set_keys = sorted(key for key in overrides if key not in choices and OmegaConf.select(cfg, key, default=None) is not None)
    branch = tree.add(Text(f"settings set on the command line (every setting: {run_dir / CONFIG_TREE})", style="bold"))
    for key in set_keys:
        _add_leaf(branch, key, OmegaConf.to_container(value) if OmegaConf.is_config(value := OmegaConf.select(cfg, key)) else value, True)
    return tree


def command_line_choices() -> tuple[set[str], dict[str, Any]]:
    """The keys and groups the command line set (`model.hidden_dim`, `model`, `data.tokenizer`), and
    the option chosen in each config group; nothing outside a Hydra run."""
    if not HydraConfig.initialized():
        return set(), {}
    hydra_cfg = HydraConfig.get()
    parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    overrides = {override.key_or_group.replace("/", ".") for override in parsed if not override.is_delete()}
    choices = {group: option for group, option in hydra_cfg.runtime.choices.items() if not group.startswith("hydra/")}
    return overrides, choices


def _add_settings(branch: Tree, settings: dict[str, Any], prefix: str, overrides: set[str]) -> None:
    for key, value in settings.items():
        full_key = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            label = Text(str(key) + (OVERRIDDEN if full_key in overrides else ""), style=OVERRIDDEN_STYLE if full_key in overrides else "bold")
            _add_settings(branch.add(label), value, f"{full_key}.", overrides)
        else:
            _add_leaf(branch, key, value, full_key in overrides)


def _add_leaf(branch: Tree, key: str, value: Any, overridden: bool) -> None:
    shown = value if isinstance(value, str) else json.dumps(value)
    branch.add(Text(f"{key}: {shown}" + (OVERRIDDEN if overridden else ""), style=OVERRIDDEN_STYLE if overridden else ""))
