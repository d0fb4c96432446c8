#!/usr/bin/env bash
# DDP with torchrun on one machine: NPROC processes, every one composing the same config and run dir.
#   scripts/torchrun_train.sh                                    # 2 GPUs, the default run
#   NPROC=4 scripts/torchrun_train.sh model=gru optimizer.lr=1e-3
#   NPROC=2 scripts/torchrun_train.sh trainer.accelerator=cpu    # CPUs, with gloo
# Any seqlab-train override can follow; RUN_DIR=... picks the run dir (default: one timestamp for all ranks).
set -euo pipefail
NPROC=${NPROC:-2}
# Computed once, here: a timestamp each rank took itself would give each rank a run dir of its own.
RUN_DIR=${RUN_DIR:-outputs/train/torchrun-$(date +%Y-%m-%d_%H-%M-%S)}
exec torchrun --standalone --nproc-per-node="$NPROC" -m seqlab.cli.train \
  trainer=ddp trainer.devices="$NPROC" hydra.run.dir="$RUN_DIR" "$@"
