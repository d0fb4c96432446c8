"""seqlab's Hydra config tree, shipped as package data so installed copies find it."""

import warnings

from seqlab.launch.ranks import register_resolvers

# Composing any seqlab config loads this package first, so the resolvers its files use exist by then.
register_resolvers()

# hydra/launcher/submitit_local.yaml deliberately takes the plugin's preset name (so the command
# users know derives its tasks from trainer.devices); Hydra notes that the plugin's schema checks it.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_local' is validated against ConfigStore schema")
