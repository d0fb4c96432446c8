"""When a task logs per-step values: only on the steps whose values someone reads.

Lightning writes step values to the loggers every `trainer.log_every_n_steps` steps, and each
`self.log` call costs (it moves and updates a metric object): on a small model, a few percent of
the step. Logging only on those steps, and on the last step of an epoch and of the run (whose
values end up in metrics.json), leaves the loggers' and metrics.json's figures as they were;
the progress bar shows the loss of the latest logged step.
"""

import pytorch_lightning as pl


def logs_this_step(trainer: pl.Trainer) -> bool:
    """True in the training step whose values Lightning will write or keep as the run's last."""
    step = trainer.global_step + 1  # the optimizer step this batch completes
    every = trainer.log_every_n_steps
    return bool((every > 0 and step % every == 0) or trainer.is_last_batch or step == trainer.max_steps or trainer.fast_dev_run)
