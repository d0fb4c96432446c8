"""Fine-tuning the project's Transformers: partial loading by name, frozen weights, layer-wise rates,
LoRA (merged = unmerged), and pretrain -> fine-tune end to end on generated text."""

import collections
import functools
import itertools
import json
import os
import random

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from conftest import read_metrics, train_in_process
from seqlab.cli.train import train
from seqlab.errors import SeqlabError
from seqlab.models.gpt import GPT, GPTClassifier
from seqlab.models.lora import LoRALinear, add_lora, merge_lora
from seqlab.models.transformer import TransformerClassifier
from seqlab.tasks.finetuning import REPORT_FILE, FineTuningClassificationTask, FreezeBackbone, layerwise_scales, load_matching

TINY_GPT = {"block_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "dropout": 0.0}


class Holder(nn.Module):
    """Puts a model under `net`, as tasks hold it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


def test_partial_loading_reports_loaded_missing_unexpected_and_mismatched_keys():
    torch.manual_seed(0)
    source = Holder(GPT(vocab_size=30, **TINY_GPT)).state_dict()
    source["net.extra.weight"] = torch.ones(3)
    target = Holder(GPTClassifier(vocab_size=30, num_classes=2, **{**TINY_GPT, "block_size": 32}))
    head_before = target.net.head.weight.clone()

    report = load_matching(target, source, "net.", "net.backbone.", include=["*"], exclude=["transformer.h.1.*"])

    layer1 = {key.removeprefix("net.") for key in source if key.startswith("net.transformer.h.1.")}
    layer0 = {key.removeprefix("net.") for key in source if key.startswith("net.transformer.h.0.")}
    assert set(report.loaded) == layer0 | {"transformer.wte.weight", "lm_head.weight", "transformer.ln_f.weight"}
    assert set(report.excluded) == layer1
    assert report.unexpected == ["extra.weight"]
    assert report.shape_mismatched == {"transformer.wpe.weight": {"checkpoint": [16, 16], "model": [32, 16]}}
    assert set(report.missing) == layer1  # excluded from loading, so the model keeps its own
    torch.testing.assert_close(target.net.backbone.transformer.h[0].attn.c_attn.weight, source["net.transformer.h.0.attn.c_attn.weight"], rtol=0, atol=0)
    assert not torch.equal(target.net.backbone.transformer.h[1].attn.c_attn.weight, source["net.transformer.h.1.attn.c_attn.weight"])
    assert torch.equal(target.net.head.weight, head_before)  # outside the target prefix: untouched


def _batches(vocab_size: int, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(1, vocab_size, (8, 12), generator=generator),
            "lengths": torch.randint(4, 13, (8,), generator=generator),
            "labels": torch.randint(0, 2, (8,), generator=generator),
        }
        for _ in range(count)
    ]


def _task(**kwargs) -> FineTuningClassificationTask:
    torch.manual_seed(0)
    return FineTuningClassificationTask(
        model=functools.partial(GPTClassifier, **TINY_GPT),
        dims={"vocab_size": 30, "num_classes": 2},
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1),
        **kwargs,
    )


def _fit(task: pl.LightningModule, epochs: int, callbacks: list[pl.Callback] = ()) -> None:
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, train_dataloaders=DataLoader(_batches(30, 3), batch_size=None))


def _snapshot(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters() if name.startswith(prefix)}


def test_frozen_weights_stay_bit_identical_while_the_head_trains():
    task = _task(freeze=["backbone.*"])
    backbone, head = _snapshot(task.net, "backbone."), _snapshot(task.net, "head.")
    _fit(task, epochs=2)
    after = _snapshot(task.net, "")
    assert all(torch.equal(after[name], value) for name, value in backbone.items())
    assert not any(torch.equal(after[name], value) for name, value in head.items())


class SnapshotAtEpochEnd(pl.Callback):
    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append(_snapshot(pl_module.net, ""))


def test_backbone_frozen_for_one_epoch_then_trains_at_its_lower_rate():
    task = _task(backbone_lr_scale=0.1)
    start = _snapshot(task.net, "")
    snapshots = SnapshotAtEpochEnd()
    _fit(task, epochs=2, callbacks=[FreezeBackbone(epochs=1), snapshots])
    first, second = snapshots.snapshots
    backbone = [name for name in start if name.startswith("backbone.")]
    assert all(torch.equal(first[name], start[name]) for name in backbone)
    assert not torch.equal(first["head.weight"], start["head.weight"])
    assert not any(torch.equal(second[name], first[name]) for name in backbone if "wpe" not in name)
    rates = {group["lr_scale"] for group in task.trainer.optimizers[0].param_groups}
    assert rates == {1.0, 0.1}


def test_layerwise_decay_lowers_rates_towards_the_embeddings():
    names = [name for name, _ in GPTClassifier(vocab_size=30, num_classes=2, **TINY_GPT).named_parameters() if not name.startswith("head.")]
    scales = layerwise_scales(names, 0.5, r"\.(\d+)\.", ["*wte*", "*wpe*"])
    assert scales["backbone.transformer.h.1.attn.c_attn.weight"] == 0.5
    assert scales["backbone.transformer.h.0.attn.c_attn.weight"] == 0.25
    assert scales["backbone.transformer.wte.weight"] == 0.125
    assert scales["backbone.transformer.ln_f.weight"] == 1.0
    task = _task(layer_decay=0.5, backbone_lr_scale=0.2)
    assert task.lr_scale("head.weight") == 1.0
    assert task.lr_scale("backbone.transformer.h.0.mlp.c_fc.weight") == pytest.approx(0.05)


@pytest.mark.parametrize("architecture", ["gpt", "transformer"])
def test_lora_merged_model_gives_the_unmerged_outputs(architecture):
    torch.manual_seed(0)
    if architecture == "gpt":
        model = GPTClassifier(vocab_size=30, num_classes=3, **TINY_GPT)
        targets = ["*.c_attn", "*.c_proj", "*.c_fc"]
    else:
        model = TransformerClassifier(vocab_size=30, num_classes=3, hidden_dim=16, num_heads=2, num_layers=2, max_len=16)
        targets = ["*.qkv", "*.proj", "*.fc"]
    plain_keys = set(model.state_dict())
    adapted = add_lora(model, targets, rank=4, alpha=8, dropout=0.1)
    assert len(adapted) == 2 * (4 if architecture == "gpt" else 4)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            nn.init.normal_(module.lora_B, std=0.5)  # trained adapters are not zero
    model.eval()
    ids, lengths = torch.randint(1, 30, (4, 10)), torch.tensor([10, 7, 3, 1])
    with torch.no_grad():
        unmerged = model(ids, lengths)
        merge_lora(model)
        merged = model(ids, lengths)
    assert not any(isinstance(module, LoRALinear) for module in model.modules())
    assert set(model.state_dict()) == plain_keys  # exports as the plain architecture
    assert (merged - unmerged).abs().max().item() <= 1e-5


def test_with_lora_only_adapters_and_head_train_and_the_count_is_logged(caplog):
    with caplog.at_level("INFO"):
        task = _task(lora={"rank": 4, "alpha": 8, "targets": ["backbone.*.c_attn"]})
    trainable = {name for name, p in task.net.named_parameters() if p.requires_grad}
    assert trainable == {f"backbone.transformer.h.{i}.attn.c_attn.lora_{m}" for i in (0, 1) for m in "AB"} | {"head.weight", "head.bias"}
    count = sum(task.net.get_parameter(name).numel() for name in trainable)
    assert f"trainable parameters: {count:,} of" in caplog.text
    base = task.net.backbone.transformer.h[0].attn.c_attn.weight.detach().clone()
    _fit(task, epochs=1)
    assert torch.equal(task.net.backbone.transformer.h[0].attn.c_attn.weight, base)
    task.merge_adapters()
    assert not torch.equal(task.net.backbone.transformer.h[0].attn.c_attn.weight, base)


def test_lora_targets_that_match_nothing_name_the_linear_layers():
    with pytest.raises(SeqlabError, match="match no linear layer.*c_attn"):
        add_lora(GPTClassifier(vocab_size=30, num_classes=2, **TINY_GPT), ["*.query"])


# -- pretrain, then fine-tune, end to end -------------------------------------------------------

POSITIVE = "good great fun moving clever".split()
NEGATIVE = "bad dull awful boring flat".split()
FILLER = "the film is a movie plot and acting was very quite".split()


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def _write_data(root, seed: int = 0) -> None:
    rng = random.Random(seed)
    (root / "sst2").mkdir(parents=True)
    for name, size in (("train", 400), ("dev", 80), ("test", 80)):
        lines = [f"{label} {_sentence(rng, label)}" for label in (rng.randint(0, 1) for _ in range(size))]
        (root / "sst2" / f"stsa.binary.{name}").write_text("\n".join(lines) + "\n")
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").write_text("\n".join(_sentence(rng, rng.randint(0, 1)) for _ in range(300)))


SMALL_MODEL = ["model.num_layers=1", "model.num_heads=2", "model.hidden_dim=16", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny pretrain_gpt run on generated text: its data dir and best checkpoint."""

    root = tmp_path_factory.mktemp("pretrain")
    _write_data(root / "data")
    run_dir = root / "run"
    overrides = [
        "experiment=pretrain_gpt",
        f"paths.data_dir={root / 'data'}",
        *SMALL_MODEL,
        "data.tokenizer.vocab_size=300",
        "data.block_size=16",
        "data.batch_size=8",
        "data.train_samples_per_epoch=160",
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        "task.sample_length=4",
        "scheduler.warmup_steps=5",
    ]
    train_in_process(overrides, run_dir)
    return root / "data", read_metrics(run_dir)["ckpt_path"], run_dir


def _finetune_overrides(data_dir, ckpt: str, *extra: str) -> list[str]:
    return [
        "experiment=finetune_gpt",
        f"finetune.from_ckpt={ckpt}",
        f"paths.data_dir={data_dir}",
        *SMALL_MODEL,
        "model.block_size=16",
        "data.max_length=16",
        "trainer.max_epochs=2",
        "scheduler.warmup_steps=5",
        "optimizer.lr=3e-3",
        *extra,
    ]


def test_pretrained_gpt_fine_tunes_as_a_classifier(pretrained, compose_config, in_hydra, tmp_path):
    data_dir, ckpt, pretrain_dir = pretrained
    in_hydra(train, compose_config(_finetune_overrides(data_dir, ckpt, "callbacks.freeze_backbone.epochs=1")))
    run_dir = tmp_path / "run"
    report = json.loads((run_dir / REPORT_FILE).read_text())
    backbone_keys = {
        key.removeprefix("net.backbone.")
        for key in torch.load(read_metrics(run_dir)["ckpt_path"], weights_only=True)["state_dict"]
        if key.startswith("net.backbone.")
    }
    assert set(report["loaded"]) == backbone_keys and report["missing"] == [] and report["shape_mismatched"] == {}
    assert report["from_ckpt"] == ckpt
    # The classification data were tokenised with the pretraining run's tokenizer.
    assert json.loads((run_dir / "tokenizer.json").read_text()) == json.loads((pretrain_dir / "tokenizer.json").read_text())
    assert read_metrics(run_dir)["test/acc"] >= 0.7


def test_lora_fine_tune_trains_only_adapters_and_its_checkpoint_evaluates(pretrained, compose_config, in_hydra, tmp_path):
    from seqlab.cli.eval import evaluate

    data_dir, ckpt, _ = pretrained
    overrides = _finetune_overrides(data_dir, ckpt, "trainer.max_epochs=1").copy()
    overrides[0] = "experiment=finetune_gpt_lora"
    in_hydra(train, compose_config(overrides))
    metrics = read_metrics(tmp_path / "run")
    state = torch.load(metrics["ckpt_path"], weights_only=True)["state_dict"]
    pretrained_state = torch.load(ckpt, weights_only=True)["state_dict"]
    # Base weights are the pretrained ones, untouched; the adapters trained.
    assert torch.equal(state["net.backbone.transformer.h.0.attn.c_attn.weight"], pretrained_state["net.transformer.h.0.attn.c_attn.weight"])
    assert state["net.backbone.transformer.h.0.attn.c_attn.lora_B"].abs().sum() > 0
    cfg = compose_config(
        [f"ckpt_path={metrics['ckpt_path']}", f"paths.data_dir={data_dir}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval"
    )
    assert in_hydra(evaluate, cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)

    # Exported, the adapters are merged into a plain GPT classifier, which ONNX Runtime checks against the task.
    from seqlab.cli.export import export
    from seqlab.deploy.bundle import open_bundle

    bundle_dir = tmp_path / "bundle"
    in_hydra(
        export,
        compose_config(
            [f"ckpt_path={metrics['ckpt_path']}", f"output_dir={bundle_dir}", f"paths.data_dir={data_dir}"], config_name="export", run_dir=tmp_path / "export"
        ),
    )
    assert open_bundle(bundle_dir).format == "onnx"


def test_gpt_classifier_safetensors_bundle_predicts_what_its_checkpoint_predicts(pretrained, compose_config, in_hydra, tmp_path):
    """The GPT's token embedding and output layer share one tensor, which the bundle must store once and restore tied."""
    from seqlab.cli.export import export
    from seqlab.cli.predict import predict
    from seqlab.deploy.bundle import open_bundle

    data_dir, ckpt, _ = pretrained
    in_hydra(train, compose_config(_finetune_overrides(data_dir, ckpt, "trainer.max_epochs=1")))
    checkpoint = read_metrics(tmp_path / "run")["ckpt_path"]
    bundle_dir = tmp_path / "bundle"
    export_cfg = compose_config(
        [f"ckpt_path={checkpoint}", "format=safetensors", f"output_dir={bundle_dir}"], config_name="export", run_dir=tmp_path / "export"
    )
    in_hydra(export, export_cfg)
    task = open_bundle(bundle_dir).torch_task()
    assert task.net.backbone.lm_head.weight is task.net.backbone.transformer.wte.weight
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\nthe worst plot in years\nnot bad at all\n")

    def probabilities(source: str) -> list[dict]:
        output = tmp_path / f"{source.split('=')[0]}.jsonl"
        cfg = compose_config([source, f"input={texts}", f"output={output}"], config_name="predict", run_dir=tmp_path / "predict")
        in_hydra(predict, cfg)
        return [json.loads(line)["probs"] for line in output.read_text().splitlines()]

    from_checkpoint, from_bundle = probabilities(f"ckpt_path={checkpoint}"), probabilities(f"bundle={bundle_dir}")
    assert len(from_bundle) == 3
    assert all(abs(a[name] - b[name]) <= 1e-6 for a, b in zip(from_checkpoint, from_bundle) for name in a)


def test_a_checkpoint_is_read_once_to_fine_tune_from_and_once_to_evaluate(pretrained, compose_config, in_hydra, tmp_path, monkeypatch):
    """A checkpoint can be large: seqlab reads the pretraining run's once for its tokenizer and weights,
    and seqlab-eval reads the checkpoint it tests once in all (not again through Lightning)."""
    from seqlab.cli.eval import evaluate

    data_dir, ckpt, _ = pretrained
    reads = collections.Counter()
    load = torch.load

    def counting_load(source, *args, **kwargs):
        # Lightning opens the file itself and passes the open file.
        reads[os.path.realpath(source if isinstance(source, (str, os.PathLike)) else source.path)] += 1
        return load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    in_hydra(train, compose_config(_finetune_overrides(data_dir, ckpt, "trainer.max_epochs=1")))
    assert reads[os.path.realpath(ckpt)] == 1
    fine_tuned = read_metrics(tmp_path / "run")["ckpt_path"]

    reads.clear()
    in_hydra(
        evaluate,
        compose_config([f"ckpt_path={fine_tuned}", f"paths.data_dir={data_dir}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval"),
    )
    assert reads == {os.path.realpath(fine_tuned): 1}


def test_a_checkpoint_naming_freeze_backbone_at_its_old_path_still_reads(pretrained, tmp_path):
    """Runs fine-tuned before FreezeBackbone moved beside the tasks recorded seqlab.finetune.FreezeBackbone."""
    from seqlab.runs import read_run

    _, ckpt, _ = pretrained
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["seqlab"]["config"]["callbacks"]["freeze_backbone"] = {"_target_": "seqlab.finetune.FreezeBackbone", "epochs": 1}
    torch.save(checkpoint, tmp_path / "old.ckpt")
    saved = read_run(str(tmp_path / "old.ckpt"))
    assert saved.config["callbacks"]["freeze_backbone"]["_target_"] == "seqlab.tasks.finetuning.FreezeBackbone"


def test_fine_tuning_with_another_vocabulary_stops_with_a_clear_message(pretrained, compose_config, in_hydra, tmp_path):
    data_dir, ckpt, _ = pretrained
    cfg = compose_config(_finetune_overrides(data_dir, ckpt, "finetune.tokenizer=data"))
    with pytest.raises(SeqlabError, match="vocabulary differs.*WordTokenizer.*BPETokenizer.*finetune.tokenizer=checkpoint"):
        in_hydra(train.__wrapped__, cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fine_tuning_when_no_weight_matches_stops_with_a_clear_message(pretrained, compose_config, in_hydra, tmp_path):
    data_dir, ckpt, _ = pretrained
    cfg = compose_config(_finetune_overrides(data_dir, ckpt, "finetune.source_prefix=model."))
    with pytest.raises(SeqlabError, match="no weights of .* match the model"):
        in_hydra(train.__wrapped__, cfg)
    assert not (tmp_path / "run" / REPORT_FILE).exists()


@pytest.mark.parametrize(
    ("preset", "jobs"),
    [
        ("finetune_gpt_sweep", [{"optimizer.lr": lr, "callbacks.freeze_backbone.epochs": e} for lr in ("0.0003", "0.001") for e in ("0", "1")]),
        ("finetune_gpt_cv", [{"data.fold": str(fold)} for fold in range(5)]),
    ],
)
def test_sweep_presets_launch_one_job_per_setting(compose_config, preset, jobs):
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    cfg = compose_config([f"experiment={preset}", "finetune.from_ckpt=pretrained.ckpt"])
    hydra_cfg = HydraConfig.get()
    assert hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.sweeper._target_.endswith("BasicSweeper")
    params = [f"{key}={value}" for key, value in hydra_cfg.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides(params)
    values = [[f"{o.key_or_group}={v}" for v in o.sweep_iterator()] for o in overrides]
    launched = [dict(setting.split("=", 1) for setting in combo) for combo in itertools.product(*values)]
    assert launched == jobs
    assert cfg.finetune.from_ckpt == "pretrained.ckpt"
    if preset == "finetune_gpt_cv":
        assert cfg.data.num_folds == 5


def test_from_ckpt_null_trains_the_same_preset_from_scratch(pretrained, compose_config, in_hydra, tmp_path):
    """The baseline a pretraining's gain is measured against: no weights loaded, the data's own tokenizer."""
    data_dir, _, pretrain_dir = pretrained
    in_hydra(train, compose_config(_finetune_overrides(data_dir, "null", "trainer.max_epochs=1")))
    run_dir = tmp_path / "run"
    assert not (run_dir / REPORT_FILE).exists()
    assert json.loads((run_dir / "tokenizer.json").read_text()) != json.loads((pretrain_dir / "tokenizer.json").read_text())
    assert "test/acc" in read_metrics(run_dir)
