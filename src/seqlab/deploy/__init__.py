"""Deployment: loading trained models for inference, reading input files, exported bundles, the HTTP service."""
