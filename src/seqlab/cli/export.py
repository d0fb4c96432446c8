"""seqlab-export: write a checkpoint, or a fold ensemble, as a self-contained bundle (ONNX or safetensors) for
seqlab-predict and seqlab-serve.

Imports of torch (and of the seqlab modules and exporters that import it) happen inside the task
function, so `--help` answers at once.
"""

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.data.download import sha256_of
from seqlab.data.labels import write_label_ids
from seqlab.errors import SeqlabError, reports_errors

if TYPE_CHECKING:
    from seqlab.runs.record import SavedRun
    from seqlab.sweeps.ensemble import EnsembleMember

log = logging.getLogger(__name__)

# Token limit used to check an exported model that was trained without one.
CHECK_LENGTH_WITHOUT_LIMIT = 256


@reports_errors
def export(cfg: DictConfig) -> str:
    """Export `ckpt_path` (a checkpoint, or a fold ensemble) as `format` into `output_dir`; return the bundle's path."""
    from seqlab import runs
    from seqlab.deploy import bundle
    from seqlab.deploy.translation import holds_translation_model, write_translation_model
    from seqlab.runs.record import read_run
    from seqlab.sweeps.ensemble import ensemble_members

    check_override_types(cfg)
    if cfg.format not in bundle.FORMATS:
        raise SeqlabError(f"format={cfg.format!r} is not supported: choose one of {', '.join(bundle.FORMATS)}")
    if cfg.get("ckpt_path") in (None, "last"):
        raise SeqlabError("seqlab-export needs ckpt_path=<checkpoint file or run dir> (a run dir: its best checkpoint)")
    if not cfg.get("output_dir"):
        raise SeqlabError("seqlab-export needs output_dir=<dir> for the bundle (it must not exist yet, or add overwrite=true)")
    members = ensemble_members(cfg.ckpt_path, cfg.ensemble.allow_missing)
    ckpt_path = runs.resolve_ckpt_path(cfg) if members is None else None

    with bundle.bundle_writer(cfg.output_dir, cfg.overwrite) as staging:
        if members is not None:
            fields = write_ensemble(staging, members, cfg)
        elif holds_translation_model(saved := read_run(ckpt_path, trusted_packages=cfg.trusted_packages)):
            fields = {"format": cfg.format, **write_translation_model(staging, saved, ckpt_path, cfg)}
        else:
            fields = {"format": cfg.format, **write_model(staging, saved, ckpt_path, cfg, "seqlab-export")}
        bundle.write_manifest(staging, fields)
    log.info("wrote %s bundle %s", cfg.format, cfg.output_dir)
    return str(cfg.output_dir)


def write_model(directory: Path, saved: "SavedRun", ckpt_path: str, cfg: DictConfig, command: str) -> dict[str, Any]:
    """Write the classifier of `ckpt_path` (as `read_run` read it) in `directory` as `cfg.format` with its
    tokenizer and labels; return what the manifest says of it."""
    from safetensors.torch import save_model

    from seqlab.deploy import bundle
    from seqlab.runs.trained import CLASSIFICATION, token_limit, trained_task_from_run

    trained = trained_task_from_run(saved, ckpt_path, cfg.paths, CLASSIFICATION, command)
    datamodule, task = trained.datamodule, trained.task
    lora_merged = bool(getattr(task, "adapted", None))
    if lora_merged:  # LoRA adapters fold into their weights: the bundle holds the plain architecture
        task.merge_adapters()
    max_length = token_limit(datamodule, task.net)

    fields = {"kind": trained.kind, "max_length": max_length, "source_checkpoint": {"path": ckpt_path, "sha256": sha256_of(ckpt_path)}}
    bundle.write_bundle_tokenizer(directory, datamodule.tokenizer, max_length)
    write_label_ids(directory / bundle.LABELS, datamodule.label_names)
    if cfg.format == bundle.ONNX:
        from seqlab.deploy.onnx_export import export_onnx

        tokenizer = datamodule.tokenizer
        fields["onnx_check"] = export_onnx(
            task, directory / bundle.MODEL_FILES[bundle.ONNX], tokenizer.vocab_size, tokenizer.pad_id, max_length or CHECK_LENGTH_WITHOUT_LIMIT
        )
    else:
        config = OmegaConf.to_container(trained.config, resolve=True)
        run_config = {key: config[key] for key in ("data", "model", "task", "optimizer", "scheduler") if key in config}
        if lora_merged:
            run_config["task"]["lora"] = None
        (directory / bundle.CONFIG).write_text(json.dumps(run_config, indent=2) + "\n")
        # save_model stores a tied weight (a GPT's token embedding and output layer) once; save_file refuses shared tensors.
        save_model(task, str(directory / bundle.MODEL_FILES[bundle.SAFETENSORS]))
    return fields


def write_ensemble(directory: Path, members: "list[EnsembleMember]", cfg: DictConfig) -> dict[str, Any]:
    """Write each member's model in members/<k>/ of `directory`, and the labels they share; return the manifest's fields."""
    from seqlab.data.labels import read_label_names
    from seqlab.deploy import bundle
    from seqlab.runs.record import read_run
    from seqlab.runs.trained import CLASSIFICATION, check_same_labels
    from seqlab.sweeps.ensemble import ENSEMBLE_USE

    entries, labels = [], []
    for k, member in enumerate(members):
        member_dir = f"{bundle.MEMBERS_DIR}/{k}"
        (directory / member_dir).mkdir(parents=True)
        saved = read_run(member.ckpt_path, trusted_packages=cfg.trusted_packages)
        fields = write_model(directory / member_dir, saved, member.ckpt_path, cfg, ENSEMBLE_USE)
        del fields["kind"]
        entries.append({"dir": member_dir, "name": member.name, **fields})
        labels.append((member.name, read_label_names(directory / member_dir / bundle.LABELS)))
        log.info("exported member %s (%s)", member.name, member.ckpt_path)
    check_same_labels(labels)
    write_label_ids(directory / bundle.LABELS, labels[0][1])
    limits = [entry["max_length"] for entry in entries if entry["max_length"]]
    return {"format": cfg.format, "kind": CLASSIFICATION, "max_length": min(limits) if limits else None, "members": entries}


def main() -> None:
    """seqlab-export: refuse a config group set to null in one line, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    run_export()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="export")
def run_export(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
