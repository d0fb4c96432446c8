"""Logger constructors that need a decision Lightning leaves to the user."""

import netrc
import os
import sys
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger


def _wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(save_dir: str, **kwargs: Any) -> WandbLogger:
    """A WandbLogger writing under the run dir: offline unless WANDB_MODE says otherwise or the user
    has logged in, so a run never stops to ask for an account."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    offline = "WANDB_MODE" not in os.environ and not _wandb_credentials_present()
    return WandbLogger(save_dir=save_dir, offline=offline, **kwargs)


def finish_wandb(failed: bool) -> None:
    """Lightning never ends the wandb run; without this, the next job of a multirun logs into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
