"""Prediction throughput of a classifier in PyTorch (seqlab-predict ckpt_path=) and in ONNX Runtime
(seqlab-predict bundle=), measured side by side on the same texts, batch sizes and thread count.

    python scripts/bench/predict_throughput.py [--model lstm|gru|transformer] [--texts 4000] [--repeats 3]

Weights are random: throughput does not depend on them. Prints texts/s per backend and batch size,
and the ONNX / PyTorch ratio.
"""

import argparse
import functools
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

from seqlab.data.synthetic import generate_reviews
from seqlab.data.tokenizers import WordTokenizer
from seqlab.deploy.onnx_export import export_onnx
from seqlab.deploy.predictors import OnnxPredictor, TorchPredictor
from seqlab.models.rnn import RNNClassifier
from seqlab.models.transformer import TransformerClassifier
from seqlab.tasks.classification import SequenceClassificationTask

MODELS = {
    "lstm": functools.partial(RNNClassifier, cell="lstm", embed_dim=64, hidden_dim=128),
    "gru": functools.partial(RNNClassifier, cell="gru", embed_dim=64, hidden_dim=128),
    "transformer": functools.partial(TransformerClassifier, hidden_dim=128, num_heads=4, num_layers=2, max_len=128),
}


def texts_per_second(predictor, texts: list[str], batch_size: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predictor.predict(texts[i : i + batch_size])
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="lstm")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both backends")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    texts = generate_reviews(args.texts, seed=5).texts
    tokenizer = WordTokenizer()
    tokenizer.fit(texts)
    dims = {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id, "num_classes": 2}
    task = SequenceClassificationTask(model=MODELS[args.model], dims=dims, optimizer=None).eval()
    labels, max_length = ["negative", "positive"], 128

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        check = export_onnx(task, path, tokenizer.vocab_size, tokenizer.pad_id, max_length)
        torch_predictor = TorchPredictor(task, tokenizer, labels, max_length)
        onnx_predictor = OnnxPredictor(str(path), tokenizer, labels, max_length)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        onnx_predictor.session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        print(f"model={args.model} texts={args.texts} threads={args.threads} onnx max abs diff={check['max_abs_diff']:.2g}")
        print(f"{'batch':>6} {'pytorch texts/s':>16} {'onnx texts/s':>13} {'onnx/pytorch':>13}")
        for batch_size in (1, 32, 256):
            subset = texts if batch_size > 1 else texts[: max(200, args.texts // 20)]
            pytorch = texts_per_second(torch_predictor, subset, batch_size, args.repeats)
            onnx = texts_per_second(onnx_predictor, subset, batch_size, args.repeats)
            print(f"{batch_size:>6} {pytorch:>16.0f} {onnx:>13.0f} {onnx / pytorch:>13.2f}")


if __name__ == "__main__":
    main()
