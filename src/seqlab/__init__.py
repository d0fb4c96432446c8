"""seqlab: a Hydra-configured framework for training, validating, fine-tuning and deploying sequence models."""

__version__ = "0.1.0"
