"""Logger constructors that need a decision Lightning leaves to the user."""

import netrc
import os
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
