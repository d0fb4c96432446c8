"""Run records written by earlier seqlab versions, brought to today's names before anything reads them.

A checkpoint or bundle outlives the code that wrote it: when a class moves or a setting is renamed,
the record still names the old one. Each rename is listed here once, so old files keep loading.
"""

from typing import Any

# Classes that moved: their old dotted path -> today's.
MOVED_TARGETS = {
    "seqlab.finetune.FreezeBackbone": "seqlab.tasks.finetuning.FreezeBackbone",
}


def upgrade_recorded_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recorded config (plain containers) with old class paths and setting names replaced."""
    return _renamed_targets(config)


def _renamed_targets(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: MOVED_TARGETS.get(value, value) if key == "_target_" else _renamed_targets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed_targets(item) for item in node]
    return node
