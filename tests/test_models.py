"""Models: output shapes, padding never changing an output, causality, the Elman recurrence by hand, generation."""

import math

import pytest
import torch
from hydra.utils import instantiate
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.models.gpt import GPT, GPTClassifier
from seqlab.models.rnn import ElmanRNN, RNNClassifier, RNNLanguageModel
from seqlab.models.sampling import sample_next_token
from seqlab.models.transformer import TransformerClassifier

VOCAB, PAD = 30, 0


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of lengths 6, 3 and 1, padded to 6."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (3, 6), generator=generator)
    lengths = torch.tensor([6, 3, 1])
    ids[torch.arange(6)[None, :] >= lengths[:, None]] = PAD
    return ids, lengths


def assert_padding_never_changes_output(model: torch.nn.Module) -> None:
    """The batch's outputs equal each sequence's output alone and unpadded, and extra padding changes nothing."""
    model.eval()
    ids, lengths = padded_batch()
    with torch.no_grad():
        batched = model(ids, lengths)
        more_padding = model(torch.cat([ids, torch.full((3, 5), PAD)], dim=1), lengths)
        alone = torch.cat([model(ids[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(more_padding, batched, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


RNN_VARIANTS = [
    (cell, nonlinearity, bidirectional, pooling)
    for cell, nonlinearity in [("rnn", "tanh"), ("rnn", "sigmoid"), ("lstm", "tanh"), ("gru", "tanh")]
    for bidirectional in (False, True)
    for pooling in ("last", "mean", "max")
]


@pytest.mark.parametrize(("cell", "nonlinearity", "bidirectional", "pooling"), RNN_VARIANTS)
def test_rnn_classifier_padding_never_changes_output(cell, nonlinearity, bidirectional, pooling):
    torch.manual_seed(0)
    model = RNNClassifier(
        VOCAB,
        3,
        pad_id=PAD,
        cell=cell,
        nonlinearity=nonlinearity,
        embed_dim=8,
        hidden_dim=6,
        num_layers=2,
        bidirectional=bidirectional,
        pooling=pooling,
        dropout=0.2,
    )
    assert model(*padded_batch()).shape == (3, 3)
    assert_padding_never_changes_output(model)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_transformer_padding_never_changes_output(positions, pooling):
    torch.manual_seed(0)
    model = TransformerClassifier(VOCAB, 4, pad_id=PAD, hidden_dim=16, num_heads=2, num_layers=2, max_len=16, positions=positions, pooling=pooling)
    assert model(*padded_batch()).shape == (3, 4)
    assert_padding_never_changes_output(model)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_gpt_classifier_padding_never_changes_output(pooling):
    torch.manual_seed(0)
    model = GPTClassifier(VOCAB, 2, pad_id=PAD, block_size=16, num_layers=2, num_heads=2, hidden_dim=16, pooling=pooling)
    assert model(*padded_batch()).shape == (3, 2)
    assert_padding_never_changes_output(model)


def test_transformer_positions_matter():
    """Word order changes the output: the positions reach the attention."""
    torch.manual_seed(0)
    for positions in ("learned", "sinusoidal", "rotary"):
        model = TransformerClassifier(VOCAB, 2, hidden_dim=16, num_heads=2, num_layers=1, max_len=8, positions=positions, pooling="mean").eval()
        ids, lengths = torch.tensor([[3, 4, 5, 6]]), torch.tensor([4])
        assert not torch.allclose(model(ids, lengths), model(ids.flip(1), lengths)), positions


def test_elman_rnn_matches_the_formula_by_hand():
    """h_t = σ(W_hx x_t + W_hh h_{t-1} + b_h), h_0 = 0, for a 2-step sequence, sigmoid and tanh."""
    W_hx = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    W_hh = torch.tensor([[1.0, -0.5], [0.3, 0.8]])
    b_h = torch.tensor([0.1, -0.2])
    x = torch.tensor([[[1.0, 2.0], [-1.0, 0.5]]])  # (B=1, T=2, 2)
    for name, sigma in (("sigmoid", lambda v: 1 / (1 + math.exp(-v))), ("tanh", math.tanh)):
        rnn = ElmanRNN(2, 2, nonlinearity=name)
        with torch.no_grad():
            rnn.input_maps[0].weight.copy_(W_hx)
            rnn.input_maps[0].bias.copy_(b_h)
            rnn.recurrent_maps[0].weight.copy_(W_hh)
        # By hand, one scalar at a time.
        h = [0.0, 0.0]
        expected = []
        for t in range(2):
            h = [
                sigma(sum(W_hx[i, j].item() * x[0, t, j].item() for j in range(2)) + sum(W_hh[i, j].item() * h[j] for j in range(2)) + b_h[i].item())
                for i in range(2)
            ]
            expected.append(h)
        outputs, final = rnn(x, torch.tensor([2]))
        torch.testing.assert_close(outputs[0], torch.tensor(expected), atol=1e-6, rtol=0)
        torch.testing.assert_close(final[0, 0], torch.tensor(expected[-1]), atol=1e-6, rtol=0)


def test_elman_rnn_with_tanh_equals_torch_rnn():
    """Multi-layer, bidirectional, on padded input: the same numbers as nn.RNN over packed sequences."""
    torch.manual_seed(0)
    elman = ElmanRNN(5, 4, num_layers=2, bidirectional=True)
    reference = torch.nn.RNN(5, 4, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for index, (layer, suffix) in enumerate([(0, ""), (0, "_reverse"), (1, ""), (1, "_reverse")]):
            getattr(reference, f"weight_ih_l{layer}{suffix}").copy_(elman.input_maps[index].weight)
            getattr(reference, f"bias_ih_l{layer}{suffix}").copy_(elman.input_maps[index].bias)
            getattr(reference, f"weight_hh_l{layer}{suffix}").copy_(elman.recurrent_maps[index].weight)
            getattr(reference, f"bias_hh_l{layer}{suffix}").zero_()
    inputs, lengths = torch.randn(3, 6, 5), torch.tensor([6, 3, 2])
    outputs, final = elman(inputs, lengths)
    packed_outputs, reference_final = reference(pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False))
    reference_outputs = pad_packed_sequence(packed_outputs, batch_first=True, total_length=6)[0]
    torch.testing.assert_close(outputs, reference_outputs, atol=1e-5, rtol=0)
    torch.testing.assert_close(final, reference_final, atol=1e-5, rtol=0)


def test_elman_rnn_refuses_an_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        ElmanRNN(2, 2, nonlinearity="softsign")


def tiny_gpt(**kwargs) -> GPT:
    torch.manual_seed(0)
    return GPT(VOCAB, **{"block_size": 8, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, **kwargs}).eval()


@pytest.mark.parametrize("make_model", [tiny_gpt, lambda: RNNLanguageModel(VOCAB, embed_dim=8, hidden_dim=8).eval()], ids=["gpt", "lstm_lm"])
def test_language_models_are_causal(make_model):
    """Changing token t+1 never changes the logits at positions <= t."""
    model = make_model()
    ids = torch.randint(1, VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))
    logits = model(ids)
    assert logits.shape == (2, 8, VOCAB)
    for t in range(7):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] % (VOCAB - 1)) + 1
        changed_logits = model(changed)
        torch.testing.assert_close(changed_logits[:, : t + 1], logits[:, : t + 1], atol=1e-5, rtol=0)
        assert not torch.allclose(changed_logits[:, t + 1], logits[:, t + 1])


def test_gpt_ties_input_and_output_embeddings_and_scales_residual_projections():
    model = GPT(VOCAB, block_size=8, num_layers=8, num_heads=2, hidden_dim=64)
    assert model.lm_head.weight is model.transformer.wte.weight
    residual = model.transformer.h[0].attn.c_proj.weight.std().item()
    other = model.transformer.h[0].attn.c_attn.weight.std().item()
    assert residual == pytest.approx(0.02 / math.sqrt(16), rel=0.15) and other == pytest.approx(0.02, rel=0.15)


def test_gpt_refuses_sequences_longer_than_its_block():
    with pytest.raises(ValueError, match="block_size=8"):
        tiny_gpt()(torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize("make_model", [tiny_gpt, lambda: RNNLanguageModel(VOCAB, embed_dim=8, hidden_dim=8).eval()], ids=["gpt", "lstm_lm"])
def test_generation_stops_at_the_maximum_length(make_model):
    """Exactly max_new_tokens are added, also when prompt plus new tokens run past the GPT's block."""
    model = make_model()
    prompt = torch.randint(1, VOCAB, (2, 6))
    out = model.generate(prompt, max_new_tokens=12, temperature=0.9, top_k=5, top_p=0.9)
    assert out.shape == (2, 18)
    assert torch.equal(out[:, :6], prompt)
    assert out.min() >= 0 and out.max() < VOCAB
    assert model.generate(prompt, max_new_tokens=0).shape == (2, 6)


def test_greedy_generation_follows_the_argmax_within_the_block():
    model = tiny_gpt()
    prompt = torch.randint(1, VOCAB, (1, 10))  # longer than block_size=8: the model sees the last 8
    out = model.generate(prompt, max_new_tokens=3, temperature=0)
    expected = prompt
    for _ in range(3):
        next_token = model(expected[:, -8:])[:, -1].argmax(-1, keepdim=True)
        expected = torch.cat([expected, next_token], dim=1)
    assert torch.equal(out, expected)


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0, -2.0]]).repeat(500, 1)
    torch.manual_seed(0)
    assert set(sample_next_token(logits, top_k=2).flatten().tolist()) == {0, 1}
    assert set(sample_next_token(logits, top_p=0.5).flatten().tolist()) == {0}  # p(token 0) = 0.71 already covers 0.5
    assert set(sample_next_token(logits, top_p=0.9).flatten().tolist()) == {0, 1}  # 0.71 + 0.26 >= 0.9
    assert set(sample_next_token(logits, temperature=0).flatten().tolist()) == {0}


ATTENTION_MODELS = ("transformer", "gpt_classifier", "gpt")


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "transformer", "gpt_classifier", "gpt", "lstm_lm"])
def test_every_model_family_takes_its_width_depth_and_heads_by_the_same_names(compose_config, model):
    """`model.hidden_dim`, `model.num_layers` (and `model.num_heads`) size any model, so one search space fits them all."""
    overrides = [f"model={model}", "model.hidden_dim=24", "model.num_layers=3"]
    if model in ATTENTION_MODELS:
        overrides.append("model.num_heads=3")
    cfg = compose_config(overrides)
    classifier = model not in ("gpt", "lstm_lm")
    net = instantiate(cfg.model, vocab_size=VOCAB, **({"num_classes": 2} if classifier else {}))
    output_layer = net.head if classifier else net.lm_head
    assert output_layer.in_features == 24
