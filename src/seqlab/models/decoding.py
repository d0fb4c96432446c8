"""Greedy and beam-search decoding for encoder-decoder models.

A model offers two methods: `start(source_ids, source_lengths) -> state`, a dict of tensors whose first
dimension is the batch (the encoder's output and the decoder's first state), and
`step(state, tokens) -> (log_probs, state)`, the next-token log-probabilities (N, V) after `tokens`
(N,) and the state after them. Decoding here never looks inside a state: a beam reorders it by
indexing every tensor's first dimension.

Outputs are (B, L) token ids without the begin-of-sequence id, padded with `pad_id` after the
end-of-sequence id (which is kept, so a caller tells a finished text from one cut at `max_len`).
"""

from typing import Protocol

import torch

State = dict[str, torch.Tensor]


class EncoderDecoder(Protocol):
    bos_id: int
    eos_id: int
    pad_id: int

    def start(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State: ...

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]: ...


def reorder(state: State, indices: torch.Tensor) -> State:
    return {name: tensor.index_select(0, indices) for name, tensor in state.items()}


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, source_ids: torch.Tensor, source_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """The most likely next token at every step, until every text has ended or `max_len` tokens."""
    B = source_ids.size(0)
    state = model.start(source_ids, source_lengths)
    tokens = torch.full((B,), model.bos_id, dtype=torch.long, device=source_ids.device)
    finished = torch.zeros(B, dtype=torch.bool, device=source_ids.device)
    out = []
    for _ in range(max_len):
        log_probs, state = model.step(state, tokens)
        tokens = log_probs.argmax(-1).masked_fill(finished, model.pad_id)
        out.append(tokens)
        finished |= tokens == model.eos_id
        if finished.all():
            break
    return torch.stack(out, dim=1)


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    source_ids: torch.Tensor,
    source_lengths: torch.Tensor,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> torch.Tensor:
    """The best of `beam_size` hypotheses per text, all texts' beams decoded together as one batch of
    B * beam_size rows.

    A hypothesis that ends keeps its score and only ever continues with padding, so it competes with
    the open ones until the end; the winner is the hypothesis of the highest sum of log-probabilities
    divided by its length (end-of-sequence included) to the power `length_penalty` (0: no
    normalisation, which favours short outputs). With `beam_size=1` this is greedy decoding.
    """
    B, K = source_ids.size(0), beam_size
    device = source_ids.device
    state = reorder(model.start(source_ids, source_lengths), torch.arange(B, device=device).repeat_interleave(K))  # (B*K, ...)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: only the first may expand, or the K beams would be copies
    tokens = torch.full((B * K,), model.bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    history = torch.empty(B * K, 0, dtype=torch.long, device=device)
    for _ in range(max_len):
        log_probs, state = model.step(state, tokens)  # (B*K, V)
        V = log_probs.size(-1)
        # A finished hypothesis continues with padding at no cost, and with nothing else.
        done_row = torch.full((V,), float("-inf"), device=device)
        done_row[model.pad_id] = 0.0
        log_probs = torch.where(finished[:, None], done_row, log_probs.float())
        candidates = (scores.view(B * K, 1) + log_probs).view(B, K * V)
        scores, flat = candidates.topk(K, dim=1)  # (B, K)
        beam = flat // V + torch.arange(B, device=device)[:, None] * K  # the row each winner extends
        beam, tokens = beam.view(-1), (flat % V).view(-1)
        state = reorder(state, beam)
        history = torch.cat((history[beam], tokens[:, None]), dim=1)
        lengths = lengths[beam] + (~finished[beam]).float()
        finished = finished[beam] | (tokens == model.eos_id)
        if finished.all():
            break
    normalised = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    best = normalised.view(B, K).argmax(dim=1) + torch.arange(B, device=device) * K
    return history[best]


class GeneratesTranslations:
    """`generate` for an encoder-decoder nn.Module with `start` and `step` (an `EncoderDecoder`)."""

    def generate(
        self, source_ids: torch.Tensor, source_lengths: torch.Tensor, beam_size: int = 1, max_len: int = 128, length_penalty: float = 1.0
    ) -> torch.Tensor:
        """Translations (B, L): greedy with `beam_size=1`, else beam search (`seqlab.models.decoding`)."""
        if beam_size == 1:
            return greedy_decode(self, source_ids, source_lengths, max_len)
        return beam_search(self, source_ids, source_lengths, beam_size, max_len, length_penalty)
