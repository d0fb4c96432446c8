"""seqlab-eval: rebuild a run's data and model from its checkpoint and test it.

The checkpoint carries the run's config, tokenizer and labels; overrides on the command line
still apply to them (`data.batch_size=64`, `paths.data_dir=...`). Trainer, loggers and paths
are this command's own.
"""

import hydra
from omegaconf import DictConfig

from seqlab.errors import reports_errors
from seqlab.sweeps.plugins import register_sweepers

register_sweepers()

# The parts of a run's config that define what was trained; the rest belongs to whoever runs eval.
RUN_KEYS = ("data", "model", "task", "optimizer", "scheduler", "monitor", "monitor_mode")


def run_config(cfg: DictConfig, saved: dict) -> DictConfig:
    """This command's config with the run's data, model and task, and this command's overrides on top."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

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
    from seqlab.runs.record import check_run_record, read_run_record
    from seqlab.cli.config_checks import check_override_types
    from seqlab.reports.evaluation import evaluation_report

    check_override_types(cfg)
    if cfg.get("ckpt_path") in (None, "last"):
        raise runs.SeqlabError("seqlab-eval needs ckpt_path=<checkpoint file> (a run's metrics.json names its best one)")
    ckpt_path = runs.resolve_ckpt_path(cfg)
    record = read_run_record(ckpt_path)
    check_run_record(record, ckpt_path)
    cfg = run_config(cfg, record["config"])
    runs.write_resolved_config(cfg)

    failed = True
    try:
        datamodule = runs.build_datamodule(cfg, record)
        task = runs.build_task(cfg, datamodule)
        trainer = runs.build_trainer(cfg)
        metrics = runs.scalar_metrics(trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)[0])
        metrics.update(datamodule.split_sizes)
        report = evaluation_report(trainer, task, datamodule, metrics, runs.run_dir(cfg))
        runs.write_json(runs.run_dir(cfg) / "metrics.json", {**metrics, "ckpt_path": ckpt_path, **({"report": report} if report else {})})
        failed = False
        return metrics
    finally:
        finish_wandb(failed)


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
