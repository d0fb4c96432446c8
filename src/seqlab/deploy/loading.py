"""The predictor of a checkpoint or a bundle, whichever kind of model it holds (a classifier, a fold
ensemble or a translation model): seqlab-predict and seqlab-serve read each file, and check each
bundle's checksums, once."""

from collections.abc import Iterable
from typing import Any

from seqlab.deploy.bundle import open_bundle
from seqlab.deploy.predictors import Predictor, classifier_from_bundle, predictor_from_run
from seqlab.deploy.translation import TRANSLATION, holds_translation_model, translator_from_bundle, translator_from_run
from seqlab.runs.record import read_run


def predictor_for_checkpoint(ckpt_path: str, paths: Any, command: str, device: str = "cpu", trusted_packages: Iterable[str] = ()) -> Predictor:
    saved = read_run(ckpt_path, trusted_packages=trusted_packages)
    if holds_translation_model(saved):
        return translator_from_run(saved, paths, device=device)
    return predictor_from_run(saved, ckpt_path, paths, command, device)


def predictor_for_bundle(bundle_dir: str, command: str, device: str = "cpu", trusted_packages: Iterable[str] = ()) -> Predictor:
    opened = open_bundle(bundle_dir, trusted_packages)
    if opened.kind == TRANSLATION:
        return translator_from_bundle(opened, device)
    return classifier_from_bundle(opened, command, device)
