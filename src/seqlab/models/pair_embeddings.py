"""The source and target embedding tables of an encoder-decoder model: one table when both sides share
a vocabulary, two when the data gives each side its own (`data.separate_tokenizers=true`)."""

from torch import nn


def source_and_target_embeddings(
    vocab_size: int, pad_id: int, dim: int, source_vocab_size: int | None, source_pad_id: int | None, shared_embeddings: bool | None
) -> tuple[nn.Embedding, nn.Embedding]:
    """(source, target) embeddings of width `dim`. `vocab_size`/`pad_id` are the target side's, and the
    source side's too unless `source_vocab_size` is given. `shared_embeddings` None shares exactly when
    the two sides have one vocabulary."""
    own_source_vocabulary = source_vocab_size is not None
    if own_source_vocabulary and shared_embeddings:
        raise ValueError(
            "shared_embeddings=true needs one vocabulary for both sides, and data.separate_tokenizers=true gives each side its own; "
            "set model.shared_embeddings=false"
        )
    shared = not own_source_vocabulary if shared_embeddings is None else shared_embeddings
    if not own_source_vocabulary:
        source_vocab_size, source_pad_id = vocab_size, pad_id
    source = nn.Embedding(source_vocab_size, dim, padding_idx=source_pad_id)
    return source, source if shared else nn.Embedding(vocab_size, dim, padding_idx=pad_id)
