"""A search space from Hydra's sweep syntax: ``hydra.sweeper.params`` and the sweep overrides of the command line.

    reg.jacobian.lam: tag(log, interval(1e-4, 1.0))   # FloatDistribution(1e-4, 1.0, log=True)
    optim.lr: interval(0.01, 0.1)                      # FloatDistribution(0.01, 0.1) (always floats: Hydra's)
    data.batch_size: range(64, 257, 64)                # IntDistribution(64, 256, step=64); shuffle(range) → choice
    model: choice(lenet, small_cnn)                     # CategoricalDistribution; ``model=lenet,small_cnn`` too
    seed: 1                                            # not a sweep: the same override in every trial

The syntax is Hydra's override grammar (https://hydra.cc/docs/advanced/override_grammar/extended/), as
hydra-optuna-sweeper read it; the distributions are Optuna ≥ 4's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``override.is_sweep_override()``)."""
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        # Hydra's range excludes its stop; Optuna's high is included
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            last = value.start + value.step * int((value.stop - value.start) / value.step - 1e-9)
            return FloatDistribution(value.start, last, step=value.step)
        last = value.start + value.step * ((value.stop - value.start - 1) // value.step)
        return IntDistribution(int(value.start), int(last), step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    raise ValueError(f"{override.input_line} is not a search space Optuna can sample: use interval, range or choice")


def search_space(
    params: dict[str, Any] | None, arguments: Iterable[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions by key, fixed overrides): ``params`` (``hydra.sweeper.params``) first, then the command
    line's overrides, a later one replacing an earlier one of the same key."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None), fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def quoted(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar (a path or URL with ``:``, ``,``, spaces)."""
    return "'" + value.replace("'", "\\'") + "'"


def trial_overrides(params: dict[str, Any], fixed: list[str]) -> list[str]:
    """A trial's overrides: its sampled parameters, then the fixed ones."""
    return [f"{key}={value}" for key, value in params.items()] + fixed
