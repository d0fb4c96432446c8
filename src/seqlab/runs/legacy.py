"""Run records written by earlier seqlab versions, brought to today's names before anything reads them.

A checkpoint or bundle outlives the code that wrote it: when a class moves or a setting is renamed,
the record still names the old one. Each rename is listed here once, so old files keep loading.
"""

from typing import Any

# Classes that moved: their old dotted path -> today's.
MOVED_TARGETS = {
    "seqlab.finetune.FreezeBackbone": "seqlab.tasks.finetuning.FreezeBackbone",
}

# Model settings renamed when every model family took one name per idea (the width `hidden_dim`,
# `num_layers`, `num_heads`), by the model's class: old key -> today's.
_GPT_KEYS = {"n_embd": "hidden_dim", "n_layer": "num_layers", "n_head": "num_heads"}
RENAMED_MODEL_KEYS = {
    "seqlab.models.gpt.GPT": _GPT_KEYS,
    "seqlab.models.gpt.GPTClassifier": _GPT_KEYS,
    "seqlab.models.transformer.TransformerClassifier": {
        "d_model": "hidden_dim",
        "n_layers": "num_layers",
        "n_heads": "num_heads",
        "d_ff": "ff_dim",
    },
}


def upgrade_recorded_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recorded config (plain containers) with old class paths and setting names replaced."""
    config = _renamed_targets(config)
    model = config.get("model")
    if isinstance(model, dict):
        renamed = RENAMED_MODEL_KEYS.get(model.get("_target_"), {})
        model = {renamed.get(key, key): value for key, value in model.items()}
        if "compile" in model:  # `model.compile` became the run setting `compile`
            config.setdefault("compile", model.pop("compile"))
        config["model"] = model
    return config


def _renamed_targets(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: MOVED_TARGETS.get(value, value) if key == "_target_" else _renamed_targets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed_targets(item) for item in node]
    return node
