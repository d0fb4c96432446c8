"""Sweeps: k-fold cross-validation summaries and the Optuna search that seqlab's Hydra sweepers run.

The sweeper classes themselves live in `hydra_plugins.seqlab_sweepers`, where Hydra finds plugins;
everything they and the jobs share is here.
"""
