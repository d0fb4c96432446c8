"""Two translation baselines on a preset's own test split, for the scale of its BLEU and chrF.

- copy the source: the source text as its own translation (names, numbers and punctuation match);
- word for word: each source word replaced by the target word it co-occurs with most (Dice's
  coefficient over the training pairs, words seen at least twice); other words copied.

Both are scored with sacreBLEU on the same detokenised references as `task=seq2seq`'s test.

    python scripts/seq2seq_baselines.py [experiment=bible_en_es_gru] [paths.data_dir=../shared/data] [other overrides]
"""

import re
import sys
from collections import Counter

import sacrebleu
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def detokenise(tokens: list[str]) -> str:
    """Words joined by spaces, punctuation attached to the word before it."""
    return re.sub(r" ([^\w\s])", r"\1", " ".join(tokens))


def word_for_word_table(sources: list[str], targets: list[str], min_count: int = 2) -> dict[str, str]:
    """Each source word's target word of highest Dice coefficient, 2·c(s,t) / (c(s) + c(t)), counted per pair."""
    source_counts, target_counts, pair_counts = Counter(), Counter(), Counter()
    for source, target in zip(sources, targets):
        source_words, target_words = set(words(source)), set(words(target))
        source_counts.update(source_words)
        target_counts.update(target_words)
        pair_counts.update((s, t) for s in source_words for t in target_words)
    best: dict[str, tuple[float, str]] = {}
    for (s, t), count in pair_counts.items():
        if count < min_count:
            continue
        dice = 2 * count / (source_counts[s] + target_counts[t])
        if dice > best.get(s, (0.0, ""))[0]:
            best[s] = (dice, t)
    return {s: t for s, (_, t) in best.items()}


def main(overrides: list[str]) -> None:
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides or ["experiment=bible_en_es_gru", "paths.data_dir=../shared/data"])
    pairs = instantiate(cfg.data).text_pairs()
    train, test = pairs["train"], pairs["test"]
    table = word_for_word_table(train.sources, train.targets)
    hypotheses = {
        "copy the source": test.sources,
        "word for word": [detokenise([table.get(w, w) for w in words(source)]) for source in test.sources],
    }
    print(f"{len(train.sources)} training pairs, {len(test.sources)} test pairs; a table of {len(table)} source words")
    print("| baseline | BLEU | chrF |\n| --- | --- | --- |")
    for name, texts in hypotheses.items():
        bleu = sacrebleu.corpus_bleu(texts, [test.targets]).score
        chrf = sacrebleu.corpus_chrf(texts, [test.targets]).score
        print(f"| {name} | {bleu:.2f} | {chrf:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
