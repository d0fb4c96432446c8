"""What a run writes in its run dir and reads back from it: paths, metrics.json, the resolved config."""

import json
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from seqlab.atomic_files import write_text_atomically
from seqlab.errors import SeqlabError


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def run_checkpoint(path: Path, prefer: str = "best") -> str:
    """A checkpoint file as it is; of a run dir, its best checkpoint (the one its metrics.json names)
    or, with `prefer="last"` or when metrics.json names none, its checkpoints/last.ckpt."""
    if path.is_file():
        return str(path)
    metrics_path = path / "metrics.json"
    if prefer == "best" and metrics_path.is_file():
        try:
            best = json.loads(metrics_path.read_text()).get("ckpt_path")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise SeqlabError(f"{metrics_path}: not a run's metrics.json (a JSON object naming ckpt_path); pass the checkpoint file instead") from None
        if best and (path / best).is_file():
            return str(path / best)
    last = path / "checkpoints" / "last.ckpt"
    if last.is_file():
        return str(last)
    raise SeqlabError(f"{path} is neither a checkpoint file nor a run dir with checkpoints/")


def resolve_ckpt_path(cfg: DictConfig, prefer: str = "best") -> str | None:
    """`last` means this run dir's last checkpoint; a run dir, that run's best checkpoint (its last with
    `prefer="last"`: what resuming wants); any other value must be an existing file."""
    if cfg.get("ckpt_path") is None:
        return None
    path = run_dir(cfg) / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if path.is_dir():
        return run_checkpoint(path, prefer)
    if not path.is_file():
        hint = " (ckpt_path=last resumes in the run dir of the run to continue: add hydra.run.dir=<that dir>)" if cfg.ckpt_path == "last" else ""
        raise SeqlabError(f"checkpoint {path} does not exist{hint}")
    return str(path)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out


@rank_zero_only
def write_json(path: Path, payload: dict[str, Any]) -> None:
    """On rank 0, write atomically: a reader never sees half a file, and a failed run leaves none."""
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


@rank_zero_only
def write_resolved_config(cfg: DictConfig) -> None:
    """Hydra saves the config unresolved; the run dir keeps the values this run actually used."""
    hydra_dir = run_dir(cfg) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float] | None:
    """The value of `optimized_metric`; a list of names (multi-objective search) gives a list of values."""
    names = cfg.get("optimized_metric")
    if not names:
        return None
    values = []
    for name in [names] if isinstance(names, str) else list(names):
        if name not in metrics:
            raise SeqlabError(f"optimized_metric={name!r} was not produced by this run; it produced: {', '.join(sorted(metrics))}")
        values.append(metrics[name] if math.isfinite(metrics[name]) else float("nan"))
    return values[0] if isinstance(names, str) else values
