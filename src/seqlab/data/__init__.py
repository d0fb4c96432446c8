"""Data: tokenizers, splits and LightningDataModules, chosen by the `data` config group."""
