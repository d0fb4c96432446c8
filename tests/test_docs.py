"""The README and docs/*.md say what works: every seqlab command in their code blocks composes (as
`--cfg job` would, without training), every option the README's tables list exists under conf/,
and no text is left unwritten."""

import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep

from seqlab.sweeps.plugins import register_sweepers

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONF = REPO / "conf"
# The user's package that docs/extending.md builds on, importable as if it were installed.
OUTSIDE_PACKAGE = Path(__file__).parent / "outside_package"
# seqlab's Hydra commands and the config each composes (seqlab-cv-summary takes a plain path).
CONFIG_OF = {f"seqlab-{name}": name for name in ("train", "eval", "predict", "export", "serve", "generate")}
# Hydra's own flags: what to print (`--cfg job`), not what to compose.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i"}
# Shell the docs use where a user types their own value: a command's output, a variable, `<what>`.
SUBSTITUTIONS = [(re.compile(r"\$\([^`]*?\)(?=\s|$)"), "best.ckpt"), (re.compile(r"\$\{?\w+\}?"), "x"), (re.compile(r"<[^<>]+>"), "x")]
UNWRITTEN = re.compile(r"PLACEHOLDER|\bTODO\b|\bTBD\b|\bFIXME\b|\bXXX\b")


def fenced_commands(path: Path) -> list[str]:
    """The seqlab commands of the file's fenced code blocks, continuation lines joined."""
    commands, in_block, pending = [], False, ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        line = pending + line
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        words = line.split()
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value before the command
            words.pop(0)
        if words and words[0] in CONFIG_OF:
            commands.append(" ".join(words))
    return commands


def first_job(command: str) -> tuple[str, list[str]]:
    """The config name and the overrides of the command's first job (a sweep's first value)."""
    for pattern, value in SUBSTITUTIONS:
        command = pattern.sub(value, command)
    words = shlex.split(command, comments=True)
    name, args, overrides = CONFIG_OF[words[0]], iter(words[1:]), []
    for word in args:
        if word in FLAGS_WITH_VALUE:
            next(args)
        elif word.startswith("-"):  # -m, --multirun, --resolve
            continue
        else:
            overrides.append(re.sub(r"^\[(.*=.*)\]$", r"\1", word))  # a synopsis' [optional=default]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return name, [_first_value(override) for override in parsed]


def _first_value(override) -> str:
    if not override.is_sweep_override():
        line = override.input_line
        key, _, value = line.partition("=")
        return f"{key}={value.split('|')[0]}" if "|" in value and "[" not in value else line  # a synopsis' a|b
    sweep = override.value()
    first = sweep.start if isinstance(sweep, IntervalSweep) else next(iter(override.sweep_string_iterator()))
    return f"{override.get_key_element()}={first}"


DOCUMENTED = [(path.relative_to(REPO).as_posix(), command) for path in DOCS for command in fenced_commands(path)]


@pytest.fixture(scope="module")
def seqlab_conf():
    register_sweepers()
    sys.path.insert(0, str(OUTSIDE_PACKAGE))
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        yield
    GlobalHydra.instance().clear()
    sys.path.remove(str(OUTSIDE_PACKAGE))


def test_the_docs_show_commands_of_every_seqlab_entry_point():
    shown = {command.split()[0] for _, command in DOCUMENTED}
    assert shown == set(CONFIG_OF)


@pytest.mark.parametrize(("doc", "command"), DOCUMENTED, ids=[f"{doc}:{command[:70]}" for doc, command in DOCUMENTED])
def test_every_documented_command_composes(seqlab_conf, doc, command):
    name, overrides = first_job(command)
    compose(config_name=name, overrides=overrides)


def readme_table_options(readme: str) -> dict[str, list[str]]:
    """group -> the options the README's tables list: the config-groups table's second column, and
    the first column of a table headed by `group=` (the models table)."""
    listed: dict[str, list[str]] = {}
    header_group = None
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            header_group = None
            continue
        header = re.fullmatch(r"`(\w+)=`", cells[0])
        if header:
            header_group = header.group(1)
        elif header_group and not set(cells[0]) <= {"-", " "}:
            listed.setdefault(header_group, []).extend(re.findall(r"`(\w+)`", cells[0]))
        elif re.fullmatch(r"`\w+`", cells[0]) and (CONF / cells[0].strip("`")).is_dir():
            listed.setdefault(cells[0].strip("`"), []).extend(re.findall(r"`(\w+)`", cells[1]))
    return listed


def test_the_readme_tables_list_only_options_under_conf_and_every_experiment():
    readme = (REPO / "README.md").read_text()
    listed = readme_table_options(readme)
    assert {"data", "model", "trainer", "logger", "experiment", "crossval", "hparams_search"} <= set(listed)
    missing = [f"{group}={option}" for group, options in listed.items() for option in options if not (CONF / group / f"{option}.yaml").is_file()]
    assert not missing
    assert sorted(listed["experiment"]) == sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("path", DOCS, ids=[path.name for path in DOCS])
def test_no_doc_has_unwritten_text(path):
    assert not [line for line in path.read_text().splitlines() if UNWRITTEN.search(line)]
