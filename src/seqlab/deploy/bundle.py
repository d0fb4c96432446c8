"""Exported bundles: a directory that serves predictions without the checkpoint or the training data.

    manifest.json      format, kind, the model's token limit, versions, sha256 of every other file
    model.onnx         (format onnx) inputs input_ids (B, T) and lengths (B,), output probs (B, C)
    model.safetensors  (format safetensors) the task's weights, with config.json: the run's config
    encoder.onnx, decoder_step.onnx  (a translation model, format onnx) in place of model.onnx: its
                       encoder and one decoder step (seqlab.deploy.translation_onnx)
    tokenizer.json     the fitted tokenizer as a standard Hugging Face file, padding and truncating as seqlab does
    seqlab_tokenizer.json  seqlab's name for the tokenizer, its settings and its pad token
    target_tokenizer.json, seqlab_target_tokenizer.json  (a translation model with a tokenizer per
                       side) the target side's tokenizer, as the two above; tokenizer.json is the source side's
    labels.json        each label name with its output index, as in the run dir

A fold ensemble's bundle (`format`, `kind`, `max_length` and labels.json as above) holds each member's
model, tokenizer and labels in members/<k>/, laid out as a bundle of one model without its own
manifest; the manifest lists the members under `members` (each with its token limit and source
checkpoint) and every file, members' too, under `files`. Predictions average the members' probabilities.

Bundles written before seqlab_tokenizer.json existed hold seqlab's own format in tokenizer.json
(`{"name", "settings", "state"}`) and still load.

A bundle is checked whole before use: a missing file, a wrong checksum or a file outside the bundle
is refused, and so is a
tokenizer or config.json that seqlab's own tables would not build (a bundle is data from whoever
made it, and its checksums are only as trustworthy as its maker).
"""

import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from omegaconf import OmegaConf

from seqlab import runs
from seqlab.data.download import sha256_of
from seqlab.data.labels import read_label_names
from seqlab.data.tokenizers import TextTokenizer, read_standard_tokenizer, tokenizer_from_dict, write_standard_tokenizer
from seqlab.errors import SeqlabError
from seqlab.runs.legacy import upgrade_recorded_config
from seqlab.runs.recorded_config import check_recorded_config

ONNX = "onnx"
SAFETENSORS = "safetensors"
FORMATS = (ONNX, SAFETENSORS)
MANIFEST = "manifest.json"
MODEL_FILES = {ONNX: "model.onnx", SAFETENSORS: "model.safetensors"}
TRANSLATION = "translation"  # the `kind` of a translation model's bundle
TRANSLATION_ONNX_FILES = ("encoder.onnx", "decoder_step.onnx")
TOKENIZER = "tokenizer.json"
TOKENIZER_SETTINGS = "seqlab_tokenizer.json"
TARGET_TOKENIZER = "target_tokenizer.json"
TARGET_TOKENIZER_SETTINGS = "seqlab_target_tokenizer.json"
LABELS = "labels.json"
CONFIG = "config.json"
MEMBERS_DIR = "members"
MEMBER_DIR = re.compile(r"members/\d+")
BUNDLE_VERSION = 1


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def max_length(self) -> int | None:
        return self.manifest.get("max_length")

    @property
    def members(self) -> list["Bundle"]:
        """A fold ensemble's members, each read as a bundle of one model; empty for a single model."""
        return [member_bundle(self.path, self.manifest, entry) for entry in self.manifest.get("members") or []]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILES[self.format]

    def tokenizer(self) -> TextTokenizer:
        return read_bundle_tokenizer(self.path, self.manifest["files"])

    def target_tokenizer(self) -> TextTokenizer | None:
        """A translation model's target-side tokenizer when it has its own; None when tokenizer.json serves both sides."""
        files = self.manifest["files"]
        if TARGET_TOKENIZER not in files:
            return None
        if TARGET_TOKENIZER_SETTINGS not in files:
            raise SeqlabError(f"bundle {self.path}: {MANIFEST} lists {TARGET_TOKENIZER} without {TARGET_TOKENIZER_SETTINGS}; export the bundle again")
        return read_standard_tokenizer(self.path / TARGET_TOKENIZER, self.path / TARGET_TOKENIZER_SETTINGS)

    def label_names(self) -> list[str]:
        return read_label_names(self.path / LABELS)

    def torch_task(self) -> Any:
        """The task rebuilt from config.json with the weights of model.safetensors, in eval mode."""
        from safetensors.torch import load_model  # the deploy extra's, needed by safetensors bundles only

        config = OmegaConf.create(upgrade_recorded_config(json.loads((self.path / CONFIG).read_text())))
        task = runs.build_task(config, runs.restore_datamodule(config, self.tokenizer(), self.label_names()))
        load_model(task, str(self.model_path))
        return task.eval()


def open_bundle(bundle_dir: str | Path, trusted_packages: Iterable[str] = ()) -> Bundle:
    """The bundle at `bundle_dir`, after checking that every file is present with its recorded checksum
    and that its config names only seqlab's classes and those of the user's `trusted_packages`."""
    path = Path(bundle_dir)
    if not path.is_dir():
        raise SeqlabError(f"bundle {path} does not exist (seqlab-export writes one)")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise SeqlabError(f"bundle {path} has no {MANIFEST}: it is not a seqlab bundle or it is incomplete")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        bundle_format = manifest["format"]
        manifest["kind"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SeqlabError(f"bundle {path}: {MANIFEST} is damaged ({type(error).__name__}: {error})") from None
    if bundle_format not in FORMATS:
        raise SeqlabError(f"bundle {path}: unknown format {bundle_format!r} (known: {', '.join(FORMATS)})")
    for name, entry in sorted(files.items()):
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or (len(parts) > 1 and not MEMBER_DIR.fullmatch("/".join(parts[:2]))):
            raise SeqlabError(f"bundle {path}: {MANIFEST} lists {name}, which is not a file of a seqlab bundle; export the bundle again")
        file_path = path / name
        if not file_path.is_file():
            raise SeqlabError(f"bundle {path} is missing {name}; export the bundle again")
        if sha256_of(file_path) != entry["sha256"]:
            raise SeqlabError(f"bundle {path}: {name} does not match its sha256 checksum in {MANIFEST} (changed or damaged); export the bundle again")
    bundle = Bundle(path, manifest)
    try:
        members = bundle.members
    except (KeyError, TypeError, AttributeError) as error:
        raise SeqlabError(f"bundle {path}: {MANIFEST} is damaged ({type(error).__name__}: {error})") from None
    for holder in [bundle, *members] if members else []:  # an ensemble's labels, and each member's own
        if LABELS not in holder.manifest["files"]:
            raise SeqlabError(f"bundle {holder.path}: {MANIFEST} does not list {LABELS}; export the bundle again")
    for model in members or [bundle]:
        check_model_files(model, trusted_packages)
    return bundle


def member_bundle(path: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> Bundle:
    """A member of a fold ensemble's bundle, as a bundle of one model in its members/<k>/ dir."""
    member_dir = entry["dir"]
    if not isinstance(member_dir, str) or not MEMBER_DIR.fullmatch(member_dir):
        raise SeqlabError(f"bundle {path}: {MANIFEST} names a member dir {member_dir!r}; members are {MEMBERS_DIR}/<k>")
    prefix = member_dir + "/"
    files = {name.removeprefix(prefix): file for name, file in manifest["files"].items() if name.startswith(prefix)}
    return Bundle(path / member_dir, {"format": manifest["format"], "kind": manifest["kind"], "max_length": entry.get("max_length"), "files": files})


def check_model_files(bundle: Bundle, trusted_packages: Iterable[str]) -> None:
    """The files of a bundle's one model are all listed, and its tokenizer and config are seqlab's own."""
    files = bundle.manifest["files"]
    model_files = TRANSLATION_ONNX_FILES if (bundle.kind, bundle.format) == (TRANSLATION, ONNX) else (MODEL_FILES[bundle.format],)
    needed = {*model_files, TOKENIZER} | ({CONFIG} if bundle.format == SAFETENSORS else set())
    unlisted = sorted(needed - set(files))
    if unlisted:
        raise SeqlabError(f"bundle {bundle.path}: {MANIFEST} does not list {', '.join(unlisted)}; export the bundle again")
    read_bundle_tokenizer(bundle.path, files)
    bundle.target_tokenizer()
    if bundle.format == SAFETENSORS:
        check_recorded_config(_read_json(bundle.path / CONFIG), str(bundle.path / CONFIG), trusted_packages)


def read_bundle_tokenizer(path: Path, files: dict[str, Any]) -> TextTokenizer:
    if TOKENIZER_SETTINGS in files:
        return read_standard_tokenizer(path / TOKENIZER, path / TOKENIZER_SETTINGS)
    # A bundle from before seqlab_tokenizer.json: tokenizer.json in seqlab's own format.
    return tokenizer_from_dict(_read_json(path / TOKENIZER), str(path / TOKENIZER))


def write_bundle_tokenizer(
    bundle_dir: Path, tokenizer: TextTokenizer, max_length: int | None, standard_name: str = TOKENIZER, settings_name: str = TOKENIZER_SETTINGS
) -> None:
    """Write `tokenizer` as the bundle's tokenizer.json and seqlab_tokenizer.json, or under the names given
    (a target side's own: TARGET_TOKENIZER, TARGET_TOKENIZER_SETTINGS)."""
    write_standard_tokenizer(tokenizer, bundle_dir / standard_name, bundle_dir / settings_name, max_length)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SeqlabError(f"{path} is not valid JSON ({error}); export the bundle again") from None


@contextmanager
def bundle_writer(output_dir: str | Path, overwrite: bool) -> Iterator[Path]:
    """A temporary directory beside `output_dir` to write the bundle in; renamed to `output_dir` only
    when the block finishes, so a failed export leaves nothing behind."""
    target = Path(output_dir)
    if target.exists() and not overwrite:
        raise SeqlabError(f"output_dir {target} already exists; choose another or add overwrite=true")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's private 0700 would otherwise stay on the bundle
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_manifest(bundle_dir: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json: `fields`, the versions of the packages involved, and a checksum of every
    file (a fold ensemble's members' files by their paths in the bundle, members/<k>/...)."""
    files = {
        path.relative_to(bundle_dir).as_posix(): {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        for path in sorted(bundle_dir.rglob("*"))
        if path.is_file() and path != bundle_dir / MANIFEST
    }
    manifest = {
        "bundle_version": BUNDLE_VERSION,
        **fields,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(("seqlab", "torch", "tokenizers", "onnx", "onnxruntime", "onnxscript", "safetensors")),
        "files": files,
    }
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
