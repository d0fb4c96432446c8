"""A long text (a language model's corpus is one text per split) is fitted and encoded in pieces, so
every core works on it: the vocabulary and the token ids must be exactly those of the whole text."""

import numpy as np
import pytest

import seqlab.data.tokenizers as tokenizers
from seqlab.data.cache import encode_texts
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.tokenizers import LONG_TEXT, BPETokenizer, CharTokenizer, WordTokenizer, long_text_pieces

TOKENIZERS = {
    "word": lambda: WordTokenizer(max_size=300),
    "bpe": lambda: BPETokenizer(vocab_size=400),
    "char": CharTokenizer,
}


def awkward_text(characters: int) -> str:
    """Reviews with what tokenizers treat specially: runs of spaces and tabs, line breaks followed by
    spaces, markup, apostrophes, numbers, accents, capitals, the special tokens' own spellings."""
    rng = np.random.default_rng(0)
    words = ["the", "film", "isn't", "Bad", "<br />", "9/10", "café", "ÉLAN", "<unk>", "<pad>", "...", "it's", "x2", "naïve", "—"]
    separators = [" ", " ", " ", "  ", "\t", "\n", "\n ", " \n", "   \n\n  "]
    parts, length = [], 0
    while length < characters:
        parts.append(words[rng.integers(len(words))] + separators[rng.integers(len(separators))])
        length += len(parts[-1])
    return " leading space " + "".join(parts)


@pytest.fixture
def uncut(monkeypatch):
    """A tokenizer fitted on a text whole, never cut: the reference."""

    def fit_whole(make, text):
        with monkeypatch.context() as patch:
            patch.setattr(tokenizers, "long_text_pieces", lambda whole: [whole])
            tokenizer = make()
            tokenizer.fit([text])
        return tokenizer

    return fit_whole


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_a_long_text_fits_and_encodes_in_pieces_to_the_tokens_of_the_whole_text(name, uncut):
    text = awkward_text(6 * LONG_TEXT)
    pieces = long_text_pieces(text)
    assert len(pieces) > 4 and "".join(pieces) == text
    # Cut only before a space that follows a non-space (a cut inside "  \nword" changes BPE's tokens).
    assert all(piece.startswith(" ") and not before[-1].isspace() for before, piece in zip(pieces, pieces[1:]))
    tokenizer = TOKENIZERS[name]()
    tokenizer.fit([text])
    assert tokenizer.to_dict() == uncut(TOKENIZERS[name], text).to_dict()

    short = "a short review, as a classifier's"
    encoded = encode_texts(tokenizer, [text, short, text[:LONG_TEXT]])
    whole = [tokenizer.encode_batch([t])[0] for t in (text, short, text[:LONG_TEXT])]
    assert [list(encoded[i]) for i in range(3)] == whole


def test_language_model_splits_of_a_long_text_are_the_tokens_of_each_whole_part(tmp_path, uncut):
    text = awkward_text(8 * LONG_TEXT)
    (tmp_path / "corpus.txt").write_text(text)
    datamodule = LanguageModelingDataModule(files=[str(tmp_path / "corpus.txt")], tokenizer=BPETokenizer(vocab_size=400), train_fraction=0.8)
    datamodule.setup()

    train_end = int(len(text) * 0.8)
    assert datamodule.tokenizer.to_dict() == uncut(lambda: BPETokenizer(vocab_size=400), text[:train_end]).to_dict()
    for split, part in (("train", text[:train_end]), ("val", text[train_end:])):
        assert len(datamodule.segments[split]) == 1
        assert list(datamodule.segments[split][0]) == datamodule.tokenizer.encode_batch([part])[0]
