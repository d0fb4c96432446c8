"""Models: plain torch.nn.Modules, chosen and sized by the `model` config group."""
