"""Training iterations per second of the shakespeare_gpt and shakespeare_lstm models, measured side by side.

One iteration is what the presets' trainer does per batch: forward and backward on 12 random
windows of 64 characters, gradient clipping, an AdamW step. The two models alternate in rounds so
that a busy machine slows both alike; the ratio is the figure to compare across machines.

    python scripts/bench/lm_iterations.py [--rounds 5] [--steps 50]
"""

import argparse
import functools
import time

import torch
import torch.nn.functional as F

from seqlab.models.gpt import GPT
from seqlab.models.rnn import RNNLanguageModel
from seqlab.tasks.optim import build_optimizer

VOCAB = 67  # tiny Shakespeare's 65 characters, <pad> and <unk>


def trainer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor) -> None:
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="iterations per model per round")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {
        "shakespeare_gpt": GPT(VOCAB, block_size=64, num_layers=4, num_heads=4, hidden_dim=128),
        "shakespeare_lstm": RNNLanguageModel(VOCAB, embed_dim=128, hidden_dim=256, num_layers=2),
    }
    optimizers = {name: build_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3), m) for name, m in models.items()}
    batch = torch.randint(2, VOCAB, (12, 65))
    for name, model in models.items():  # warm-up
        trainer_step(model, optimizers[name], batch)
    seconds = dict.fromkeys(models, 0.0)
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer_step(model, optimizers[name], batch)
            seconds[name] += time.perf_counter() - start
    total_steps = args.rounds * args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {total_steps} iterations each")
    for name, model in models.items():
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:18s} {count:>9,} parameters  {total_steps / seconds[name]:7.2f} it/s")
    print(f"gpt / lstm speed ratio: {seconds['shakespeare_lstm'] / seconds['shakespeare_gpt']:.2f}")


if __name__ == "__main__":
    main()
