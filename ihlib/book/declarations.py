"""What each book parameter may be: one table of types and ranges, used by the runner and by every chapter's cell
after its parameters (`globals().update(checked_parameters_of(globals()))`), with the same messages.

Parameters are data: None, true/false, numbers, strings, or lists and mappings of those. A whole-number float
(what `-p n_exp 1e3` gives papermill) counts as an int; 2.7 where an int is expected is refused, never cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from ihlib.model.errors import ParameterError

PLAIN_SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Rule:
    """A parameter's type (`int`, `float`, `bool`, `str`, `list`), bounds, whether None is allowed, and for a
    list the rule of its items."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded (fractions in (0, 1])
    optional: bool = False
    items: Rule | None = None
    meaning: str = ""

    def allowed(self) -> str:
        """What the rule allows, in words: `a whole number, at least 1 (or None)`."""
        kind = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", list: "a list"}
        words = kind[self.kind]
        if self.low is not None and self.high is not None:
            words += f" in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}]"
        elif self.low is not None:
            words += f", {'above' if self.low_open else 'at least'} {_number(self.low)}"
        if self.items is not None:
            words += f", each item {self.items.allowed()}"
        return words + (" (or None)" if self.optional else "")


def _number(bound: float) -> str:
    """A bound as written: 1, 4294967295, 0.5."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


COUNT = Rule(int, low=1)
OPTIONAL_COUNT = Rule(int, low=1, optional=True)
SEED = Rule(int, low=0, high=2**32 - 1)
FRACTION = Rule(float, low=0, high=1, low_open=True)
PROBABILITY = Rule(float, low=0, high=1)
TEXT = Rule(str)

PARAMETER_RULES: dict[str, Rule] = {
    "model_name": Rule(str, optional=True),
    "device": TEXT,
    "seed": SEED,
    "output_dir": TEXT,
    "results_dir": TEXT,
    "models_dir": TEXT,
    "chapters": Rule(list, items=TEXT),
    "batch_size": COUNT,
    "seg_len": COUNT,
    "rep": Rule(int, low=2, meaning="a segment must repeat at least once"),
    "top": COUNT,
    "example_seg_len": COUNT,
    "fraction": FRACTION,
    "margin": PROBABILITY,
    "tolerance": PROBABILITY,
    "K0": OPTIONAL_COUNT,
    "K1": OPTIONAL_COUNT,
    "n_proj": OPTIONAL_COUNT,
    "n_edit": OPTIONAL_COUNT,
    "num_samp": COUNT,
    "n_boot": COUNT,
    "max_tokens": COUNT,
    "n_show": COUNT,
    "n_partners": COUNT,
    "block": COUNT,
    "ranks": Rule(list, items=COUNT),
    "copy_seg_len": COUNT,
    "route_seg_len": COUNT,
    "route_rep": Rule(int, low=2, meaning="a segment must repeat at least once"),
    "route_batch": COUNT,
    "burn_in": Rule(int, low=0),
    "route_boot": COUNT,
    "copy_batch_size": COUNT,
    "n_exp": COUNT,
    "n_documents": COUNT,
    "document_seed": SEED,
    "K_min": Rule(int, low=2, meaning="a shuffle needs 2 heads"),
    "K_max": Rule(int, low=2, meaning="a shuffle needs 2 heads"),
    "max_rank": COUNT,
    "step": COUNT,
    "cross_fit": Rule(bool),
    "compare_fittings": Rule(bool),
    "shape": TEXT,  # a planted model's shape name; `ihlib.model.planted_layout.check_shape` names the choices
}


def check_plain_data(name: str, value: object) -> None:
    """Raise ParameterError naming `name` unless `value` is None, a bool, int, float, str, or a list or mapping (with
    string keys) of those: a parameter is data, never code, bytes or a date."""
    if isinstance(value, PLAIN_SCALARS):
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_plain_data(name, item)
        return
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        for item in value.values():
            check_plain_data(name, item)
        return
    raise ParameterError(
        f"parameter {name}: {value!r} ({type(value).__name__}) is not plain data; a parameter is None, true/false, "
        "a number, a string, or a list or mapping of those (quote a date or other text: '2024-01-31')."
    )


def checked_parameter(name: str, value: object) -> object:
    """Return `value` checked against the rule of `name` (a whole-number float as an int); unchanged when `name` has
    no rule; raise ParameterError naming the parameter and what it allows."""
    check_plain_data(name, value)
    rule = PARAMETER_RULES.get(name)
    return value if rule is None else _checked(name, value, rule, value)


def checked_parameters_of(namespace: dict[str, object]) -> dict[str, object]:
    """Return the parameters among `namespace` (a chapter's `globals()`) that have a rule, checked and typed."""
    return {name: checked_parameter(name, namespace[name]) for name in PARAMETER_RULES if name in namespace}


def _checked(name: str, value: object, rule: Rule, whole: object, subject: str = "") -> object:
    """`value` (the whole parameter is `whole`; `subject` names the part checked) checked against `rule`, typed;
    raise naming `name`."""
    subject = subject or name
    if value is None and rule.optional:
        return None
    typed = _typed(value, rule.kind)
    if typed is None:
        raise ParameterError(f"parameter {name}={whole!r}: {subject} is {rule.allowed()}, not {value!r}.")
    if rule.items is not None:
        return [_checked(name, item, rule.items, whole, f"each item of {name}") for item in typed]
    if rule.kind in (int, float) and not _in_range(typed, rule):
        why = f" ({rule.meaning})" if rule.meaning else ""
        raise ParameterError(f"parameter {name}={whole!r} is out of range: {subject} is {rule.allowed()}{why}.")
    return typed


def _typed(value: object, kind: type) -> object | None:
    """`value` as `kind` where that loses nothing (2.0 -> 2 for an int, 3 -> 3.0 for a float), else None."""
    if kind is int:
        whole = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value == int(value)
        return int(value) if whole else None
    if kind is float:
        return float(value) if isinstance(value, Real) and not isinstance(value, bool) else None
    if kind is list:
        return list(value) if isinstance(value, list | tuple) else None
    return value if isinstance(value, kind) else None


def _in_range(number: float, rule: Rule) -> bool:
    """Whether `number` lies within the rule's bounds (NaN never does)."""
    if math.isnan(number):
        return False
    above = rule.low is None or (number > rule.low if rule.low_open else number >= rule.low)
    return above and (rule.high is None or number <= rule.high)
