"""What seqlab reads from files and requests that others wrote: checkpoints, bundles and HTTP bodies are
data, built only through seqlab's own tables, and refused in one line otherwise.

A crafted file here asks for a marker file to be made: by `touch` (through subprocess.Popen) as its
tokenizer, or by `open(marker, "w")` as its data module, which would as well empty any file the user
can write. The marker must never appear.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST, REPO, free_port, read_metrics, run_cli, running_service
from seqlab.errors import SeqlabError

pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A classifier trained by seqlab-train and exported to ONNX by seqlab-export."""
    root = tmp_path_factory.mktemp("trained")
    run_dir = root / "run"
    result = run_cli("seqlab-train", *FAST, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = str(run_dir / read_metrics(run_dir)["ckpt_path"])  # metrics.json may name it relative to the run dir
    bundle = root / "bundle"
    result = run_cli("seqlab-export", f"ckpt_path={ckpt}", f"output_dir={bundle}", f"hydra.run.dir={root / 'export'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "run_dir": run_dir, "ckpt": ckpt, "bundle": bundle}


def opens_for_writing(marker: Path) -> dict:
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def popen_tokenizer(marker: Path) -> dict:
    return {"class": "subprocess.Popen", "settings": {"args": f"touch {marker}", "shell": True}, "state": {}}


def crafted_checkpoint(ckpt: str, path: Path, change) -> Path:
    """A copy of `ckpt` whose run record `change` rewrote."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    change(checkpoint["seqlab"])
    torch.save(checkpoint, path)
    return path


def crafted_bundle(bundle: Path, path: Path, files: dict[str, str], **manifest_fields) -> Path:
    """A copy of `bundle` with `files` written into it, manifest.json's checksums recomputed to match
    and its `manifest_fields` replaced."""
    from seqlab.data.download import sha256_of

    shutil.copytree(bundle, path)
    manifest = {**json.loads((path / "manifest.json").read_text()), **manifest_fields}
    for name, text in files.items():
        (path / name).write_text(text)
        manifest["files"][name] = {"sha256": sha256_of(path / name), "bytes": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def assert_refused_in_one_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in expected:
        assert fragment in errors[0], errors[0]
    return errors[0]


def command_line(command: str, source: Path, tmp_path: Path) -> list[str]:
    """`command` run on the checkpoint or bundle `source`, with whatever else it needs."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a moving film\n")
    needs = {
        "seqlab-eval": [f"ckpt_path={source}"],
        "seqlab-predict": [f"ckpt_path={source}", f"input={texts}", f"output={tmp_path / 'out.jsonl'}"],
        "seqlab-predict bundle": [f"bundle={source}", f"input={texts}", f"output={tmp_path / 'out.jsonl'}"],
        "seqlab-export": [f"ckpt_path={source}", f"output_dir={tmp_path / 'exported'}"],
        "seqlab-generate": [f"ckpt_path={source}", "prompt=the", "max_new_tokens=2"],
        "seqlab-serve": [f"bundle={source}", f"port={free_port()}"],
    }[command]
    return [command.split()[0], *needs, f"hydra.run.dir={tmp_path / 'run'}"]


# -- tokenizers are chosen by name from seqlab's own table ------------------------------------


def checkpoint_with_popen_tokenizer(command: str) -> "Callable[[dict, Path], tuple[list[str], list[str]]]":
    def prepare(trained: dict, case_dir: Path) -> tuple[list[str], list[str]]:
        def change(record):
            record["tokenizer"] = popen_tokenizer(case_dir / "marker")
            if command == "seqlab-generate":
                record["label_names"] = None  # a language model, which seqlab-generate loads

        ckpt = crafted_checkpoint(trained["ckpt"], case_dir / "crafted.ckpt", change)
        return command_line(command, ckpt, case_dir), [str(ckpt), "'subprocess.Popen'", "word, bpe, char, pretrained"]

    return prepare


def old_layout_bundle(bundle: Path, path: Path) -> Path:
    """A copy of `bundle` as seqlab wrote them before seqlab_tokenizer.json: one tokenizer.json in seqlab's format."""
    shutil.copytree(bundle, path)
    (path / "seqlab_tokenizer.json").unlink()
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["seqlab_tokenizer.json"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def bundle_with_popen_tokenizer(command: str, crafted_file: str) -> "Callable[[dict, Path], tuple[list[str], list[str]]]":
    def prepare(trained: dict, case_dir: Path) -> tuple[list[str], list[str]]:
        source = trained["bundle"] if crafted_file == "seqlab_tokenizer.json" else old_layout_bundle(trained["bundle"], case_dir / "old")
        name = crafted_file.split()[0]
        bundle = crafted_bundle(source, case_dir / "bundle", {name: json.dumps(popen_tokenizer(case_dir / "marker"))})
        return command_line(command, bundle, case_dir), [str(bundle / name), "'subprocess.Popen'"]

    return prepare


def bundle_whose_standard_tokenizer_file_is_seqlabs_format(trained: dict, case_dir: Path) -> tuple[list[str], list[str]]:
    """tokenizer.json beside seqlab_tokenizer.json is read only as a Hugging Face tokenizer, never for a name."""
    bundle = crafted_bundle(trained["bundle"], case_dir / "bundle", {"tokenizer.json": json.dumps(popen_tokenizer(case_dir / "marker"))})
    return command_line("seqlab-predict bundle", bundle, case_dir), [str(bundle / "tokenizer.json"), "not a word tokenizer that seqlab wrote"]


def test_tokenizer_files_name_the_tokenizer_and_old_class_path_files_still_load(trained, tmp_path):
    from seqlab.data.tokenizers import load_tokenizer
    from seqlab.deploy.predictors import predictor_from_checkpoint

    saved = json.loads((trained["run_dir"] / "tokenizer.json").read_text())
    assert saved["name"] == "word" and "class" not in saved
    old = {"class": "seqlab.data.tokenizers.WordTokenizer", "settings": saved["settings"], "state": saved["state"]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    texts = ["a moving film", "the plot was dull and slow"]
    assert load_tokenizer(tmp_path / "old.json").encode_batch(texts) == load_tokenizer(trained["run_dir"] / "tokenizer.json").encode_batch(texts)

    # A checkpoint written before the names predicts exactly what the same checkpoint with them does.
    def old_form(record):
        record["tokenizer"] = {"class": "seqlab.data.tokenizers.WordTokenizer", **{k: v for k, v in record["tokenizer"].items() if k != "name"}}

    old_ckpt = crafted_checkpoint(trained["ckpt"], tmp_path / "old.ckpt", old_form)
    paths = OmegaConf.create({"data_dir": str(tmp_path)})
    assert predictor_from_checkpoint(str(old_ckpt), paths, "test").predict(texts) == predictor_from_checkpoint(trained["ckpt"], paths, "test").predict(texts)


@pytest.mark.parametrize("name", ["word", "bpe", "char"])
def test_each_tokenizer_round_trips_under_its_name(name):
    from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, tokenizer_from_dict

    tokenizer = {"word": WordTokenizer, "bpe": BPETokenizer, "char": CharTokenizer}[name]()
    assert tokenizer.identity()["name"] == name  # cache keys use the name too
    tokenizer.fit(["a moving film", "the plot was dull"] * 5)
    saved = json.loads(json.dumps(tokenizer.to_dict()))
    assert saved["name"] == name
    assert tokenizer_from_dict(saved, "test").encode_batch(["a dull film"]) == tokenizer.encode_batch(["a dull film"])


def test_settings_a_tokenizer_does_not_take_are_one_line(trained, tmp_path):
    from seqlab.data.tokenizers import load_tokenizer

    saved = json.loads((trained["run_dir"] / "tokenizer.json").read_text())
    saved["settings"]["shell"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(saved))
    with pytest.raises(SeqlabError, match=r"tokenizer.json: .*'shell'") as refused:
        load_tokenizer(tmp_path / "tokenizer.json")
    assert "\n" not in str(refused.value)


# -- recorded configs name only seqlab's classes and the constructors its conf/ uses ----------


def checkpoint_whose_config_names_another_target(trained: dict, case_dir: Path) -> tuple[list[str], list[str]]:
    """seqlab-predict, -export and -generate check the record as seqlab-eval does (runs.read_run)."""

    def change(record):
        record["config"]["data"] = opens_for_writing(case_dir / "marker")

    ckpt = crafted_checkpoint(trained["ckpt"], case_dir / "crafted.ckpt", change)
    return command_line("seqlab-eval", ckpt, case_dir), [str(ckpt), "data._target_", "'builtins.open'"]


def serve_on_port(port: str) -> "Callable[[dict, Path], tuple[list[str], list[str]]]":
    def prepare(trained: dict, case_dir: Path) -> tuple[list[str], list[str]]:
        return ["seqlab-serve", f"bundle={trained['bundle']}", f"port={port}", f"hydra.run.dir={case_dir / 'run'}"], [f"port={port}", "1 to 65535"]

    return prepare


# Each case writes its crafted input in a dir of its own and names the command that must refuse it
# and what the one error line must say. They run side by side in `refusals`: each is a fresh Python
# process, and importing torch is most of its time.
REFUSALS: "dict[str, Callable[[dict, Path], tuple[list[str], list[str]]]]" = {
    **{
        f"checkpoint tokenizer, {command}": checkpoint_with_popen_tokenizer(command)
        for command in ("seqlab-eval", "seqlab-predict", "seqlab-export", "seqlab-generate")
    },
    **{
        f"bundle {crafted_file}, {command}": bundle_with_popen_tokenizer(command, crafted_file)
        for command in ("seqlab-predict bundle", "seqlab-serve")
        for crafted_file in ("seqlab_tokenizer.json", "tokenizer.json of an old bundle")
    },
    "bundle tokenizer.json in seqlab's format": bundle_whose_standard_tokenizer_file_is_seqlabs_format,
    "checkpoint config target": checkpoint_whose_config_names_another_target,
    **{f"serve port {port}": serve_on_port(port) for port in ("99999", "-1")},
}


@pytest.fixture(scope="module")
def refusals(trained, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, list[str], Path]]:
    """Every case of REFUSALS run: its result, the fragments its error must hold, and its marker."""
    root = tmp_path_factory.mktemp("refusals")
    prepared = {}
    for name, prepare in REFUSALS.items():
        case_dir = root / re.sub(r"\W+", "_", name)
        case_dir.mkdir()
        prepared[name] = (*prepare(trained, case_dir), case_dir)

    def run(name: str) -> subprocess.CompletedProcess:
        args, _, case_dir = prepared[name]
        return run_cli(*args, cwd=case_dir, timeout=300)

    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8)) as pool:
        results = dict(zip(prepared, pool.map(run, prepared)))
    time.sleep(0.2)  # a shell started in the background would have touched its marker by now
    return {name: (results[name], expected, case_dir / "marker") for name, (_, expected, case_dir) in prepared.items()}


def assert_refused_without_running_code(refusals: dict, name: str) -> None:
    result, expected, marker = refusals[name]
    assert_refused_in_one_line(result, *expected)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["seqlab-eval", "seqlab-predict", "seqlab-export", "seqlab-generate"])
def test_a_checkpoint_whose_tokenizer_names_another_class_is_refused(refusals, command):
    assert_refused_without_running_code(refusals, f"checkpoint tokenizer, {command}")


@pytest.mark.parametrize("crafted_file", ["seqlab_tokenizer.json", "tokenizer.json of an old bundle"])
@pytest.mark.parametrize("command", ["seqlab-predict bundle", "seqlab-serve"])
def test_a_bundle_whose_tokenizer_names_another_class_is_refused(refusals, command, crafted_file):
    assert_refused_without_running_code(refusals, f"bundle {crafted_file}, {command}")


def test_a_bundle_whose_standard_tokenizer_file_is_seqlabs_format_is_refused(refusals):
    assert_refused_without_running_code(refusals, "bundle tokenizer.json in seqlab's format")


def test_a_checkpoint_whose_config_names_another_target_is_refused(refusals):
    assert_refused_without_running_code(refusals, "checkpoint config target")


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(refusals, port):
    assert_refused_without_running_code(refusals, f"serve port {port}")


def test_a_safetensors_bundle_whose_config_names_another_target_is_refused(trained, tmp_path):
    from seqlab.deploy.predictors import predictor_from_bundle

    marker = tmp_path / "marker"
    files = {"config.json": json.dumps({"data": opens_for_writing(marker)}), "model.safetensors": "weights"}
    bundle = crafted_bundle(trained["bundle"], tmp_path / "bundle", files, format="safetensors")
    with pytest.raises(SeqlabError, match=r"config.json: data._target_ 'builtins.open'"):
        predictor_from_bundle(str(bundle), "test")
    time.sleep(0.2)
    assert not marker.exists()


CRAFTED_CONFIGS = {
    "a data module": ({"data": {"_target_": "subprocess.Popen", "args": "true"}}, "data._target_ 'subprocess.Popen'"),
    "a file opened for writing": ({"data": {"_target_": "builtins.open", "_args_": ["/tmp/x", "w"]}}, "data._target_ 'builtins.open'"),
    "in a list": (
        {"model": {"_target_": "seqlab.models.rnn.RNNClassifier", "layers": [{"_target_": "os.system", "_args_": ["true"]}]}},
        "model.layers[0]._target_ 'os.system'",
    ),
    "under the optimizer": (
        {"optimizer": {"_target_": "torch.optim.AdamW", "lr": {"_target_": "builtins.eval", "_args_": ["1"]}}},
        "optimizer.lr._target_ 'builtins.eval'",
    ),
    "reached through a seqlab module": ({"scheduler": {"_target_": "seqlab.runs.os.system"}}, "scheduler._target_ 'seqlab.runs.os.system'"),
    "a seqlab function no config uses": ({"task": {"_target_": "seqlab.runs.write_json"}}, "task._target_ 'seqlab.runs.write_json'"),
    "an interpolated target": ({"task": {"_target_": "${task.name}", "name": "subprocess.Popen"}}, "task._target_"),
    "built by oc.create": ({"data": {"tokenizer": "${oc.create:{_target_:subprocess.Popen,args:true}}"}}, "data.tokenizer._target_ 'subprocess.Popen'"),
    "an environment variable": ({"data": {"url": "https://example.com/?k=${oc.env:HOME}"}}, "data.url uses the resolver 'oc.env'"),
    "a decoded string": ({"data": {"tokenizer": "${oc.decode:'{a: 1}'}"}}, "data.tokenizer uses the resolver 'oc.decode'"),
    "a resolver named by an interpolation": ({"data": {"x": "${${data.y}:1}", "y": "oc.env"}}, "data.x uses the resolver '${data.y}'"),
}


@pytest.mark.parametrize("case", CRAFTED_CONFIGS, ids=list(CRAFTED_CONFIGS))
def test_a_recorded_config_that_could_run_code_is_refused_naming_the_key(case):
    from seqlab.runs.recorded_config import check_recorded_config

    config, message = CRAFTED_CONFIGS[case]
    with pytest.raises(SeqlabError) as refused:
        check_recorded_config(config, "crafted.ckpt")
    assert str(refused.value).startswith("crafted.ckpt: ") and message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=sst2_gpt", "trainer=ddp", "logger=many", "debug=profiler"],
        ["experiment=sst2_minilm"],
        ["experiment=finetune_gpt", "hparams_search=optuna_pruning", "scheduler=plateau"],
    ],
    ids=["default", "gpt ddp", "minilm", "finetune"],
)
def test_configs_seqlab_records_pass_the_check(compose_config, overrides):
    """What RunRecord stores (the config unresolved, without `hydra`) for several presets."""
    from seqlab.runs.recorded_config import check_recorded_config

    cfg = compose_config(overrides)
    check_recorded_config(OmegaConf.to_container(cfg, resolve=False), "run.ckpt")


def test_every_target_in_seqlabs_configs_is_allowed():
    from seqlab.runs.recorded_config import check_recorded_config

    targets = {
        line.split("_target_:")[1].strip()
        for path in (REPO / "conf").rglob("*.yaml")
        if "hydra" not in path.relative_to(REPO / "conf").parts
        for line in path.read_text().splitlines()
        if line.strip().startswith("_target_:")
    }
    assert len(targets) > 30
    for target in sorted(targets):
        check_recorded_config({"node": {"_target_": target}}, "conf")


# -- seqlab-serve: request bodies and the port ------------------------------------------------


MAX_BODY_BYTES = 2000


@pytest.fixture
def service(trained, tmp_path):
    with running_service(f"bundle={trained['bundle']}", f"max_body_bytes={MAX_BODY_BYTES}", cwd=tmp_path) as url:
        yield httpx.URL(url).port


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send `head` and `body` as they are and read the answer until the server closes or stops writing."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_service_refuses_large_and_non_json_bodies_before_reading_them(service):
    url = f"http://127.0.0.1:{service}"
    assert httpx.get(f"{url}/health").json()["limits"]["max_body_bytes"] == MAX_BODY_BYTES
    assert httpx.post(f"{url}/predict", json={"texts": ["a moving film"]}, timeout=30).status_code == 200

    # A declared 50 MB body is refused from its headers: none of it is sent.
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    status, answer = raw_request(service, head)
    assert status == 413 and f"max_body_bytes={MAX_BODY_BYTES}" in answer["error"]

    # A chunked body has no Content-Length: it is counted as it arrives.
    def chunks():
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"x" * 500

    reply = httpx.post(f"{url}/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert reply.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in reply.request.headers
    assert reply.status_code == 413 and f"max_body_bytes={MAX_BODY_BYTES}" in reply.json()["error"]

    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        reply = httpx.post(f"{url}/predict", content=b'{"texts": ["ok"]}', headers={"content-type": content_type}, timeout=30)
        assert reply.status_code == 415 and "application/json" in reply.json()["error"], content_type
    body = b'{"texts": ["ok"]}'  # and with no content type at all
    status, answer = raw_request(service, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body), body)
    assert status == 415 and "application/json" in answer["error"]
