"""Reviews built from a few words of praise and complaint: a data source of mymodels' own."""

import random

from seqlab.data.classification import LabelledTexts, TextClassificationDataModule

WORDS = {"positive": ["great", "moving", "wonderful", "superb"], "negative": ["dull", "boring", "awful", "clumsy"]}
FILLER = ["the", "film", "was", "a", "plot", "and", "acting", "really"]


class TinyReviewsDataModule(TextClassificationDataModule):
    """`size` seeded reviews in one training split; seqlab holds out validation and test from it."""

    def __init__(self, size: int = 600, seed: int = 0, **settings) -> None:
        super().__init__(**settings)
        self.size, self.seed = size, seed

    def read_splits(self) -> dict[str, LabelledTexts]:
        rng = random.Random(self.seed)
        labels = [rng.choice(sorted(WORDS)) for _ in range(self.size)]
        texts = [" ".join(rng.sample(FILLER, 4) + [rng.choice(WORDS[label])]) for label in labels]
        return {"train": LabelledTexts(texts, labels)}
