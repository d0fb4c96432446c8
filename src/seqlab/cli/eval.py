"""seqlab-eval: rebuild a run's data and model from its checkpoint and test it.

The checkpoint carries the run's config, tokenizer and labels; overrides on the command line
still apply to them (`data.batch_size=64`, `paths.data_dir=...`). Trainer, loggers and paths
are this command's own.

Imports of torch and Lightning (and of the seqlab modules that import them) happen inside the task
function, so `--help` answers at once.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.cli.config_checks import check_override_types
from seqlab.console import hide_known_noise
from seqlab.errors import SeqlabError, reports_errors
from seqlab.launch.threads import use_threads
from seqlab.sweeps.plugins import register_sweepers

register_sweepers()

# The parts of a run's config that define what was trained; the rest belongs to whoever runs eval.
RUN_KEYS = ("data", "model", "task", "optimizer", "scheduler", "monitor", "monitor_mode")


def run_config(cfg: DictConfig, saved: dict) -> DictConfig:
    """This command's config with the run's data, model and task, and this command's overrides on top."""
    merged = cfg.copy()
    with open_dict(merged):
        for key in RUN_KEYS:
            if key in saved:
                merged[key] = saved[key]
        overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
        for override in overrides:
            key = override.key_or_group.replace("/", ".")
            if key.split(".")[0] in RUN_KEYS and not override.is_delete():
                OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    return merged


@reports_errors
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `ckpt_path` on its run's test split; write metrics.json."""
    from seqlab import runs
    from seqlab.loggers import finish_wandb
    from seqlab.reports.config_tree import show_config_tree
    from seqlab.reports.evaluation import evaluation_report
    from seqlab.runs.trained import load_weights
    from seqlab.tags import as_tags

    hide_known_noise(show=cfg.get("show_known_noise", False))
    check_override_types(cfg)
    use_threads(cfg.get("threads"))
    if cfg.get("ckpt_path") in (None, "last"):
        raise SeqlabError("seqlab-eval needs ckpt_path=<checkpoint file> (a run's metrics.json names its best one)")
    ckpt_path = runs.resolve_ckpt_path(cfg)
    saved = runs.read_run(ckpt_path, trusted_packages=cfg.trusted_packages)
    cfg = run_config(cfg, saved.config)
    runs.write_resolved_config(cfg)
    show_config_tree(cfg)

    failed = True
    try:
        datamodule = runs.build_datamodule(cfg, saved.tokenizer, saved.label_names)
        task = runs.build_task(cfg, datamodule)
        load_weights(task, saved)  # the checkpoint's weights from this one read: Lightning need not read it again
        del saved  # its weights are in the task now
        trainer = runs.build_trainer(cfg)
        metrics = runs.scalar_metrics(trainer.test(task, datamodule=datamodule)[0])
        metrics.update(datamodule.split_sizes)
        report = evaluation_report(trainer, task, datamodule, metrics, runs.run_dir(cfg))
        runs.write_json(
            runs.run_dir(cfg) / "metrics.json", {**metrics, "ckpt_path": ckpt_path, "tags": as_tags(cfg.get("tags")), **({"report": report} if report else {})}
        )
        failed = False
        return metrics
    finally:
        finish_wandb(failed)


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
