"""Encoder-decoder models: shapes, padding never changing an output, a causal decoder, and decoding
(beam search of width 1 is greedy decoding; wider beams find hypotheses at least as likely)."""

import pytest
import torch

from seqlab.models.decoding import beam_search, greedy_decode
from seqlab.models.rnn_seq2seq import RNNSeq2Seq
from seqlab.models.transformer_seq2seq import TransformerSeq2Seq

VOCAB, PAD, BOS, EOS = 24, 0, 22, 23

MODELS = {
    "gru-additive-feeding": lambda: RNNSeq2Seq(VOCAB, PAD, BOS, EOS, embed_dim=16, hidden_dim=16),
    "lstm-multiplicative-2layers": lambda: RNNSeq2Seq(
        VOCAB, PAD, BOS, EOS, cell="lstm", attention="multiplicative", input_feeding=False, embed_dim=16, hidden_dim=16, num_layers=2
    ),
    "gru-separate-tied": lambda: RNNSeq2Seq(VOCAB, PAD, BOS, EOS, embed_dim=16, hidden_dim=16, shared_embeddings=False, tie_output=True),
    "transformer": lambda: TransformerSeq2Seq(VOCAB, PAD, BOS, EOS, hidden_dim=16, num_heads=2, num_layers=2),
    "transformer-learned-separate": lambda: TransformerSeq2Seq(
        VOCAB, PAD, BOS, EOS, hidden_dim=16, num_heads=2, num_layers=1, num_decoder_layers=2, positions="learned", shared_embeddings=False
    ),
}


def model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[name]().eval()


def sources() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sources of lengths 6, 3 and 1, padded to 6."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, BOS, (3, 6), generator=generator)
    lengths = torch.tensor([6, 3, 1])
    ids[torch.arange(6)[None, :] >= lengths[:, None]] = PAD
    return ids, lengths


def target_in() -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    return torch.cat([torch.full((3, 1), BOS), torch.randint(1, BOS, (3, 4), generator=generator)], dim=1)


@pytest.mark.parametrize("name", MODELS)
def test_logits_have_one_row_per_target_position_and_token(name: str) -> None:
    ids, lengths = sources()
    assert model(name)(ids, lengths, target_in()).shape == (3, 5, VOCAB)


@pytest.mark.parametrize("name", MODELS)
def test_source_padding_never_changes_an_output(name: str) -> None:
    net = model(name)
    ids, lengths = sources()
    with torch.no_grad():
        batched = net(ids, lengths, target_in())
        more_padding = net(torch.cat([ids, torch.full((3, 4), PAD)], dim=1), lengths, target_in())
        alone = torch.cat([net(ids[i : i + 1, : lengths[i]], lengths[i : i + 1], target_in()[i : i + 1]) for i in range(3)])
        translations = net.generate(ids, lengths, beam_size=3, max_len=8)
        translations_padded = net.generate(torch.cat([ids, torch.full((3, 4), PAD)], dim=1), lengths, beam_size=3, max_len=8)
    torch.testing.assert_close(more_padding, batched, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)
    assert torch.equal(translations, translations_padded)


@pytest.mark.parametrize("name", MODELS)
def test_the_decoder_never_sees_later_target_tokens(name: str) -> None:
    net = model(name)
    ids, lengths = sources()
    changed = target_in().clone()
    changed[:, 3:] = (changed[:, 3:] + 5) % BOS
    with torch.no_grad():
        original, altered = net(ids, lengths, target_in()), net(ids, lengths, changed)
    torch.testing.assert_close(altered[:, :3], original[:, :3], atol=1e-5, rtol=0)
    assert not torch.allclose(altered[:, 3:], original[:, 3:])


@pytest.mark.parametrize("name", MODELS)
def test_beam_search_of_width_one_is_greedy_decoding(name: str) -> None:
    net = model(name)
    ids, lengths = sources()
    greedy = greedy_decode(net, ids, lengths, max_len=10)
    assert torch.equal(beam_search(net, ids, lengths, beam_size=1, max_len=10), greedy)
    assert torch.equal(net.generate(ids, lengths, beam_size=1, max_len=10), greedy)


def sequence_log_prob(net: torch.nn.Module, ids: torch.Tensor, lengths: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Log-probability of each row of `output` (up to and including its end-of-sequence)."""
    target = torch.cat([torch.full((output.size(0), 1), BOS), output], dim=1)
    with torch.no_grad():
        log_probs = net(ids, lengths, target[:, :-1]).log_softmax(-1).gather(2, output[..., None]).squeeze(-1)
    ended_before = torch.cumsum(output == EOS, dim=1) - (output == EOS).long()
    return (log_probs * (ended_before == 0)).sum(1)


@pytest.mark.parametrize("name", ["gru-additive-feeding", "transformer"])
def test_a_wider_beam_finds_translations_at_least_as_likely_as_greedy(name: str) -> None:
    net = model(name)
    ids, lengths = sources()
    greedy = greedy_decode(net, ids, lengths, max_len=6)
    beam = beam_search(net, ids, lengths, beam_size=8, max_len=6, length_penalty=0.0)
    assert (sequence_log_prob(net, ids, lengths, beam) >= sequence_log_prob(net, ids, lengths, greedy) - 1e-5).all()


def test_decoding_stops_at_end_of_sequence_and_pads_after_it() -> None:
    net = model("gru-additive-feeding")
    with torch.no_grad():
        net.output.bias[EOS] += 100.0  # end-of-sequence is now by far the likeliest token everywhere
    ids, lengths = sources()
    for beam_size in (1, 4):
        out = net.generate(ids, lengths, beam_size=beam_size, max_len=10)
        assert out.size(1) < 10 and (out[:, 0] == EOS).all() and (out[:, 1:] == PAD).all()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RNNSeq2Seq(VOCAB, PAD, BOS, EOS, cell="elman"), "cell must be one of"),
        (lambda: RNNSeq2Seq(VOCAB, PAD, BOS, EOS, attention="dot"), "attention must be one of"),
        (lambda: RNNSeq2Seq(VOCAB, PAD, BOS, EOS, embed_dim=8, hidden_dim=16, tie_output=True), "tie_output needs"),
        (lambda: TransformerSeq2Seq(VOCAB, PAD, BOS, EOS, positions="rotary"), "positions must be one of"),
    ],
)
def test_a_bad_setting_is_refused_in_its_own_name(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("name", MODELS)
def test_decoding_step_by_step_gives_the_teacher_forced_probabilities(name: str) -> None:
    """What `generate` reads one step at a time (the Transformer from its kept keys and values) is
    what training computes for the whole target at once."""
    net = model(name)
    ids, lengths = sources()
    targets = target_in()
    with torch.no_grad():
        whole = net(ids, lengths, targets).log_softmax(-1)
        state, steps = net.start(ids, lengths), []
        for t in range(targets.size(1)):
            log_probs, state = net.step(state, targets[:, t])
            steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("build", [RNNSeq2Seq, TransformerSeq2Seq])
def test_a_source_vocabulary_of_its_own_gets_its_own_embedding_and_the_output_stays_tied(build) -> None:
    sizes = {"embed_dim": 16} if build is RNNSeq2Seq else {"num_heads": 2, "num_layers": 1}
    tied = {"tie_output": True} if build is RNNSeq2Seq else {}
    net = build(VOCAB, PAD, BOS, EOS, source_vocab_size=40, hidden_dim=16, **sizes, **tied).eval()
    assert net.source_embedding.num_embeddings == 40 and net.target_embedding.num_embeddings == VOCAB
    assert net.output.weight is net.target_embedding.weight
    ids = torch.tensor([[35, 39, 1]])  # source ids beyond the target's vocabulary
    assert net(ids, torch.tensor([3]), target_in()[:1]).shape == (1, 5, VOCAB)
    with pytest.raises(ValueError, match="^shared_embeddings=true needs one vocabulary for both sides"):
        build(VOCAB, PAD, BOS, EOS, source_vocab_size=40, hidden_dim=16, shared_embeddings=True, **sizes)
