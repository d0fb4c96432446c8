"""seqlab-eval: rebuild a run's data and model from its checkpoint and test it; or test a fold
ensemble (`ckpt_path=<cross-validation sweep dir>` or a list of checkpoints) and each of its members.

The checkpoint carries the run's config, tokenizer and labels; overrides on the command line
still apply to them (`data.batch_size=64`, `paths.data_dir=...`). Trainer, loggers and paths
are this command's own.

Imports of torch and Lightning (and of the seqlab modules that import them) happen inside the task
function, so `--help` answers at once.
"""

import sys
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.console import hide_known_noise
from seqlab.errors import SeqlabError, reports_errors
from seqlab.launch.memory import keep_freed_memory
from seqlab.launch.threads import use_threads
from seqlab.sweeps.plugins import register_sweepers

if TYPE_CHECKING:
    from seqlab.sweeps.ensemble import EnsembleMember

register_sweepers()

# The parts of a run's config that define what was trained; the rest belongs to whoever runs eval.
# `cv`: its protocol (which data.fold_split interpolates) says whether a fold's run tested on its fold.
RUN_KEYS = ("data", "model", "task", "optimizer", "scheduler", "monitor", "monitor_mode", "cv")


def run_config(cfg: DictConfig, saved: dict) -> DictConfig:
    """This command's config with the run's data, model and task, and this command's overrides on top."""
    merged = cfg.copy()
    with open_dict(merged):
        for key in saved:
            # The run's own keys, and those this command's config lacks (a preset's own, such as
            # bible_en_es_*'s `pair`), so that the run's interpolations resolve.
            if key in RUN_KEYS or key not in merged:
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
    from seqlab.reports.evaluation import CollectedTestPredictions, evaluation_report
    from seqlab.runs.trained import load_weights
    from seqlab.sweeps.ensemble import ensemble_members
    from seqlab.tags import as_tags

    hide_known_noise(show=cfg.get("show_known_noise", False))
    check_override_types(cfg)
    use_threads(cfg.get("threads"))
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    if cfg.get("ckpt_path") in (None, "last"):
        raise SeqlabError("seqlab-eval needs ckpt_path=<checkpoint file or run dir> (a run dir: its best checkpoint)")
    members = ensemble_members(cfg.ckpt_path, cfg.ensemble.allow_missing)
    if members is not None:
        return evaluate_ensemble(cfg, members)
    ckpt_path = runs.resolve_ckpt_path(cfg)
    saved = runs.read_run(ckpt_path, trusted_packages=cfg.trusted_packages)
    cfg = run_config(cfg, saved.config)
    runs.write_resolved_config(cfg)
    show_config_tree(cfg)

    failed = True
    try:
        datamodule = runs.build_datamodule(cfg, saved.tokenizer, saved.label_names, saved.target_tokenizer)
        task = runs.build_task(cfg, datamodule)
        load_weights(task, saved)  # the checkpoint's weights from this one read: Lightning need not read it again
        del saved  # its weights are in the task now
        trainer = runs.build_trainer(cfg)
        test_predictions = CollectedTestPredictions()
        trainer.callbacks.append(test_predictions)
        metrics = runs.scalar_metrics(trainer.test(task, datamodule=datamodule)[0])
        metrics.update(datamodule.split_sizes)
        report = evaluation_report(trainer, task, datamodule, metrics, runs.run_dir(cfg), test_predictions)
        runs.write_json(
            runs.run_dir(cfg) / "metrics.json", {**metrics, "ckpt_path": ckpt_path, "tags": as_tags(cfg.get("tags")), **({"report": report} if report else {})}
        )
        failed = False
        return metrics
    finally:
        finish_wandb(failed)


def evaluate_ensemble(cfg: DictConfig, members: "list[EnsembleMember]") -> dict[str, float]:
    """Test a fold ensemble, and each of its members, on the test split of the first member's data
    config (with this command's overrides); each member tokenises it with its own tokenizer. Write
    metrics.json with the ensemble's metrics, each member's, and the ensemble's report."""
    import torch

    from seqlab import runs
    from seqlab.loggers import finish_wandb
    from seqlab.reports.config_tree import show_config_tree
    from seqlab.reports.evaluation import ensemble_evaluation, print_ensemble_table
    from seqlab.runs.trained import CLASSIFICATION, check_same_labels, checkpoint_kind, load_weights, require_kind
    from seqlab.sweeps.ensemble import ENSEMBLE_USE
    from seqlab.tags import as_tags

    failed, trainer = True, None
    member_probs, first = [], None
    try:
        for member in members:
            saved = runs.read_run(member.ckpt_path, trusted_packages=cfg.trusted_packages)
            require_kind(checkpoint_kind(saved), CLASSIFICATION, f"checkpoint {member.ckpt_path}", ENSEMBLE_USE)
            if first is None:
                first = {"name": member.name, "data": saved.config["data"], "label_names": saved.label_names}
            check_same_labels([(first["name"], first["label_names"]), (member.name, saved.label_names)])
            member_cfg = run_config(cfg, {**saved.config, "data": first["data"]})
            if member_cfg.data.get("fold_split") == "test":
                # Under cv.protocol=test every text of the pool trained some fold: no test fold is held out from the ensemble.
                raise SeqlabError(
                    f"the folds of {member.ckpt_path} were trained under cv.protocol=test, so each fold's test set trained the other folds; "
                    "test the ensemble on data no fold saw: the source's own test split (data.fold_split=validation data.num_folds=null data.fold=null) "
                    "or a file of your own (data=text_files data.test_file=...)"
                )
            datamodule = runs.build_datamodule(member_cfg, saved.tokenizer, saved.label_names)
            task = runs.build_task(member_cfg, datamodule)
            load_weights(task, saved)
            del saved  # its weights are in the task now
            if trainer is None:  # the first member's config is the one this eval's run dir records
                runs.write_resolved_config(member_cfg)
                show_config_tree(member_cfg)
                trainer = runs.build_trainer(member_cfg)
                labels = torch.as_tensor(datamodule.datasets["test"].labels)
                split_sizes = datamodule.split_sizes
            probs = datamodule.in_test_order(torch.cat(trainer.predict(task, dataloaders=datamodule.test_dataloader()))).double().cpu()
            if len(probs) != len(labels):
                raise SeqlabError(f"{member.name} reads a test set of {len(probs)} texts, the first member one of {len(labels)}: its data settings differ")
            member_probs.append(probs[:, [datamodule.label_names.index(name) for name in first["label_names"]]])
        metrics, rows, report = ensemble_evaluation(member_probs, [m.name for m in members], labels, first["label_names"], runs.run_dir(cfg))
        print_ensemble_table(metrics, rows)
        metrics.update(split_sizes)
        payload = {
            **metrics,
            "ckpt_path": [member.ckpt_path for member in members],
            "members": [{**row, "ckpt_path": member.ckpt_path} for row, member in zip(rows, members)],
            "tags": as_tags(cfg.get("tags")),
            "report": report,
        }
        runs.write_json(runs.run_dir(cfg) / "metrics.json", payload)
        failed = False
        return metrics
    finally:
        finish_wandb(failed)


def main() -> None:
    """seqlab-eval: refuse a config group set to null in one line, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    run_eval()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="eval")
def run_eval(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
