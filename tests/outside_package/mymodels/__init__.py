"""A user's own models for seqlab, kept outside seqlab."""
