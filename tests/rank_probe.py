"""A callback the multi-process tests add to a run: each rank records the run it composed, in a dir of the test's."""

import json
import os
from pathlib import Path

import pytorch_lightning as pl


class RankProbe(pl.Callback):
    """Writes `<out_dir>/<job>-rank<R>.json`: this rank's pid, run dir and the config values it was given."""

    def __init__(self, out_dir: str, job: str, run_dir: str, **values: object) -> None:
        self.path = Path(out_dir)
        self.record = {"job": job, "run_dir": run_dir, "values": values, "pid": os.getpid()}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.path.mkdir(parents=True, exist_ok=True)
            record = {**self.record, "rank": trainer.global_rank, "world_size": trainer.world_size}
            (self.path / f"{self.record['job']}-rank{trainer.global_rank}.json").write_text(json.dumps(record))
