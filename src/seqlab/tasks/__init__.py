"""Tasks: LightningModules wrapping a model with its loss, metrics and optimiser."""
