"""Checks that Hydra does not make: value types of command-line overrides and settings that must be
positive, in the composed config; config groups set to null, on the command line before composing."""

import importlib.resources
from collections.abc import Sequence
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from seqlab.errors import SeqlabError, exit_with_errors, traceback_requested


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _compatible(default: Any, value: Any) -> bool:
    if value is None:  # null unsets a setting (trainer.val_check_interval=null); settings that need a value refuse it below
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True  # strings and nulls take any value: Lightning accepts 16 or "16-mixed" for precision


# Settings that must be at least 1, checked before anything is built: the data modules read a batch
# size of 0 as "unset" (eval_batch_size) or fail only once fitting starts, inside the data loader.
POSITIVE_SETTINGS = ("data.batch_size", "data.eval_batch_size")


def check_positive_settings(cfg: DictConfig) -> None:
    for key in POSITIVE_SETTINGS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise SeqlabError(f"{key}={value}: a batch holds at least one example; pass {key}=<a positive integer>")
    absent = object()
    if OmegaConf.select(cfg, "data.batch_size", default=absent, throw_on_resolution_failure=False) is None:
        raise SeqlabError("data.batch_size=null: training needs a batch size; pass data.batch_size=<a positive integer>")


def check_override_types(cfg: DictConfig) -> None:
    """Refuse `key=value` overrides whose value has another type than the config's default, then
    settings out of range (`check_positive_settings`); every seqlab command calls this first.

    The defaults come from composing the same config groups without the value overrides, so an
    experiment preset that changes a default also changes what is expected.
    """
    hydra_cfg = HydraConfig.get()
    overrides = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    loader = GlobalHydra.instance().config_loader()

    def is_group(key: str) -> bool:
        parent, _, name = key.rpartition("/")
        return name in loader.list_groups(parent)

    group_overrides = [o.input_line for o in overrides if is_group(o.key_or_group)]
    # Groups from the user's own packages (`hydra.searchpath=[pkg://mypkg.conf]`) are found again.
    group_overrides += [line for line in hydra_cfg.overrides.hydra if line.startswith("hydra.searchpath=")]
    value_overrides = [o for o in overrides if not is_group(o.key_or_group) and not o.is_delete() and not o.is_add()]
    if value_overrides:
        _check_value_types(cfg, value_overrides, compose(config_name=hydra_cfg.job.config_name, overrides=group_overrides))
    check_positive_settings(cfg)


def _check_value_types(cfg: DictConfig, value_overrides: list[Any], defaults: DictConfig) -> None:
    for override in value_overrides:
        key = override.key_or_group
        if key.startswith("hydra."):
            continue
        default = OmegaConf.select(defaults, key, default=None, throw_on_resolution_failure=False)
        if default is None or OmegaConf.is_config(default):
            continue
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if not _compatible(default, value):
            raise SeqlabError(f"{key}={value!r} has the wrong type: {key} takes {_type_name(default)} (default {default!r})")


def refuse_null_groups(argv: Sequence[str]) -> None:
    """Exit with one line on a config group set to null (`finetune=null`): Hydra stops on it with a
    Python traceback while composing, before any seqlab code runs. `~group` removes a group."""
    conf = importlib.resources.files("seqlab.conf")
    for argument in argv:
        key, equals, value = argument.partition("=")
        group = key.lstrip("+").partition("@")[0]
        if equals and value.strip().lower() == "null" and group and conf.joinpath(*group.split("/")).is_dir():
            message = f"{argument}: a config group is not set to null; remove it with ~{group} (or choose one of conf/{group}/)"
            if traceback_requested():
                raise SeqlabError(message)
            exit_with_errors([message])
