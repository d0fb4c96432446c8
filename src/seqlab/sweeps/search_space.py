"""Optuna distributions from Hydra sweep overrides, in the syntax of hydra-optuna-sweeper's `params`.

| override | distribution |
| --- | --- |
| `choice(a, b, ...)`, `a,b,...` | categorical |
| `range(a, b[, step])` | integers (floats when any bound is a float) a, a+step, ... below b: b is excluded, as in Hydra |
| `shuffle(range(...))` | categorical over the range's values |
| `interval(a, b)` | uniform floats in [a, b] |
| `int(interval(a, b))` | uniform integers in [a, b] |
| `tag(log, interval(a, b))`, `tag(log, int(interval(a, b)))` | log-uniform floats / integers |
| anything else (`key=value`) | fixed: passed to every trial unchanged |
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from seqlab.errors import SeqlabError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # The override key of each searched parameter (with a `+` or `++` prefix where the user gave one).
    keys: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def trial_overrides(self, params: dict) -> list[str]:
        """The command-line overrides of a trial: its sampled parameters, then the fixed ones."""
        sampled = [f"{self.keys[name]}={override_value(value)}" for name, value in params.items() if name in self.keys]
        return [*sampled, *self.fixed]

    def grid(self) -> dict[str, list]:
        """Every value of every parameter, for the grid sampler (which takes finite sets only)."""
        return {name: grid_values(name, distribution) for name, distribution in self.distributions.items()}


def override_value(value: object) -> str:
    """`value` as the value of a command-line override, escaped so that Hydra reads it back unchanged."""
    return Transformer.str(value)


def _choices(override: Override, what: str) -> list:
    choices = list(override.sweep_iterator(transformer=Transformer.identity))
    for value in choices:
        if not isinstance(value, (str, int, float, bool)):
            raise SeqlabError(f"{override.input_line}: a {what} takes str, int, float or bool values, got {value!r}")
    return choices


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(_choices(override, "choice"))
    if isinstance(value, RangeSweep):
        values = _choices(override, "range")
        if not values:
            raise SeqlabError(f"{override.input_line} is empty (range(a, b) stops before b)")
        if value.shuffle:
            return CategoricalDistribution(values)
        low, high, step = min(values), max(values), abs(value.step)
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(float(low), float(low + round((high - low) / step) * step), step=float(step))
        return IntDistribution(int(low), int(high), step=int(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SeqlabError(f"{override.input_line}: the Optuna sweeper searches choice, range and interval sweeps only")


def param_overrides(params: Mapping, prefix: str = "") -> list[str]:
    """`hydra.sweeper.params` as `key=sweep` overrides; nested keys (`model: {dropout: ...}`) join with dots,
    so that a preset's dimension can be dropped with `~hydra.sweeper.params.model.dropout`."""
    overrides = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            overrides.extend(param_overrides(value, f"{prefix}{key}."))
        else:
            overrides.append(f"{prefix}{key}={value}")
    return overrides


def parse_search_space(arguments: list[str]) -> SearchSpace:
    """Split `key=sweep` overrides into the search space and `key=value` ones into fixed overrides.

    A key given twice keeps its last value (the command line after `hydra.sweeper.params`).
    """
    space = SearchSpace()
    for override in OverridesParser.create().parse_overrides(arguments):
        name = override.key_or_group
        space.distributions.pop(name, None)
        space.keys.pop(name, None)
        space.fixed = [f for f in space.fixed if f.split("=", 1)[0].lstrip("+~") != name]
        if override.is_sweep_override():
            space.distributions[name] = distribution(override)
            space.keys[name] = override.get_key_element()
        else:
            space.fixed.append(override.input_line)
    return space


def grid_values(name: str, dist: BaseDistribution) -> list:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return [dist.low + i * dist.step for i in range(round((dist.high - dist.low) / dist.step) + 1)]
    raise SeqlabError(f"the grid sampler needs a finite set of values for {name}: use choice(...) or range(...), not interval(...)")
