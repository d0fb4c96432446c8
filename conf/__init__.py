"""seqlab's Hydra config tree, shipped as package data so installed copies find it."""
