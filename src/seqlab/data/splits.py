"""Seeded, stratified splits: a validation share of the training data, or fold i of K folds (validation or test)."""

from collections.abc import Sequence

import numpy as np

from seqlab.errors import SeqlabError


def _shuffled_groups(labels: Sequence, seed: int) -> list[np.ndarray]:
    """Indices of each label (a single group when `labels` is all None), each shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    keys = np.array(["" if label is None else str(label) for label in labels])
    return [rng.permutation(np.flatnonzero(keys == key)) for key in sorted(set(keys.tolist()))]


def stratified_split(labels: Sequence, val_fraction: float, seed: int, name: str = "data.val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices, each label split in the same proportion (`name` is the setting, for errors)."""
    if not 0.0 < val_fraction < 1.0:
        raise SeqlabError(f"{name} must be between 0 and 1, got {val_fraction}")
    train, val = [], []
    for group in _shuffled_groups(labels, seed):
        n_val = int(round(len(group) * val_fraction))
        val.append(group[:n_val])
        train.append(group[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def check_holdout_fractions(val_fraction: float | None, test_fraction: float | None) -> None:
    """Refuse validation and test shares of one training file (None: not drawn) that leave no training
    data, naming the values as the user gave them."""
    for name, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if value is not None and not 0.0 < value < 1.0:
            raise SeqlabError(f"{name} must be between 0 and 1, got {value}")
    if val_fraction is not None and test_fraction is not None and val_fraction + test_fraction >= 1.0:
        raise SeqlabError(
            f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} = {val_fraction + test_fraction:g} "
            "leaves no training data; their sum must be below 1"
        )


def check_fold(num_folds: int, fold: int | None) -> None:
    if num_folds < 2:
        raise SeqlabError(f"data.num_folds must be at least 2, got {num_folds}")
    if fold is None or not 0 <= fold < num_folds:
        raise SeqlabError(f"data.fold must be in 0..{num_folds - 1} for data.num_folds={num_folds}, got {fold}")


FOLD_SPLITS = ("validation", "test")


def check_fold_split(fold_split: str, num_folds: int | None) -> None:
    """`data.fold_split`: which split fold i of K becomes; "test" (cross-validation for evaluation) needs the folds."""
    if fold_split not in FOLD_SPLITS:
        raise SeqlabError(f"data.fold_split must be validation or test, got {fold_split!r} (cv.protocol sets it)")
    if fold_split == "test" and num_folds is None:
        raise SeqlabError("data.fold_split=test needs data.num_folds and data.fold: use cv.folds=K, or -m crossval=multirun")


def kfold_split(labels: Sequence, num_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices outside fold `fold` of a seeded, stratified K-fold split, and those in it (the fold
    that validates, or under `data.fold_split=test` tests).

    The K folds partition the data exactly; each label is spread evenly over them.
    """
    check_fold(num_folds, fold)
    fold_of = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for group in _shuffled_groups(labels, seed):
        # Continue the round-robin across labels so small labels don't all land in fold 0.
        fold_of[group] = (np.arange(len(group)) + offset) % num_folds
        offset += len(group)
    return np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
