"""Kim's CNN classifier (model=cnn) and the max-norm constraint (callbacks.max_norm): what a text's
logits do not depend on, and the CNN through seqlab-train, -export (ONNX), -predict and -serve."""

import functools
import json

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from conftest import FAST, read_metrics, running_service
from seqlab.callbacks import MaxNorm
from seqlab.cli.export import export
from seqlab.cli.predict import predict
from seqlab.cli.train import train
from seqlab.errors import SeqlabError
from seqlab.models.cnn import TextCNNClassifier

VOCAB, PAD = 40, 0


def small_cnn(**options) -> TextCNNClassifier:
    torch.manual_seed(0)
    return TextCNNClassifier(VOCAB, 3, pad_id=PAD, embed_dim=8, hidden_dim=6, **options).eval()


def padded(texts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(texts), width), PAD)
    for row, text in enumerate(texts):
        ids[row, : len(text)] = torch.tensor(text)
    return ids, torch.tensor([len(text) for text in texts])


TEXTS = [[5, 9, 3, 22, 7, 1, 14, 30], [11, 4], [8], [2, 6, 19, 33, 12]]


def test_cnn_gives_one_row_of_class_logits_per_text():
    model = small_cnn(filter_widths=[2, 3, 4, 5])
    assert model.head.in_features == 4 * 6
    assert model(*padded(TEXTS, 8)).shape == (4, 3)


def test_cnn_padding_never_changes_logits():
    """The same texts padded to their batch's longest or far beyond give the same logits, whatever the pad id's embedding."""
    model = small_cnn()
    with torch.no_grad():
        model.embedding.weight[PAD] = 5.0  # a pad embedding that training moved away from zero
    tight = model(*padded(TEXTS, 8))
    loose = model(*padded(TEXTS, 40))
    torch.testing.assert_close(loose, tight, rtol=0, atol=1e-6)


@pytest.mark.parametrize("length", [1, 2, 4])
def test_cnn_classifies_a_text_shorter_than_its_widest_filter(length):
    """A batch of one text shorter than the 5-wide filter (even one token) gets finite logits, the same as inside a longer batch."""
    model = small_cnn()
    text = TEXTS[0][:length]
    alone = model(*padded([text], length))
    in_batch = model(*padded([text, TEXTS[0]], 8))[:1]
    assert torch.isfinite(alone).all()
    torch.testing.assert_close(alone, in_batch, rtol=0, atol=1e-6)


def test_cnn_refuses_an_empty_list_of_filter_widths():
    with pytest.raises(ValueError, match="filter_widths"):
        TextCNNClassifier(VOCAB, 2, filter_widths=[])


class LinearRegression(pl.LightningModule):
    """A head that plain SGD pushes far past any small norm: targets 100 times its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.other = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.head(x) - y) ** 2).mean() + ((self.other(x) - y) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit_linear(callbacks: list[pl.Callback]) -> LinearRegression:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 100 * x[:, :3]), batch_size=16)
    module = LinearRegression()
    trainer = pl.Trainer(max_epochs=3, callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return module


def test_max_norm_caps_the_rows_of_the_matching_weights_only():
    module = fit_linear([MaxNorm(parameters=["head.weight"], max_norm=0.5)])
    assert module.head.weight.norm(dim=1).max() <= 0.5 + 1e-6
    assert module.other.weight.norm(dim=1).max() > 1.0  # unmatched: left to the optimiser


def test_max_norm_naming_no_parameter_is_one_clear_error():
    with pytest.raises(SeqlabError, match=r"callbacks.max_norm.parameters \['net.head.weight'\] match none"):
        fit_linear([MaxNorm(parameters="net.head.weight", max_norm=3.0)])


def test_cnn_exports_to_onnx_that_agrees_with_pytorch_on_any_batch_shape(tmp_path):
    """The export's own check runs ONNX Runtime on batches of 1 x 1 up to 16 x 32 tokens, so one-token texts and dynamic axes are covered."""
    pytest.importorskip("onnxruntime")
    from seqlab.deploy.onnx_export import export_onnx
    from seqlab.tasks.classification import SequenceClassificationTask

    model = functools.partial(TextCNNClassifier, embed_dim=8, hidden_dim=6)
    task = SequenceClassificationTask(model, {"vocab_size": VOCAB, "pad_id": PAD, "num_classes": 2}, functools.partial(torch.optim.AdamW))
    check = export_onnx(task, tmp_path / "model.onnx", VOCAB, PAD, 32)
    assert check["max_abs_diff"] <= check["tolerance"] and [1, 1] in check["batch_shapes"]


@pytest.mark.slow
def test_cnn_goes_through_train_export_predict_and_serve(compose_config, in_hydra, tmp_path):
    """seqlab-train with the max-norm callback, seqlab-export to ONNX, seqlab-predict from the checkpoint and the bundle, seqlab-serve."""
    httpx = pytest.importorskip("httpx")
    max_norm = "+callbacks.max_norm={_target_:seqlab.callbacks.MaxNorm,parameters:[net.head.weight],max_norm:0.3}"
    in_hydra(train, compose_config([*FAST, "trainer.max_epochs=1", "model=cnn", "data.max_length=48", max_norm], run_dir=tmp_path / "run"))
    ckpt = read_metrics(tmp_path / "run")["ckpt_path"]
    head = torch.load(ckpt, weights_only=True)["state_dict"]["net.head.weight"]
    assert head.norm(dim=1).max() <= 0.3 + 1e-6

    bundle = tmp_path / "bundle"
    in_hydra(export, compose_config([f"ckpt_path={ckpt}", f"output_dir={bundle}"], config_name="export", run_dir=tmp_path / "export"))
    texts = ["the film was great", "", "dull", " and ".join(["a very dull plot"] * 30), "not good but fun"]
    (tmp_path / "in.txt").write_text("".join(text + "\n" for text in texts))

    def predictions(source: str) -> list[dict]:
        output = tmp_path / f"{source.partition('=')[0]}.jsonl"
        in_hydra(predict, compose_config([source, f"input={tmp_path / 'in.txt'}", f"output={output}"], config_name="predict", run_dir=tmp_path / "predict"))
        return [json.loads(line) for line in output.read_text().splitlines()]

    from_checkpoint, from_onnx = predictions(f"ckpt_path={ckpt}"), predictions(f"bundle={bundle}")
    assert [p["label"] for p in from_checkpoint] == [p["label"] for p in from_onnx] and len(from_onnx) == len(texts)
    for a, b in zip(from_checkpoint, from_onnx):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-4)

    with running_service(f"bundle={bundle}", cwd=tmp_path) as url:
        answer = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=30)
    assert answer.status_code == 200
    for served, predicted in zip(answer.json()["predictions"], from_onnx):
        assert served["probs"] == pytest.approx(predicted["probs"], abs=1e-6)
