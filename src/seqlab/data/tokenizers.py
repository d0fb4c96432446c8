"""Tokenizers: fitted on the training split only, saved with the run and reloaded by every later command.

Word and BPE vocabularies are trained with Hugging Face `tokenizers`, which encodes batches in Rust.
A saved tokenizer names its own class, so `load_tokenizer` rebuilds exactly what the run used.
"""

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD = "<pad>"
UNK = "<unk>"


class TextTokenizer(ABC):
    """Common interface: `fit`, `encode_batch`, `decode`, `vocab_size`, `pad_id`, `to_dict`."""

    @abstractmethod
    def fit(self, texts: Iterable[str]) -> None: ...

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def pad_id(self) -> int:
        return 0

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor arguments; with the fitted state they rebuild this tokenizer."""

    @abstractmethod
    def state(self) -> Any: ...

    @abstractmethod
    def load_state(self, state: Any) -> None: ...

    def to_dict(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "settings": self.settings(),
            "state": self.state(),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))


def tokenizer_from_dict(saved: dict[str, Any]) -> TextTokenizer:
    from hydra.utils import get_class

    tokenizer = get_class(saved["class"])(**saved["settings"])
    tokenizer.load_state(saved["state"])
    return tokenizer


def load_tokenizer(path: str | Path) -> TextTokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text()))


class _TrainedHFTokenizer(TextTokenizer):
    """A vocabulary trained with Hugging Face `tokenizers`; subclasses say how text is split."""

    def __init__(self) -> None:
        self._tokenizer: Tokenizer | None = None

    @abstractmethod
    def _untrained(self) -> tuple[Tokenizer, trainers.Trainer]: ...

    def fit(self, texts: Iterable[str]) -> None:
        tokenizer, trainer = self._untrained()
        tokenizer.train_from_iterator(texts, trainer=trainer)
        self._tokenizer = tokenizer

    @property
    def is_fitted(self) -> bool:
        return self._tokenizer is not None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._fitted().encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._fitted().decode(list(ids))

    @property
    def vocab_size(self) -> int:
        return self._fitted().get_vocab_size()

    @property
    def pad_id(self) -> int:
        return self._fitted().token_to_id(PAD)

    def state(self) -> str:
        return self._fitted().to_str()

    def load_state(self, state: str) -> None:
        self._tokenizer = Tokenizer.from_str(state)

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before use")
        return self._tokenizer


class WordTokenizer(_TrainedHFTokenizer):
    """Words and punctuation; a vocabulary of at most `max_size` words seen `min_freq` times."""

    def __init__(self, min_freq: int = 1, max_size: int | None = None, lowercase: bool = True) -> None:
        super().__init__()
        self.min_freq = min_freq
        self.max_size = max_size
        self.lowercase = lowercase

    def settings(self) -> dict[str, Any]:
        return {"min_freq": self.min_freq, "max_size": self.max_size, "lowercase": self.lowercase}

    def _untrained(self) -> tuple[Tokenizer, trainers.Trainer]:
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        if self.lowercase:
            tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.decoder = decoders.WordPiece()  # joins words with spaces
        trainer = trainers.WordLevelTrainer(
            # The special tokens count towards the size.
            vocab_size=(self.max_size + 2) if self.max_size else 10**9,
            min_frequency=self.min_freq,
            special_tokens=[PAD, UNK],
            show_progress=False,
        )
        return tokenizer, trainer


class BPETokenizer(_TrainedHFTokenizer):
    """Byte-level BPE: no unknown characters, subwords learnt from the training split."""

    def __init__(self, vocab_size: int = 8000, min_freq: int = 2, lowercase: bool = False) -> None:
        super().__init__()
        self.target_vocab_size = vocab_size
        self.min_freq = min_freq
        self.lowercase = lowercase

    def settings(self) -> dict[str, Any]:
        return {"vocab_size": self.target_vocab_size, "min_freq": self.min_freq, "lowercase": self.lowercase}

    def _untrained(self) -> tuple[Tokenizer, trainers.Trainer]:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        if self.lowercase:
            tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_freq,
            special_tokens=[PAD, UNK],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        return tokenizer, trainer


class CharTokenizer(TextTokenizer):
    """One id per character seen in the training split; `<pad>` is 0 and `<unk>` is 1."""

    def __init__(self) -> None:
        self.chars: list[str] | None = None
        self._ids: dict[str, int] = {}

    def settings(self) -> dict[str, Any]:
        return {}

    def fit(self, texts: Iterable[str]) -> None:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        self.load_state(sorted(seen))

    @property
    def is_fitted(self) -> bool:
        return self.chars is not None

    def state(self) -> list[str]:
        return list(self.chars or [])

    def load_state(self, state: list[str]) -> None:
        self.chars = list(state)
        self._ids = {char: index + 2 for index, char in enumerate(self.chars)}

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self._ids
        return [[ids.get(char, 1) for char in text] for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        chars = self.chars or []
        return "".join(chars[i - 2] if i >= 2 else "" for i in ids)

    @property
    def vocab_size(self) -> int:
        return len(self.chars or []) + 2
