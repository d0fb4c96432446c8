"""Serving throughput: seqlab-serve answering concurrent clients over loopback, against a Python user
calling ONNX Runtime directly on the same batches in one process.

    python scripts/bench/serve_throughput.py [--data-dir ../shared/data] [--clients 8] [--requests 320]
        [--texts-per-request 8] [--rounds 3]

The bundle is an IMDb-sized classifier (experiment=imdb_lstm's bidirectional LSTM, 128 wide, mean
pooling, reviews cut at 400 tokens; random weights: throughput does not depend on them), written by
the functions seqlab-export calls. Texts are IMDb test reviews when `--data-dir` holds aclImdb, else
generated reviews joined to IMDb's length (about 230 words).

Each round runs both sides on the same requests, alternating which goes first:
- serve: `seqlab-serve bundle=<dir>` in a subprocess; `--clients` threads, each with its own
  keep-alive connection, POST the requests to /predict as fast as they are answered.
- raw: one process tokenises each request with the bundle's tokenizer.json (Hugging Face
  `tokenizers`), pads it and calls `session.run`, request after request; `session.run` alone on the
  pre-tokenised batches is timed too.
Both sessions have ONNX Runtime's default options, as seqlab-serve creates its session (intra-op
threads: one per physical core). The headline is serve ÷ raw texts/s (medians over rounds); CPU time
is the server's (serve, its clients left out) and this process's (raw).
"""

import argparse
import functools
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from harness import SHARED_DATA, median, report

# experiment=imdb_lstm's model and token limit.
MODEL = {"cell": "lstm", "embed_dim": 128, "hidden_dim": 128, "bidirectional": True, "pooling": "mean", "dropout": 0.3}
MAX_LENGTH = 400
LABELS = ["neg", "pos"]


@dataclass
class Side:
    texts_per_s: float
    cpu_s: float  # CPU seconds of the side's process(es) for the round
    latencies_s: list[float]  # one per request


def imdb_or_generated_texts(data_dir: Path, count: int) -> tuple[list[str], list[str], str]:
    """`count` texts to send, texts to fit the tokenizer on, and where they came from."""

    def read(folder: Path, count: int) -> list[str]:
        return [path.read_text(encoding="utf-8").replace("<br />", " ") for path in sorted(folder.glob("*.txt"))[:count]]

    root = data_dir / "aclImdb"
    if (root / "test" / "pos").is_dir():
        test = [text for pair in zip(read(root / "test" / "neg", count // 2 + 1), read(root / "test" / "pos", count // 2 + 1)) for text in pair]
        train = read(root / "train" / "neg", 2000) + read(root / "train" / "pos", 2000)
        return test[:count], train, f"IMDb test reviews ({root})"
    from seqlab.data.synthetic import generate_reviews

    pieces = generate_reviews(13 * (count + 1000), seed=3).texts  # 13 generated reviews are about one IMDb review
    joined = [" ".join(pieces[i : i + 13]) for i in range(0, len(pieces), 13)]
    return joined[:count], joined[count:], "generated reviews, 13 joined per text (no aclImdb under --data-dir)"


def write_bundle(bundle_dir: Path, fit_texts: list[str]) -> None:
    """An ONNX bundle of an untrained imdb_lstm-sized classifier, as seqlab-export writes it."""
    import torch

    from seqlab.data.labels import write_label_ids
    from seqlab.data.tokenizers import WordTokenizer
    from seqlab.deploy import bundle
    from seqlab.deploy.onnx_export import export_onnx
    from seqlab.models.rnn import RNNClassifier
    from seqlab.runs.trained import CLASSIFICATION
    from seqlab.tasks.classification import SequenceClassificationTask

    torch.manual_seed(0)
    tokenizer = WordTokenizer(min_freq=2)
    tokenizer.fit(fit_texts)
    dims = {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id, "num_classes": len(LABELS)}
    task = SequenceClassificationTask(model=functools.partial(RNNClassifier, **MODEL), dims=dims, optimizer=None).eval()
    with bundle.bundle_writer(bundle_dir, overwrite=False) as staging:
        bundle.write_bundle_tokenizer(staging, tokenizer, MAX_LENGTH)
        write_label_ids(staging / bundle.LABELS, LABELS)
        check = export_onnx(task, staging / bundle.MODEL_FILES[bundle.ONNX], tokenizer.vocab_size, tokenizer.pad_id, MAX_LENGTH)
        bundle.write_manifest(staging, {"format": bundle.ONNX, "kind": CLASSIFICATION, "max_length": MAX_LENGTH, "onnx_check": check})


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bundle_dir: Path, workdir: Path, overrides: list[str]) -> tuple[subprocess.Popen, str]:
    """seqlab-serve with its default settings (access log included) plus `overrides`, once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "seqlab.cli.serve", f"bundle={bundle_dir}", f"port={port}", *overrides, f"hydra.run.dir={workdir / 'serve'}"]
    log_path = workdir / "serve.log"  # a file, not a pipe: a pipe nobody reads would stall the server once full
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            sys.exit(f"seqlab-serve exited before answering:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            sys.exit("seqlab-serve did not answer /health within 180 s")
        time.sleep(0.3)


def run_serve(url: str, server_pid: int, requests: list[list[str]], clients: int) -> Side:
    """Send every request once from `clients` threads, each on its own keep-alive connection."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(requests)):
        todo.put(index)
    latencies = [0.0] * len(requests)
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                start = time.perf_counter()
                reply = http.post("/predict", json={"texts": requests[index]})
                latencies[index] = time.perf_counter() - start
                if reply.status_code != 200 or len(reply.json()["predictions"]) != len(requests[index]):
                    failures.append(f"request {index}: {reply.status_code} {reply.text[:200]}")

    workers = [threading.Thread(target=client) for _ in range(clients)]
    cpu, wall = process_cpu_s(server_pid), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - wall, process_cpu_s(server_pid) - cpu
    if failures:
        sys.exit("seqlab-serve failed requests: " + "; ".join(failures[:3]))
    return Side(sum(map(len, requests)) / wall, cpu, latencies)


class RawOnnxRuntime:
    """What a Python user writes to call ONNX Runtime on the bundle: tokenizer.json, pad, session.run."""

    def __init__(self, bundle_dir: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(bundle_dir / "tokenizer.json"))  # pads and truncates as seqlab does
        self.session = onnxruntime.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])

    def tokenise(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        lengths = np.array([sum(encoding.attention_mask) for encoding in encodings], dtype=np.int64)
        return {"input_ids": input_ids, "lengths": lengths}

    def probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["probs"], inputs)[0]


def run_raw(raw: RawOnnxRuntime, requests: list[list[str]], batches: list[dict[str, np.ndarray]] | None = None) -> Side:
    """Each request in turn: tokenise and run, or (given `batches`) only run the pre-tokenised batches."""
    latencies = []
    cpu, wall = time.process_time(), time.perf_counter()
    for index, texts in enumerate(requests):
        start = time.perf_counter()
        raw.probabilities(batches[index] if batches else raw.tokenise(texts))
        latencies.append(time.perf_counter() - start)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Side(sum(map(len, requests)) / wall, cpu, latencies)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA, help="holds aclImdb/ (else generated reviews)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=320, help="requests per side per round, all clients together")
    parser.add_argument("--texts-per-request", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-override", action="append", default=[], help="a seqlab-serve setting, e.g. log_level=warning (repeatable)")
    args = parser.parse_args()

    size = args.requests * args.texts_per_request
    texts, fit_texts, source = imdb_or_generated_texts(args.data_dir, size)
    requests = [texts[i : i + args.texts_per_request] for i in range(0, size, args.texts_per_request)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_bundle(workdir / "bundle", fit_texts)
        raw = RawOnnxRuntime(workdir / "bundle")
        batches = [raw.tokenise(texts) for texts in requests]
        tokens = sum(int(batch["lengths"].sum()) for batch in batches)
        server, url = start_server(workdir / "bundle", workdir, args.serve_override)
        try:
            run_serve(url, server.pid, requests[: args.clients * 2], args.clients)  # warm-up: connections, first calls
            run_raw(raw, requests[: args.clients * 2])
            serve_rounds, raw_rounds, session_rounds = [], [], []
            for round_index in range(args.rounds):
                order = ("serve", "raw") if round_index % 2 == 0 else ("raw", "serve")
                for side in order:
                    if side == "serve":
                        serve_rounds.append(run_serve(url, server.pid, requests, args.clients))
                    else:
                        raw_rounds.append(run_raw(raw, requests))
                        session_rounds.append(run_raw(raw, requests, batches))
        finally:
            server.terminate()
            server.wait(timeout=30)

    ratios = [s.texts_per_s / r.texts_per_s for s, r in zip(serve_rounds, raw_rounds)]
    cpu_ratios = [r.cpu_s / s.cpu_s for s, r in zip(serve_rounds, raw_rounds)]  # texts per CPU-s, serve ÷ raw
    figures = {
        "serve_texts_per_s": median([s.texts_per_s for s in serve_rounds]),
        "raw_texts_per_s": median([r.texts_per_s for r in raw_rounds]),
        "session_run_texts_per_s": median([r.texts_per_s for r in session_rounds]),
        "serve_raw_ratio": median(ratios),
        "serve_raw_cpu_ratio": median(cpu_ratios),
        "serve_p50_ms": 1000 * median([percentile(s.latencies_s, 50) for s in serve_rounds]),
        "serve_p99_ms": 1000 * median([percentile(s.latencies_s, 99) for s in serve_rounds]),
        "raw_p50_ms": 1000 * median([percentile(r.latencies_s, 50) for r in raw_rounds]),
        "raw_p99_ms": 1000 * median([percentile(r.latencies_s, 99) for r in raw_rounds]),
    }

    def per_text_ms(sides: list[Side]) -> float:
        return 1000 * median([side.cpu_s / size for side in sides])

    rows = [
        [
            "seqlab-serve",
            figures["serve_texts_per_s"],
            spread([s.texts_per_s for s in serve_rounds]),
            per_text_ms(serve_rounds),
            figures["serve_p50_ms"],
            figures["serve_p99_ms"],
        ],
        [
            "raw: tokenise + session.run",
            figures["raw_texts_per_s"],
            spread([r.texts_per_s for r in raw_rounds]),
            per_text_ms(raw_rounds),
            figures["raw_p50_ms"],
            figures["raw_p99_ms"],
        ],
        ["raw: session.run only", figures["session_run_texts_per_s"], spread([r.texts_per_s for r in session_rounds]), per_text_ms(session_rounds), "", ""],
    ]
    notes = [
        f"texts: {source}; {args.requests} requests of {args.texts_per_request} texts ({tokens / size:.0f} tokens per text after the 400-token cut)",
        f"serve: {args.clients} client threads over loopback; raw: one request after the other in one process; "
        f"ONNX Runtime's default threads on both sides; {args.rounds} rounds, order alternating",
        f"serve ÷ raw texts/s per round: {', '.join(f'{r:.3f}' for r in ratios)}; texts per CPU-s, serve ÷ raw: {', '.join(f'{r:.3f}' for r in cpu_ratios)}",
    ]
    # CPU ms per text: the server process's CPU for serve (its clients excluded), this process's for raw.
    report(
        "seqlab-serve against ONNX Runtime called directly",
        ["side", "texts/s (median)", "spread", "CPU ms per text", "p50 ms per request", "p99 ms per request"],
        rows,
        figures,
        notes,
    )


if __name__ == "__main__":
    main()
