"""Launching runs on several processes and machines: DDP ranks (distributed), SLURM and submitit (cluster),
and which rank a process is (ranks)."""
