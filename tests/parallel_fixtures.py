"""Tiny generated parallel text: sentences of a made-up language and their word-for-word translations,
grouped in "books" like the Bible pairs (`Book 1:3`)."""

import csv
import random
from pathlib import Path

# Each source word has one target word, so a model learns the pairs in seconds.
LEXICON = {
    "the": "el",
    "dog": "perro",
    "cat": "gato",
    "sees": "ve",
    "eats": "come",
    "a": "un",
    "big": "grande",
    "small": "chico",
    "house": "casa",
    "bird": "ave",
    "runs": "corre",
    "red": "rojo",
}


def parallel_rows(count: int, seed: int = 0, books: tuple[str, ...] = ("Alpha", "Beta", "Gamma", "Delta")) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = list(LEXICON)
    rows = []
    for index in range(count):
        sentence = [rng.choice(words) for _ in range(rng.randint(3, 7))]
        book = books[index % len(books)]
        rows.append({"ref": f"{book} {index // len(books) + 1}:1", "en": " ".join(sentence), "es": " ".join(LEXICON[w] for w in sentence)})
    return rows


def write_parallel_tsv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path
