"""What seqlab's commands leave out of the console: lines Lightning and torch print on every run that say
nothing about the run.

Each is matched by its own message, so every other warning and log line of the same library still
shows; `show_known_noise=true` shows these too. The lines:
- Lightning's tips to install litlogger and litmodels, and its note that seqlab's own model summary
  callback replaces Lightning's default one (log records of Lightning's rank-zero logger);
- Lightning's hint to prepend `srun`, given on any machine where SLURM's `srun` is installed, also when
  the run is not meant for SLURM;
- Lightning's request for "the callbacks used to create the checkpoint" when a checkpoint is loaded
  by a command that does not train (and so has no checkpointing callbacks);
- torch's FutureWarning about `LeafSpec`, raised from inside Lightning's own code;
- in a sweep through SLURM (hydra/launcher=slurm), submitit's warning that `sacct` failed, which it
  repeats at every poll of the jobs' states where SLURM accounting is off: it is shown once, in one line.
"""

import logging
import re
import warnings
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# The loggers of Lightning's rank_zero_info, in the standalone package and in the unified `lightning` one.
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")

KNOWN_LOG_MESSAGES = (
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
    "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]",
    "Trainer already configured with model summary callbacks:",
)

KNOWN_WARNINGS = (
    "The `srun` command is available on your system but is not used.",
    "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided",
    "`isinstance(treespec, LeafSpec)` is deprecated",
)


class KnownNoise(logging.Filter):
    """Drops the log records whose message starts with one of `KNOWN_LOG_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KNOWN_LOG_MESSAGES)


KNOWN_NOISE = KnownNoise()

# submitit's message when a poll of `sacct` fails (submitit.core.core.InfoWatcher.update).
SACCT_POLL_FAILED = re.compile(r"Call #\d+ - Bypassing sacct error ")

log = logging.getLogger(__name__)


class SacctWarningOnce(logging.Filter):
    """Drops submitit's failed-`sacct` warnings, and says once, in one line, what the first one said.

    submitit prints each warning to stdout, to stderr and through the root logger, at every poll.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not SACCT_POLL_FAILED.match(record.getMessage()):
            return True
        if not self.shown:
            self.shown = True
            log.warning(
                "submitit cannot read the jobs' states from sacct (SLURM accounting is off?), so it waits for their results instead: %s", record.getMessage()
            )
        return False


class QuietSacctPolling(Callback):
    """In a multirun, from its start, submitit's repeated failed-`sacct` warning is shown once (all of them with show_known_noise=true)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("show_known_noise", False):
            logging.getLogger("submitit").addFilter(SacctWarningOnce())


def hide_known_noise(show: bool = False) -> None:
    """Leave the known lines out of the console and the run log, or (`show`) let them through again."""
    for name in LIGHTNING_LOGGERS:
        if show:
            logging.getLogger(name).removeFilter(KNOWN_NOISE)
        else:
            logging.getLogger(name).addFilter(KNOWN_NOISE)  # once: a filter already there is not added again
    if not show:
        for message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message))
