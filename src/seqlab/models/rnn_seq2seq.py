"""A recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

Read top to bottom: `Attention` (additive or multiplicative scores over the encoder's states), then
`RNNSeq2Seq`: a bidirectional GRU or LSTM encoder over packed sequences; a decoder RNN whose first
state is the encoder's last states through a `bridge`; at every step the attention's context and the
decoder's state make the attentional state (Luong's h~), from which the next token is predicted.
With `input_feeding`, h~ of a step is also fed into the next step's input, which makes the decoder a
loop over steps; without it, teacher-forced training runs the decoder RNN over the whole target at
once. Padding of the source is never attended to and never enters the packed encoder.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.models import check_sizes
from seqlab.models.decoding import GeneratesTranslations, State
from seqlab.models.masks import padding_mask
from seqlab.models.pair_embeddings import source_and_target_embeddings

ATTENTIONS = ("additive", "multiplicative")
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class Attention(nn.Module):
    """Scores of a query (B, Tq, H) against keys (B, S, 2H): additive v^T tanh(W q + U k) (Bahdanau) or
    multiplicative q^T W k (Luong's "general"); masked softmax over the real source tokens."""

    def __init__(self, kind: str, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.kind = kind
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
        if kind == "additive":
            self.query_proj = nn.Linear(query_dim, query_dim)
            self.v = nn.Linear(query_dim, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """The keys' part of the score, computed once per source: (B, S, H)."""
        return self.key_proj(memory)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """query (B, Tq, H), keys (B, S, H), memory (B, S, 2H), valid (B, S) -> context (B, Tq, 2H)."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.query_proj(query)[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)  # (B, Tq, S)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, Tq, S)
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        return F.softmax(scores, dim=-1) @ memory  # (B, Tq, 2H)


class RNNSeq2Seq(GeneratesTranslations, nn.Module):
    """Source ids (B, S) with lengths (B,), and the teacher-forced target input (B, T) (begin-of-sequence,
    then the target) -> next-token logits (B, T, vocab_size); `generate` translates.

    `cell`: gru or lstm, in both encoder and decoder. `attention`: additive or multiplicative.
    `vocab_size` and `pad_id` are the target side's, and the source side's too unless it has a vocabulary
    of its own (`source_vocab_size`, `source_pad_id`: one tokenizer per side). `shared_embeddings`: one
    embedding table for source and target; null: shared unless the source has its own vocabulary, which
    `shared_embeddings=true` refuses;
    `tie_output`: the output layer reads the target embedding (needs `embed_dim == hidden_dim`).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        cell: str = "gru",
        embed_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        attention: str = "additive",
        input_feeding: bool = True,
        shared_embeddings: bool | None = None,
        tie_output: bool = False,
        dropout: float = 0.2,
        source_vocab_size: int | None = None,
        source_pad_id: int | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {attention!r}")
        check_sizes(embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        if tie_output and embed_dim != hidden_dim:
            raise ValueError(f"tie_output needs embed_dim == hidden_dim, got {embed_dim} and {hidden_dim}")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.cell, self.hidden_dim, self.num_layers, self.input_feeding = cell, hidden_dim, num_layers, input_feeding
        rnn_dropout = dropout if num_layers > 1 else 0.0
        self.source_embedding, self.target_embedding = source_and_target_embeddings(
            vocab_size, pad_id, embed_dim, source_vocab_size, source_pad_id, shared_embeddings
        )
        self.encoder = CELLS[cell](embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True, dropout=rnn_dropout)
        # The decoder's first state from the encoder's last forward and backward states, layer by layer.
        self.bridge = nn.Linear(2 * hidden_dim, hidden_dim)
        decoder_input = embed_dim + (hidden_dim if input_feeding else 0)
        self.decoder = CELLS[cell](decoder_input, hidden_dim, num_layers, batch_first=True, dropout=rnn_dropout)
        self.attention = Attention(attention, hidden_dim, 2 * hidden_dim)
        self.combine = nn.Linear(3 * hidden_dim, hidden_dim)  # [context; decoder state] -> h~
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, vocab_size)
        if tie_output:
            self.output.weight = self.target_embedding.weight

    # -- encoder ----------------------------------------------------------------------------

    def encode(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        """The encoder's states (B, S, 2H), their attention keys, the source mask, and the decoder's first state."""
        S = source_ids.size(1)
        lengths = source_lengths.clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(self.source_embedding(source_ids)), lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=S)  # (B, S, 2H)
        hidden = final[0] if self.cell == "lstm" else final  # (2 * layers, B, H)
        B = source_ids.size(0)
        both_directions = hidden.view(self.num_layers, 2, B, self.hidden_dim).transpose(1, 2).reshape(self.num_layers, B, 2 * self.hidden_dim)
        start = torch.tanh(self.bridge(both_directions))  # (layers, B, H)
        state = {
            "memory": memory,
            "keys": self.attention.project_keys(memory),
            "valid": padding_mask(source_lengths.to(source_ids.device).clamp(min=1), S),
            "hidden": start.transpose(0, 1).contiguous(),  # batch first, so a beam reorders it like the rest
            "feed": memory.new_zeros(B, self.hidden_dim),
        }
        if self.cell == "lstm":
            state["cell"] = torch.zeros_like(state["hidden"])
        return state

    # -- decoder ----------------------------------------------------------------------------

    def _decode(self, state: State, target_in: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Teacher-forced decoding of target_in (B, T) from `state` -> attentional states (B, T, H) and the state after."""
        embedded = self.dropout(self.target_embedding(target_in))  # (B, T, E)
        recurrent = state["hidden"].transpose(0, 1).contiguous()
        if self.cell == "lstm":
            recurrent = (recurrent, state["cell"].transpose(0, 1).contiguous())
        if self.input_feeding:
            feed, steps = state["feed"], []
            for t in range(target_in.size(1)):
                output, recurrent = self.decoder(torch.cat((embedded[:, t : t + 1], feed[:, None]), dim=-1), recurrent)
                feed = self._attend(output, state)[:, 0]
                steps.append(feed)
            attentional = torch.stack(steps, dim=1)
        else:
            output, recurrent = self.decoder(embedded, recurrent)  # (B, T, H)
            attentional = self._attend(output, state)
        hidden, cell = recurrent if self.cell == "lstm" else (recurrent, None)
        after = {**state, "hidden": hidden.transpose(0, 1).contiguous(), "feed": attentional[:, -1]}
        if cell is not None:
            after["cell"] = cell.transpose(0, 1).contiguous()
        return attentional, after

    def _attend(self, output: torch.Tensor, state: State) -> torch.Tensor:
        context = self.attention(output, state["keys"], state["memory"], state["valid"])  # (B, T, 2H)
        return self.dropout(torch.tanh(self.combine(torch.cat((context, output), dim=-1))))  # (B, T, H)

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        attentional, _ = self._decode(self.encode(source_ids, source_lengths), target_in)
        return self.output(attentional)  # (B, T, V)

    # -- generation -------------------------------------------------------------------------

    def start(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        return self.encode(source_ids, source_lengths)

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        attentional, state = self._decode(state, tokens[:, None])
        return F.log_softmax(self.output(attentional[:, 0]).float(), dim=-1), state
