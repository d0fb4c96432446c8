"""seqlab's Hydra sweepers. Hydra finds plugins only under the `hydra_plugins` namespace package."""
