"""A movie-review sentiment dataset generated offline, so the default run needs no download.

Reviews are one to three opinion clauses ("the plot was not very dull") among neutral ones; the
label is the majority opinion, and negation flips a clause, so word order matters as it does in
real reviews.
"""

import random

from seqlab.data.classification import LabelledTexts, TextClassificationDataModule

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "delightful", "charming", "brilliant", "enjoyable", "moving", "clever", "gripping"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "tedious", "clumsy", "bland", "painful", "weak", "silly", "predictable"]
SUBJECTS = [
    "movie",
    "film",
    "plot",
    "acting",
    "script",
    "cast",
    "ending",
    "soundtrack",
    "direction",
    "dialogue",
    "pacing",
    "story",
    "lead actor",
    "camera work",
]
INTENSIFIERS = ["", "", "very", "really", "quite", "truly", "rather", "utterly"]
VERBS = ["was", "is", "felt", "seemed"]
NEUTRAL = [
    "i saw it on a {day}",
    "it runs about {minutes} minutes",
    "my {relative} came along",
    "we watched it at home",
    "the theater was {state}",
    "it is based on a novel",
]
DAYS = ["monday", "friday", "sunday", "rainy evening"]
RELATIVES = ["sister", "brother", "friend", "father", "mother"]
STATES = ["crowded", "empty", "cold", "half full"]
CONNECTIVES = [" and ", " but ", " , ", " ; also "]


def _opinion(rng: random.Random, positive: bool) -> str:
    negated = rng.random() < 0.25
    words = POSITIVE if positive != negated else NEGATIVE
    parts = ["the", rng.choice(SUBJECTS), rng.choice(VERBS), "not" if negated else "", rng.choice(INTENSIFIERS), rng.choice(words)]
    return " ".join(part for part in parts if part)


def _neutral(rng: random.Random) -> str:
    return rng.choice(NEUTRAL).format(day=rng.choice(DAYS), minutes=rng.randrange(80, 180), relative=rng.choice(RELATIVES), state=rng.choice(STATES))


def generate_reviews(count: int, seed: int) -> LabelledTexts:
    """`count` reviews, half positive, half negative, reproducible from `seed`."""
    rng = random.Random(seed)
    texts, labels = [], []
    for index in range(count):
        positive = index % 2 == 0
        n_opinions = rng.choice([1, 3])
        n_agree = n_opinions // 2 + 1 if n_opinions == 3 and rng.random() < 0.5 else n_opinions
        clauses = [_opinion(rng, positive) for _ in range(n_agree)]
        clauses += [_opinion(rng, not positive) for _ in range(n_opinions - n_agree)]
        clauses += [_neutral(rng) for _ in range(rng.randrange(0, 3))]
        rng.shuffle(clauses)
        text = clauses[0]
        for clause in clauses[1:]:
            text += rng.choice(CONNECTIVES) + clause
        texts.append(text)
        labels.append("positive" if positive else "negative")
    order = list(range(count))
    rng.shuffle(order)
    return LabelledTexts([texts[i] for i in order], [labels[i] for i in order])


class SyntheticSentimentDataModule(TextClassificationDataModule):
    """Generated reviews: `train_size` for training, `val_size` and `test_size` held out."""

    def __init__(self, train_size: int = 4000, val_size: int = 500, test_size: int = 1000, seed: int = 1234, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed

    def read_splits(self) -> dict[str, LabelledTexts]:
        # Each split has its own stream, so changing one size never changes the others.
        return {name: generate_reviews(size, self.seed + offset) for offset, (name, size) in enumerate(self.sizes.items())}
