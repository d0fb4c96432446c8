"""ONNX export of translation models: an encoder graph and a decoder-step graph that seqlab's own greedy
and beam search decode with, translating token for token as PyTorch does; bundles that seqlab-predict
and seqlab-serve translate with as from the checkpoint."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import read_metrics, run_cli, running_service
from parallel_fixtures import parallel_rows, write_parallel_tsv
from seqlab.errors import SeqlabError
from test_seq2seq_task import SOURCES, TINY, translations

pytest.importorskip("onnxruntime")

from seqlab.deploy import translation_onnx  # noqa: E402  (needs the deploy extra)
from seqlab.deploy.translation_onnx import OnnxEncoderDecoder, export_translation_onnx  # noqa: E402
from seqlab.models.rnn_seq2seq import RNNSeq2Seq  # noqa: E402
from seqlab.models.transformer_seq2seq import TransformerSeq2Seq  # noqa: E402

VOCAB, PAD, BOS, EOS = 40, 0, 38, 39


def fresh_task(kind: str) -> SimpleNamespace:
    """What the export reads of a Seq2SeqTask, around a freshly initialised tiny model."""
    torch.manual_seed(0)
    if kind == "transformer":
        net = TransformerSeq2Seq(VOCAB, PAD, BOS, EOS, hidden_dim=16, num_heads=2, num_layers=1, num_decoder_layers=2, max_len=64)
    else:
        net = RNNSeq2Seq(VOCAB, PAD, BOS, EOS, cell=kind, embed_dim=8, hidden_dim=16, num_layers=2)
    return SimpleNamespace(net=net.eval(), beam_sizes={"test": 3}, max_decode_length=20, length_penalty=1.0)


def sources() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([7, 3, 1, 5])
    ids = torch.randint(1, BOS, (4, 7), generator=torch.Generator().manual_seed(3))
    ids[torch.arange(7)[None, :] >= lengths[:, None]] = PAD
    return ids, lengths


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "gru", "lstm"])
def test_onnx_graphs_translate_as_pytorch_token_for_token(kind: str, tmp_path: Path) -> None:
    task = fresh_task(kind)
    check = export_translation_onnx(task, tmp_path, BOS, PAD, 16)
    assert check["max_abs_diff"] <= check["tolerance"] and check["same_translations"] == ["greedy", "beam 3"]
    onnx_net = OnnxEncoderDecoder(tmp_path, BOS, EOS, PAD)
    ids, lengths = sources()
    for beam_size in (1, 3):  # sources of another batch size and length than the export's samples and the check's
        expected = task.net.generate(ids, lengths, beam_size=beam_size, max_len=15)
        assert torch.equal(onnx_net.generate(ids, lengths, beam_size=beam_size, max_len=15), expected)


@pytest.mark.slow
def test_an_export_that_disagrees_with_pytorch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translation_onnx, "TOLERANCE", -1.0)
    with pytest.raises(SeqlabError, match=r"^the exported ONNX graphs disagree with PyTorch .*; no bundle was written$"):
        export_translation_onnx(fresh_task("gru"), tmp_path, BOS, PAD, 8)


def train(tmp_path: Path, overrides: list[str]) -> str:
    train_file = write_parallel_tsv(tmp_path / "pairs.tsv", parallel_rows(120))
    result = run_cli("seqlab-train", *overrides, f"data.train_file={train_file}", f"paths.data_dir={tmp_path}", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_metrics(tmp_path / "run")["ckpt_path"]


def predict_from_checkpoint_and_onnx_bundle(ckpt_path: str, tmp_path: Path) -> tuple[list[str], list[str], dict]:
    (tmp_path / "sources.txt").write_text("\n".join(SOURCES) + "\n")
    from_checkpoint = run_cli("seqlab-predict", f"ckpt_path={ckpt_path}", "input=sources.txt", "output=from_ckpt.jsonl", cwd=tmp_path)
    assert from_checkpoint.returncode == 0, from_checkpoint.stderr[-3000:]
    exported = run_cli("seqlab-export", f"ckpt_path={ckpt_path}", "format=onnx", "output_dir=bundle", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    from_bundle = run_cli("seqlab-predict", "bundle=bundle", "input=sources.txt", "output=from_bundle.jsonl", cwd=tmp_path)
    assert from_bundle.returncode == 0, from_bundle.stderr[-3000:]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    return translations(tmp_path / "from_ckpt.jsonl"), translations(tmp_path / "from_bundle.jsonl"), manifest


@pytest.mark.slow
def test_a_transformer_onnx_bundle_predicts_and_serves_what_the_checkpoint_predicts(tmp_path: Path) -> None:
    expected, from_bundle, manifest = predict_from_checkpoint_and_onnx_bundle(train(tmp_path, TINY), tmp_path)
    assert len(expected) == 3 and from_bundle == expected
    assert manifest["format"] == "onnx" and manifest["kind"] == "translation"
    assert {"encoder.onnx", "decoder_step.onnx", "tokenizer.json"} <= set(manifest["files"]) and "model.onnx" not in manifest["files"]
    check = manifest["onnx_check"]
    assert check["max_abs_diff"] <= check["tolerance"] and check["same_translations"] == ["greedy", "beam 3"]
    with running_service("bundle=bundle", cwd=tmp_path) as url:
        import httpx

        answer = httpx.post(f"{url}/predict", json={"texts": SOURCES}, timeout=30).json()
    assert answer == {"translations": expected}


@pytest.mark.slow
def test_an_lstm_with_a_tokenizer_per_side_exports_to_onnx_and_predicts_what_the_checkpoint_predicts(tmp_path: Path) -> None:
    separate = ["data.separate_tokenizers=true", "data/tokenizer@data.target_tokenizer=word"]
    rnn = [override for override in TINY if not override.startswith(("model=", "model.num_heads"))] + [
        "model=rnn_seq2seq",
        "model.cell=lstm",
        "model.embed_dim=16",
    ]
    expected, from_bundle, manifest = predict_from_checkpoint_and_onnx_bundle(train(tmp_path, [*rnn, *separate]), tmp_path)
    assert len(expected) == 3 and from_bundle == expected
    assert {"encoder.onnx", "decoder_step.onnx", "tokenizer.json", "target_tokenizer.json"} <= set(manifest["files"])
