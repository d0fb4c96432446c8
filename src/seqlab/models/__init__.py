"""Models: plain torch.nn.Modules, chosen and sized by the `model` config group.

A constructor refuses a bad argument with a ValueError whose message starts with the argument's
name, which is also its key under `model.`, so a task reports it as `model.<message>`.
"""


def check_sizes(**sizes: int) -> None:
    """Refuse sizes and counts below 1 before torch does, in the argument's own name."""
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size}")
