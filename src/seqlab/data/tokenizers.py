"""Tokenizers: fitted on the training split only, saved with the run and reloaded by every later command.

Word and BPE vocabularies are trained with Hugging Face `tokenizers`, which encodes batches in Rust.
A saved tokenizer is `{"name": ..., "settings": ..., "state": ...}`; its name is looked up in
`TOKENIZERS`, so `load_tokenizer` rebuilds exactly what the run used, and a file (a checkpoint, a
bundle, from anyone) can only ever choose one of seqlab's own tokenizers.

Bundles hold it as two files instead (`write_standard_tokenizer`): a standard Hugging Face
`tokenizer.json`, which `tokenizers.Tokenizer.from_file` loads and which pads and truncates a batch as
seqlab does, and `{"name": ..., "settings": ..., "pad_token": ...}` beside it. The standard file is
data that `tokenizers` parses in Rust; the name is still looked up in `TOKENIZERS`.
"""

import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from seqlab.errors import SeqlabError

PAD = "<pad>"
UNK = "<unk>"

# Texts longer than this many characters are fitted and encoded in pieces (`long_text_pieces`), so one
# long text (a corpus read as one string for language modelling) is spread over every core and never
# held whole in the tokenizer's per-character bookkeeping (gigabytes for IMDb's 100 MB of reviews).
LONG_TEXT = 1 << 13
# Just before a space that follows a non-space: no word, byte-level BPE or character token crosses there.
_SAFE_CUT = re.compile(r"(?<=\S) ")


def long_text_pieces(text: str, size: int = LONG_TEXT) -> list[str]:
    """`text` cut into pieces of at least `size` characters (the last may be shorter), each cut just
    before a space that follows a non-space. The word pre-tokenizer splits at every space, and the
    byte-level one joins a space only to what follows it and adds no prefix space to a piece that
    starts with one: the pieces' tokens, in order, are the whole text's."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = _SAFE_CUT.search(text, start + size)
        if cut is None:
            break
        pieces.append(text[start : cut.start()])
        start = cut.start()
    pieces.append(text[start:])
    return pieces


class TextTokenizer(ABC):
    """Common interface: `fit`, `encode_batch`, `decode`, `vocab_size`, `pad_id`, `to_dict`."""

    # What saved files call it: its key in TOKENIZERS (and its `data/tokenizer=` option).
    name: str

    # False for a tokenizer that comes ready-made: `fit` loads it and ignores the texts.
    trains_on_texts = True

    # True when encoding `long_text_pieces(text)` and joining the ids gives the ids of `text` (so long
    # texts may be encoded in pieces); not for ready-made tokenizers, whose pre-tokenizers and special
    # tokens vary.
    encodes_long_text_in_pieces = False

    @abstractmethod
    def fit(self, texts: Iterable[str]) -> None: ...

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    @abstractmethod
    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text, at most `max_length` of them."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def pad_token(self) -> str:
        return PAD

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor arguments; with the fitted state they rebuild this tokenizer."""

    @abstractmethod
    def state(self) -> Any: ...

    @abstractmethod
    def load_state(self, state: Any) -> None: ...

    @abstractmethod
    def standard(self) -> Tokenizer:
        """This fitted tokenizer as a Hugging Face Tokenizer that encodes every text to the same ids."""

    @abstractmethod
    def load_standard(self, tokenizer: Tokenizer, pad_token: str) -> None:
        """Take the fitted state from `tokenizer`, as `standard` wrote it."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "settings": self.settings(), "state": self.state()}

    def identity(self) -> dict[str, Any]:
        """What determines this tokenizer's output: its name and settings, and its fitted state once fitted."""
        if self.is_fitted:
            return self.to_dict()
        return {"name": self.name, "settings": self.settings()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))


def saved_tokenizer_class(saved: Any, source: str) -> type[TextTokenizer]:
    """The tokenizer class a saved tokenizer names, once its name is in TOKENIZERS and its settings are
    ones that class takes; otherwise one line naming `source` (the file it came from)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        raise SeqlabError(f"{source}: the saved tokenizer is damaged (it needs a name and settings); write it again with seqlab")
    name = saved["name"] if "name" in saved else OLD_CLASS_PATHS.get(str(saved.get("class")), saved.get("class"))
    if not isinstance(name, str) or name not in TOKENIZERS:
        raise SeqlabError(f"{source}: unknown tokenizer {name!r}; seqlab loads only its own tokenizers: {', '.join(TOKENIZERS)}")
    cls = TOKENIZERS[name]
    signature = inspect.signature(cls)
    try:
        signature.bind(**saved["settings"])
    except TypeError as error:
        raise SeqlabError(
            f"{source}: the saved {name} tokenizer's settings do not fit it ({error}); it takes: {', '.join(signature.parameters) or 'none'}"
        ) from None
    return cls


def tokenizer_from_dict(saved: dict[str, Any], source: str = "the saved tokenizer") -> TextTokenizer:
    """The fitted tokenizer `saved` describes; `source` (the file it came from) names it in errors."""
    cls = saved_tokenizer_class(saved, source)
    if "state" not in saved:
        raise SeqlabError(f"{source}: the saved tokenizer is damaged (it has no state); write it again with seqlab")
    tokenizer = cls(**saved["settings"])
    try:
        tokenizer.load_state(saved["state"])
    except Exception as error:  # Hugging Face's parser raises plain Exceptions on a damaged vocabulary
        raise SeqlabError(
            f"{source}: the saved {tokenizer.name} tokenizer's state cannot be read ({type(error).__name__}); write it again with seqlab"
        ) from None
    return tokenizer


def load_tokenizer(path: str | Path) -> TextTokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text()), str(path))


def write_standard_tokenizer(tokenizer: TextTokenizer, standard_path: Path, settings_path: Path, max_length: int | None) -> None:
    """Write `tokenizer` as a standard Hugging Face file at `standard_path`, set to pad each batch to its
    longest text with the pad token and to cut texts at `max_length` tokens as seqlab does, and its
    name, settings and pad token at `settings_path`."""
    standard = tokenizer.standard()
    standard.enable_padding(pad_id=tokenizer.pad_id, pad_token=tokenizer.pad_token)
    if max_length:
        standard.enable_truncation(max_length)
    standard.save(str(standard_path))
    settings_path.write_text(json.dumps({"name": tokenizer.name, "settings": tokenizer.settings(), "pad_token": tokenizer.pad_token}))


def read_standard_tokenizer(standard_path: Path, settings_path: Path) -> TextTokenizer:
    """The tokenizer `write_standard_tokenizer` wrote; a file that names another tokenizer or does not
    parse is one line naming it."""
    try:
        saved = json.loads(settings_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SeqlabError(f"{settings_path} is not valid JSON ({error}); write it again with seqlab") from None
    tokenizer = saved_tokenizer_class(saved, str(settings_path))(**saved["settings"])
    if not isinstance(saved.get("pad_token"), str):
        raise SeqlabError(f"{settings_path}: the saved tokenizer is damaged (it has no pad_token); write it again with seqlab")
    try:
        tokenizer.load_standard(Tokenizer.from_file(str(standard_path)), saved["pad_token"])
    except Exception as error:  # Hugging Face's parser raises plain Exceptions, the tokenizers ValueError
        raise SeqlabError(
            f"{standard_path}: not a {tokenizer.name} tokenizer that seqlab wrote ({(str(error).strip().splitlines() or [type(error).__name__])[0]}); write it again with seqlab"
        ) from None
    return tokenizer


class _TrainedHFTokenizer(TextTokenizer):
    """A vocabulary trained with Hugging Face `tokenizers`; subclasses say how text is split."""

    def __init__(self) -> None:
        self._tokenizer: Tokenizer | None = None

    @abstractmethod
    def _untrained(self) -> tuple[Tokenizer, trainers.Trainer]: ...

    def fit(self, texts: Iterable[str]) -> None:
        tokenizer, trainer = self._untrained()
        if self.encodes_long_text_in_pieces:
            # The trainer counts the words of the pieces, which are the words of the texts.
            texts = [piece for text in texts for piece in long_text_pieces(text)]
        else:
            texts = list(texts)
        # Batches of texts let the trainer count words on all cores.
        batches = (texts[start : start + 1000] for start in range(0, len(texts), 1000))
        tokenizer.train_from_iterator(batches, trainer=trainer, length=len(texts))
        self._tokenizer = tokenizer

    @property
    def is_fitted(self) -> bool:
        return self._tokenizer is not None

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        # encode_batch_fast skips character offsets, which seqlab never uses.
        encodings = self._fitted().encode_batch_fast(list(texts))
        return [encoding.ids[:max_length] if max_length else encoding.ids for encoding in encodings]

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

    def standard(self) -> Tokenizer:
        return Tokenizer.from_str(self.state())

    def load_standard(self, tokenizer: Tokenizer, pad_token: str) -> None:
        # seqlab pads and truncates itself; the file's settings are for users of the file alone.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before use")
        return self._tokenizer


class WordTokenizer(_TrainedHFTokenizer):
    """Words and punctuation; a vocabulary of at most `max_size` words seen `min_freq` times."""

    name = "word"
    encodes_long_text_in_pieces = True

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

    name = "bpe"
    encodes_long_text_in_pieces = True

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

    name = "char"
    encodes_long_text_in_pieces = True

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

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        ids = self._ids
        return [[ids.get(char, 1) for char in text[:max_length]] for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        chars = self.chars or []
        return "".join(chars[i - 2] if i >= 2 else "" for i in ids)

    @property
    def vocab_size(self) -> int:
        return len(self.chars or []) + 2

    def standard(self) -> Tokenizer:
        """A word-level model whose words are single characters: the pre-tokenizer splits before every
        character (`[\\s\\S]` matches any one, newlines included) and unseen ones map to `<unk>`."""
        vocab = {PAD: 0, UNK: 1, **{char: index + 2 for index, char in enumerate(self.state())}}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        return tokenizer

    def load_standard(self, tokenizer: Tokenizer, pad_token: str) -> None:
        by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        chars = [token for token, _ in by_id[2:]]
        if [token for token, _ in by_id[:2]] != [PAD, UNK] or [i for _, i in by_id] != list(range(len(by_id))) or any(len(c) != 1 for c in chars):
            raise ValueError("its vocabulary is not <pad>, <unk> and one entry per character")
        self.load_state(chars)


# Pad tokens of common Hugging Face tokenizers, tried when a tokenizer's files don't name one.
KNOWN_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>")


class PretrainedTokenizer(TextTokenizer):
    """A ready-made Hugging Face tokenizer: a local folder with `tokenizer.json`, that file itself, or a
    hub name (fetched only when the hub is reachable).

    Its padding and truncation settings are switched off (seqlab pads each batch to its longest text
    and truncates to `max_length` itself, keeping the end-of-text special token); its pad id is the
    tokenizer's own. The whole tokenizer is saved with the run, so eval never needs the source again.
    """

    name = "pretrained"
    trains_on_texts = False

    def __init__(self, name_or_path: str, add_special_tokens: bool = True) -> None:
        self.name_or_path = str(name_or_path)
        self.add_special_tokens = add_special_tokens
        self._tokenizer: Tokenizer | None = None
        self._pad_token: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"name_or_path": self.name_or_path, "add_special_tokens": self.add_special_tokens}

    def fit(self, texts: Iterable[str]) -> None:
        source = Path(self.name_or_path).expanduser()
        folder = source if source.is_dir() else source.parent
        if source.is_dir() or source.suffix == ".json":
            file = source / "tokenizer.json" if source.is_dir() else source
            if not file.is_file():
                raise SeqlabError(f"{file}: no such file; a pretrained tokenizer folder needs tokenizer.json (saved by a fast Hugging Face tokenizer)")
            tokenizer = Tokenizer.from_file(str(file))
        else:
            try:
                tokenizer = Tokenizer.from_pretrained(self.name_or_path)
            except Exception as error:  # the hub client raises many kinds when offline or the name is wrong
                raise SeqlabError(
                    f"tokenizer {self.name_or_path!r} is neither a local folder with tokenizer.json nor loadable from the Hugging Face hub "
                    f"({type(error).__name__}); pass a local path"
                ) from None
        self._pad_token = _pad_token_of(tokenizer, folder if source.exists() else None)
        if self._pad_token is None:
            raise SeqlabError(f"tokenizer {self.name_or_path!r} has no pad token (looked for {', '.join(KNOWN_PAD_TOKENS)})")
        self._set(tokenizer)

    def _set(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer

    @property
    def is_fitted(self) -> bool:
        return self._tokenizer is not None

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        tokenizer = self._fitted()
        if max_length:
            # The tokenizer's own truncation keeps [SEP]/</s> at the end, which slicing would cut.
            tokenizer.enable_truncation(max_length)
        try:
            encodings = tokenizer.encode_batch_fast(list(texts), add_special_tokens=self.add_special_tokens)
        finally:
            tokenizer.no_truncation()
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self._fitted().decode(list(ids), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self._fitted().get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return self._fitted().token_to_id(self._pad_token)

    @property
    def pad_token(self) -> str:
        return self._pad_token

    def standard(self) -> Tokenizer:
        tokenizer = Tokenizer.from_str(self._fitted().to_str())
        if not self.add_special_tokens:
            # Without its post-processor the file adds no special tokens, so a plain `encode` matches.
            tokenizer.post_processor = None
        return tokenizer

    def load_standard(self, tokenizer: Tokenizer, pad_token: str) -> None:
        if tokenizer.token_to_id(pad_token) is None:
            raise ValueError(f"its vocabulary has no pad token {pad_token!r}")
        self._pad_token = pad_token
        self._set(tokenizer)

    def state(self) -> dict[str, str]:
        return {"tokenizer": self._fitted().to_str(), "pad_token": self._pad_token}

    def load_state(self, state: dict[str, str]) -> None:
        self._pad_token = state["pad_token"]
        self._set(Tokenizer.from_str(state["tokenizer"]))

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("PretrainedTokenizer must be loaded (fit) before use")
        return self._tokenizer


def _pad_token_of(tokenizer: Tokenizer, folder: Path | None) -> str | None:
    """The pad token the tokenizer's files declare, else its padding setting, else a well-known one it has."""
    if folder is not None:
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            path = folder / name
            if path.is_file():
                pad = json.loads(path.read_text()).get("pad_token")
                pad = pad.get("content") if isinstance(pad, dict) else pad
                if isinstance(pad, str) and tokenizer.token_to_id(pad) is not None:
                    return pad
    if tokenizer.padding and tokenizer.token_to_id(tokenizer.padding["pad_token"]) is not None:
        return tokenizer.padding["pad_token"]
    return next((token for token in KNOWN_PAD_TOKENS if tokenizer.token_to_id(token) is not None), None)


# The only classes a saved tokenizer can name.
TOKENIZERS: dict[str, type[TextTokenizer]] = {
    WordTokenizer.name: WordTokenizer,
    BPETokenizer.name: BPETokenizer,
    CharTokenizer.name: CharTokenizer,
    PretrainedTokenizer.name: PretrainedTokenizer,
}

# Files saved before tokenizers had names hold the class's import path under "class".
OLD_CLASS_PATHS = {
    "seqlab.data.tokenizers.WordTokenizer": "word",
    "seqlab.data.tokenizers.BPETokenizer": "bpe",
    "seqlab.data.tokenizers.CharTokenizer": "char",
    "seqlab.data.tokenizers.PretrainedTokenizer": "pretrained",
}
