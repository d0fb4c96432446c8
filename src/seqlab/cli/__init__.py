"""The console scripts, one module each: seqlab-train, seqlab-eval, seqlab-predict, seqlab-export, seqlab-serve,
seqlab-generate, seqlab-cv-summary. Each composes its config with Hydra and hands it to the packages below."""
