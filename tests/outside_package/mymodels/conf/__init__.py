"""Config groups added to seqlab's (`hydra.searchpath=[pkg://mymodels.conf]`)."""
