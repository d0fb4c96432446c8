"""A run's tags: the labels a user gives it (`tags=[baseline,lstm]`, or one: `tags=baseline`).

Every record of a run stores them as a list of strings: metrics.json, job.json, the sweep summaries
and each logger. Light to import, so the sweep summaries read them without loading torch.
"""

from typing import Any

from omegaconf import OmegaConf


def as_tags(value: Any) -> list[str]:
    """The `tags` setting as a list of labels; null is none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return [str(tag) for tag in value]
    return [str(value)]
