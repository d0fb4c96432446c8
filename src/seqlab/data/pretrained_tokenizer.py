"""A pretrained Hugging Face tokenizer (a hub name or a local folder) behind seqlab's tokenizer interface.

Fine-tuning a Hugging Face backbone needs the backbone's own vocabulary, so nothing is fitted:
`fit` loads the tokenizer. The saved state is the full `tokenizer.json`, so eval, predict and
export rebuild it without the original folder or the network.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer

from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError


class PretrainedTokenizer(TextTokenizer):
    """`name`: a hub name (read from the local cache when HF_HUB_OFFLINE=1) or a folder with tokenizer files.

    Encoding adds the model's special tokens (BERT's [CLS] ... [SEP]); the pad id is the model's
    pad token, else its end-of-text token (GPT-2 has no pad token; the attention mask hides it).
    """

    def __init__(self, name: str | None) -> None:
        if not name:
            raise SeqlabError("no pretrained tokenizer named: with model=hf_classifier, set model.pretrained=<hub name or local folder>")
        self.name = str(name)
        self._tokenizer: Tokenizer | None = None
        self._pad_id = 0

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}

    def fit(self, texts: Iterable[str]) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise SeqlabError("pretrained tokenizers need the `hf` extra: pip install 'seqlab[hf]'") from None
        try:
            pretrained = AutoTokenizer.from_pretrained(self.name)
        except (OSError, ValueError) as error:
            raise SeqlabError(f"cannot load the tokenizer {self.name!r}: {str(error).splitlines()[0]}") from None
        if not getattr(pretrained, "is_fast", False):
            raise SeqlabError(f"{self.name!r} has no fast (tokenizers) tokenizer; seqlab needs one")
        pad_id = pretrained.pad_token_id if pretrained.pad_token_id is not None else pretrained.eos_token_id
        self.load_state({"tokenizer": pretrained.backend_tokenizer.to_str(), "pad_id": int(pad_id or 0)})

    @property
    def is_fitted(self) -> bool:
        return self._tokenizer is not None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._loaded().encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._loaded().decode(list(ids), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self._loaded().get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return self._pad_id

    def state(self) -> dict[str, Any]:
        return {"tokenizer": self._loaded().to_str(), "pad_id": self._pad_id}

    def load_state(self, state: dict[str, Any]) -> None:
        tokenizer = Tokenizer.from_str(state["tokenizer"])
        # A saved backbone tokenizer may carry padding/truncation settings; batching pads and truncates here.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._pad_id = int(state["pad_id"])

    def _loaded(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("PretrainedTokenizer must be loaded (fit) before use")
        return self._tokenizer
