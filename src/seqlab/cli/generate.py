"""seqlab-generate: continue a prompt with a language model from its checkpoint and print the text.

Only the samples go to stdout, so the output can be piped; notes go to the log (stderr).

Imports of torch (and of the seqlab modules that import it) happen inside the task function, so
`--help` answers at once.
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.errors import SeqlabError, reports_errors

log = logging.getLogger(__name__)


@reports_errors
def generate(cfg: DictConfig) -> list[str]:
    """Print `num_samples` continuations of `prompt`, each prompt included; return them."""
    import torch

    from seqlab import runs
    from seqlab.launch.memory import keep_freed_memory
    from seqlab.launch.threads import use_threads
    from seqlab.runs.trained import LANGUAGE_MODEL, load_trained_task

    check_override_types(cfg)
    use_threads(cfg.get("threads"))
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    if cfg.get("ckpt_path") in (None, "last"):
        raise SeqlabError("seqlab-generate needs ckpt_path=<language-model checkpoint>")
    for name, minimum in (("max_new_tokens", 0), ("num_samples", 1)):
        if cfg[name] < minimum:
            raise SeqlabError(f"{name} must be at least {minimum}, got {cfg[name]}")
    if cfg.temperature < 0:
        raise SeqlabError(f"temperature must be 0 or more, got {cfg.temperature}")
    if cfg.top_k is not None and cfg.top_k < 1:
        raise SeqlabError(f"top_k must be at least 1 (or null), got {cfg.top_k}")
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise SeqlabError(f"top_p must be in (0, 1] (or null), got {cfg.top_p}")

    trained = load_trained_task(runs.resolve_ckpt_path(cfg), cfg.paths, LANGUAGE_MODEL, "seqlab-generate", cfg.trusted_packages)
    tokenizer, model = trained.datamodule.tokenizer, trained.task.net.to(cfg.device).eval()
    ids = tokenizer.encode_batch([cfg.prompt])[0] if cfg.prompt else []
    if not ids:
        raise SeqlabError('the prompt has no tokens: give a prompt, e.g. prompt="ROMEO:"')
    limit = getattr(getattr(model, "config", None), "block_size", None)
    if limit and len(ids) > limit:
        log.warning("the prompt has %d tokens, more than the model's context of %d: it conditions on the last %d", len(ids), limit, limit)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
        torch.cuda.manual_seed_all(cfg.seed)

    prompt = torch.tensor([ids] * cfg.num_samples, dtype=torch.long, device=cfg.device)
    with torch.inference_mode():
        out = model.generate(prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
    samples = [tokenizer.decode(row.tolist()) for row in out]
    for index, sample in enumerate(samples):
        if index:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(sample + "\n")
    sys.stdout.flush()
    return samples


def main() -> None:
    """seqlab-generate: refuse a config group set to null in one line, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    run_generate()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="generate")
def run_generate(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
