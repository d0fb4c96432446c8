"""Evaluation reports and training plots: classification reports, language-model figures, learning curves."""
