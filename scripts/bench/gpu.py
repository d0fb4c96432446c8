"""GPT-2 small on one GPU through seqlab: tokens/s and model FLOPs utilisation (MFU) against the chip's
bf16 peak. Target: >= 40% MFU on one H200.

The run is seqlab's own path: the language-modelling task around `seqlab.models.gpt.GPT` (12 layers,
12 heads, 768 wide, block 1024, vocabulary 50304: 124M parameters), built by seqlab.runs from the
composed config with `trainer=gpu trainer.precision=bf16-mixed compile=true` (torch.compile
on the inner module), fused AdamW (seqlab's default on CUDA) and SDPA restricted to the flash
kernel. Batches are random token ids: MFU depends on shapes, not on text. Steps before `--warmup`
include compilation and are not timed; the host waits for the GPU only at the two ends of the
timed window.

MFU counts 6 N + 12 L T d FLOPs per token (N: parameters without the position embeddings,
nanoGPT's estimate, attention included).

    python scripts/bench/gpu.py                  # on a GPU machine: under 5 minutes with compilation
    python scripts/bench/gpu.py --tiny           # a few-second check of the script on CPU
"""

import argparse
import contextlib
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from harness import compose_run_config, report
from torch.utils.data import DataLoader, Dataset

from seqlab import runs
from seqlab.data.tokenizers import CharTokenizer

# Dense bf16 peaks (FLOP/s) without sparsity, by a substring of torch.cuda.get_device_name().
BF16_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}

GPT2_SMALL = {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "block_size": 1024, "vocab_size": 50304}
TINY = {"num_layers": 2, "num_heads": 2, "hidden_dim": 64, "block_size": 64, "vocab_size": 512}


class RandomTokens(Dataset):
    """`length` windows of random token ids with their next-token targets."""

    def __init__(self, vocab_size: int, block_size: int, length: int) -> None:
        self.vocab_size, self.block_size, self.length = vocab_size, block_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, self.vocab_size, (self.block_size + 1,))
        return {"input_ids": ids[:-1], "targets": ids[1:]}


class RandomTokenData(pl.LightningDataModule):
    """What seqlab.runs needs of a language-modelling DataModule, over random tokens."""

    def __init__(self, vocab_size: int, block_size: int, batch_size: int, batches: int, workers: int) -> None:
        super().__init__()
        self.vocab_size, self.block_size, self.batch_size, self.batches, self.workers = vocab_size, block_size, batch_size, batches, workers
        # The task wants a tokenizer for its samples (switched off here) and to tell characters from words.
        self.tokenizer = CharTokenizer()
        self.tokenizer.fit(["ab"])

    def train_dataloader(self) -> DataLoader:
        dataset = RandomTokens(self.vocab_size, self.block_size, self.batch_size * self.batches)
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.workers, pin_memory=torch.cuda.is_available(), persistent_workers=self.workers > 0
        )

    def model_dims(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size}

    def task_dims(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer}


class StepTimer(pl.Callback):
    """Times the training steps after `warmup`, waiting for the device only at the window's two ends."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.timed_steps = 0

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.end = time.perf_counter()
        self.timed_steps = trainer.global_step - self.warmup


def flops_per_token(model: torch.nn.Module, shape: dict[str, int]) -> float:
    n = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    return 6 * n + 12 * shape["num_layers"] * shape["block_size"] * shape["hidden_dim"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny GPT on whatever device there is: checks the script, measures nothing")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default 16; 4 with --tiny)")
    parser.add_argument("--steps", type=int, help="timed steps (default 40; 3 with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default 10; 2 with --tiny)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (eager), e.g. to see what compiling buys")
    parser.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 peak, if it is not in the table")
    parser.add_argument("--workers", type=int, help="loader worker processes (default 4; 0 with --tiny)")
    args = parser.parse_args()
    shape = TINY if args.tiny else GPT2_SMALL
    batch_size = args.batch_size or (4 if args.tiny else 16)
    steps = args.steps or (3 if args.tiny else 40)
    warmup = args.warmup if args.warmup is not None else (2 if args.tiny else 10)
    workers = args.workers if args.workers is not None else (0 if args.tiny else 4)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        raise SystemExit("no GPU here: gpu.py measures a GPU (use --tiny to check the script on CPU)")

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "seqlab"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_float32_matmul_precision("high")

    overrides = [
        "experiment=shakespeare_gpt",
        f"trainer={'gpu' if cuda else 'cpu'}",
        f"trainer.precision={'bf16-mixed' if cuda else '32-true'}",
        f"compile={str(not args.no_compile).lower()}",
        *(f"model.{key}={value}" for key, value in shape.items() if key != "vocab_size"),
        "model.dropout=0.0",
        f"trainer.max_steps={warmup + steps}",
        "trainer.val_check_interval=null",
        "+trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=10",
        "task.sample_length=0",
        # The default callbacks, less those that validate or write a 1.5 GB checkpoint.
        "callbacks.model_checkpoint=null",
        "callbacks.last_checkpoint=null",
        "callbacks.early_stopping=null",
        "+trainer.enable_checkpointing=false",
    ]
    with tempfile.TemporaryDirectory(prefix="seqlab-gpu-") as tmp:
        cfg = compose_run_config(overrides, Path(tmp) / "run")
        datamodule = RandomTokenData(shape["vocab_size"], shape["block_size"], batch_size, warmup + steps, workers)
        task = runs.build_task(cfg, datamodule)
        timer = StepTimer(warmup)
        trainer = runs.build_trainer(cfg)
        trainer.callbacks.append(timer)
        attention = contextlib.nullcontext()
        if cuda:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            attention = sdpa_kernel(SDPBackend.FLASH_ATTENTION)  # fails loudly rather than fall back
        start = time.perf_counter()
        with attention:
            trainer.fit(task, datamodule=datamodule)
        total_s = time.perf_counter() - start

    seconds = timer.end - timer.start
    tokens_per_s = timer.timed_steps * batch_size * shape["block_size"] / seconds
    flops = flops_per_token(task.net, shape) * tokens_per_s
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next((v for k, v in BF16_PEAKS.items() if k in device), None)
    mfu = flops / peak if peak else float("nan")
    params = sum(p.numel() for p in task.net.parameters())
    rows = [
        ("model", f"GPT {shape['num_layers']}x{shape['hidden_dim']}, {params / 1e6:.1f}M parameters, block {shape['block_size']}"),
        ("device", device),
        ("batch", f"{batch_size} x {shape['block_size']} tokens"),
        ("timed steps (after warm-up)", f"{timer.timed_steps} (after {warmup})"),
        ("ms per step", f"{1000 * seconds / timer.timed_steps:.1f}"),
        ("tokens/s", f"{tokens_per_s:,.0f}"),
        ("achieved TFLOP/s", f"{flops / 1e12:.1f}"),
        ("MFU", f"{mfu:.1%}" if peak else "n/a (no bf16 peak known: --peak-tflops)"),
        ("whole run, compilation included (s)", f"{total_s:.0f}"),
    ]
    report(
        "gpu: GPT-2 small, bf16-mixed, flash SDPA, fused AdamW, torch.compile",
        ["", "value"],
        rows,
        {"tokens_per_s": tokens_per_s, "tflops": flops / 1e12, "total_s": total_s, "mfu": mfu},
        notes=["--tiny: a check that the script runs; its figures mean nothing"] if args.tiny else [],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
