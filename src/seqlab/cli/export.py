"""seqlab-export: write a checkpoint as a self-contained bundle (ONNX or safetensors) for seqlab-predict and seqlab-serve.

Imports of torch (and of the seqlab modules and exporters that import it) happen inside the task
function, so `--help` answers at once.
"""

import json
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from seqlab.cli.config_checks import check_override_types
from seqlab.data.download import sha256_of
from seqlab.data.labels import write_label_ids
from seqlab.errors import SeqlabError, reports_errors

log = logging.getLogger(__name__)

# Token limit used to check an exported model that was trained without one.
CHECK_LENGTH_WITHOUT_LIMIT = 256


@reports_errors
def export(cfg: DictConfig) -> str:
    """Export `ckpt_path` as `format` into `output_dir`; return the bundle's path."""
    from safetensors.torch import save_model

    from seqlab import runs
    from seqlab.deploy import bundle
    from seqlab.runs.trained import CLASSIFICATION, load_trained_task, token_limit

    check_override_types(cfg)
    if cfg.format not in bundle.FORMATS:
        raise SeqlabError(f"format={cfg.format!r} is not supported: choose one of {', '.join(bundle.FORMATS)}")
    if cfg.get("ckpt_path") in (None, "last"):
        raise SeqlabError("seqlab-export needs ckpt_path=<checkpoint file> (a run's metrics.json names its best one)")
    if not cfg.get("output_dir"):
        raise SeqlabError("seqlab-export needs output_dir=<dir> for the bundle (it must not exist yet, or add overwrite=true)")
    ckpt_path = runs.resolve_ckpt_path(cfg)
    trained = load_trained_task(ckpt_path, cfg.paths, CLASSIFICATION, "seqlab-export", cfg.trusted_packages)
    datamodule, task = trained.datamodule, trained.task
    lora_merged = bool(getattr(task, "adapted", None))
    if lora_merged:  # LoRA adapters fold into their weights: the bundle holds the plain architecture
        task.merge_adapters()
    max_length = token_limit(datamodule, task.net)

    with bundle.bundle_writer(cfg.output_dir, cfg.overwrite) as staging:
        fields = {
            "format": cfg.format,
            "kind": trained.kind,
            "max_length": max_length,
            "source_checkpoint": {"path": ckpt_path, "sha256": sha256_of(ckpt_path)},
        }
        bundle.write_bundle_tokenizer(staging, datamodule.tokenizer, max_length)
        write_label_ids(staging / bundle.LABELS, datamodule.label_names)
        if cfg.format == bundle.ONNX:
            from seqlab.deploy.onnx_export import export_onnx

            tokenizer = datamodule.tokenizer
            fields["onnx_check"] = export_onnx(
                task, staging / bundle.MODEL_FILES[bundle.ONNX], tokenizer.vocab_size, tokenizer.pad_id, max_length or CHECK_LENGTH_WITHOUT_LIMIT
            )
        else:
            config = OmegaConf.to_container(trained.config, resolve=True)
            run_config = {key: config[key] for key in ("data", "model", "task", "optimizer", "scheduler") if key in config}
            if lora_merged:
                run_config["task"]["lora"] = None
            (staging / bundle.CONFIG).write_text(json.dumps(run_config, indent=2) + "\n")
            # save_model stores a tied weight (a GPT's token embedding and output layer) once; save_file refuses shared tensors.
            save_model(task, str(staging / bundle.MODEL_FILES[bundle.SAFETENSORS]))
        bundle.write_manifest(staging, fields)
    log.info("wrote %s bundle %s", cfg.format, cfg.output_dir)
    return str(cfg.output_dir)


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
