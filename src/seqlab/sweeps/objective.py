"""What a sweep optimises and what it found: which way each optimised metric is better, and the best
configuration as overrides and a command line.

Both sweep reports use these: the Optuna sweeper's `optimization_results.yaml` (`best_overrides`,
`best_command_line`) and the cross-validation summary (`best_configuration`). A metric is better
higher or lower by `monitor_mode` when it is the monitored metric (`monitor`), else by its name's
last part (`val/acc` -> `acc`).
"""

import shlex
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

from seqlab.errors import SeqlabError

HIGHER_IS_BETTER = frozenset({"acc", "accuracy", "f1", "auroc", "bleu", "chrf"})
LOWER_IS_BETTER = frozenset({"loss", "ppl", "perplexity", "bpc"})
_ALIASES = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
# Overrides that say how a sweep ran, not what it trained: a rerun of the best configuration leaves them out.
_SWEEP_ONLY_KEYS = frozenset({"data.fold", "data.num_folds", "cv", "hydra", "hparams_search", "crossval"})


def known_direction(metric: str, monitor: str | None, monitor_mode: str | None) -> str | None:
    """`maximize` or `minimize` for `metric`, or None when seqlab cannot tell."""
    if metric == monitor and monitor_mode in ("max", "min"):
        return _ALIASES[monitor_mode]
    name = metric.rpartition("/")[2].lower()
    if name in HIGHER_IS_BETTER:
        return "maximize"
    if name in LOWER_IS_BETTER:
        return "minimize"
    return None


def _why(metric: str, monitor: str | None, monitor_mode: str | None) -> str:
    if metric == monitor and monitor_mode in ("max", "min"):
        return f"monitor_mode={monitor_mode}"
    return f"its name ends in {metric.rpartition('/')[2]}"


def study_directions(direction: Any, optimized_metric: Any, monitor: str | None, monitor_mode: str | None) -> list[str]:
    """The study's direction per objective: `hydra.sweeper.direction` where given, checked against each
    metric's known sense, else that sense; refused in one line when neither says."""
    metrics = [optimized_metric] if isinstance(optimized_metric, str) or optimized_metric is None else [str(m) for m in optimized_metric]
    given = [None] * len(metrics) if direction is None else [direction] if isinstance(direction, str) else list(direction)
    unknown = [d for d in given if d is not None and str(d).lower() not in _ALIASES]
    if unknown or not given:
        raise SeqlabError(f"hydra.sweeper.direction must be minimize or maximize, or a list of them; got {direction}")
    if len(given) != len(metrics):
        raise SeqlabError(
            f"hydra.sweeper.direction has {len(given)} entries but optimized_metric {len(metrics)} ({optimized_metric}): give one direction per metric"
        )
    directions = []
    for index, (metric, wanted) in enumerate(zip(metrics, given)):
        key = "hydra.sweeper.direction" + (f"[{index}]" if len(metrics) > 1 else "")
        if metric is None:
            raise SeqlabError("optimized_metric is null: set optimized_metric to the metric the search optimises (e.g. val/acc)")
        known = known_direction(metric, monitor, monitor_mode)
        wanted = _ALIASES[str(wanted).lower()] if wanted is not None else None
        if wanted is None and known is None:
            raise SeqlabError(f"seqlab does not know whether optimized_metric {metric} is better higher or lower: set {key}=maximize or minimize")
        if wanted is not None and known is not None and wanted != known:
            sense = "higher" if known == "maximize" else "lower"
            raise SeqlabError(
                f"{key}={wanted} but optimized_metric {metric} is better when {sense} ({_why(metric, monitor, monitor_mode)}); "
                f"drop the direction or set it to {known}"
            )
        directions.append(wanted or known)
    return directions


def rerun_overrides(overrides: list[str]) -> list[str]:
    """The overrides that train a sweep job's configuration again: without what only placed the job in
    its sweep (its fold, `cv.*`) and the sweep's machinery (`hydra.*`, the `hparams_search` and
    `crossval` presets, which configure the sweeper; the values they searched are among the overrides)."""
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    return [override.input_line for override in parsed if not _sweep_only(override.key_or_group)]


def _sweep_only(key: str) -> bool:
    return key in _SWEEP_ONLY_KEYS or key.startswith(("cv.", "hydra.", "hydra/"))


def command_line(overrides: list[str]) -> str:
    """The overrides as one shell command-line fragment, each quoted where a shell would split or expand it."""
    return shlex.join(overrides)
