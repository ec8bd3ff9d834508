"""The book's parameters: `--param`/`--params` parsing, the names each chapter declares, and typing by default.

A value must have the type of the chapter's default (`n_exp=1e3` becomes 1000 where the default is an int); a
name that no chapter declares, or `output_dir` (per chapter), is an error that names what is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import papermill
import yaml

from ihlib.book.declarations import check_plain_data, checked_parameter
from ihlib.model.errors import BookError, ParameterError
from ihlib.model.loading import check_local_model

PER_CHAPTER_PARAMETERS = ("output_dir",)


class PlainLoader(yaml.SafeLoader):
    """A YAML loader that builds only plain data: null, booleans, numbers, strings, lists and mappings; any other
    tag (`!!binary`, `!!timestamp`, `!!set`, `!!python/...`) is an error naming it."""


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    """Raise a ConstructorError for a node whose tag is not plain data."""
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag} is not plain data (quote the value to make it a string)", node.start_mark
    )


for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    PlainLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
PlainLoader.add_constructor(None, _refuse_tag)
PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}  # an unquoted 2024-01-31 stays the string "2024-01-31"


def plain_yaml(text: str) -> object:
    """Parse `text` as YAML into plain data (see PlainLoader)."""
    return yaml.load(text, Loader=PlainLoader)  # noqa: S506 (PlainLoader is a SafeLoader that refuses more tags)


def parse_param(text: str) -> tuple[str, object]:
    """Parse `name=value` into `(name, value)`, the value read as YAML (`n=3` -> 3, `m=null` -> None)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise BookError(f"--param expects name=value with a Python identifier as name, got {text!r}.")
    try:
        return name, plain_yaml(value)
    except yaml.YAMLError as err:
        raise BookError(f"--param {name}: the value {value!r} is not valid YAML{_yaml_position(err)}.") from err


def load_params_file(path: str | Path) -> dict[str, object]:
    """Read a YAML mapping of parameter names to values from `path`."""
    path = Path(path)
    if not path.is_file():
        raise BookError(f"Parameter file {path} does not exist or is not a file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BookError(f"Parameter file {path} cannot be read ({type(err).__name__}: {err}).") from err
    try:
        params = plain_yaml(text)
        params = {} if params is None else params
    except yaml.YAMLError as err:
        raise BookError(f"Parameter file {path} is not valid YAML{_yaml_position(err)}.") from err
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise BookError(f"Parameter file {path} must be a YAML mapping of parameter names to values.")
    return params


def _yaml_position(err: yaml.YAMLError) -> str:
    """Return " at line L, column C: problem" (1-based) for a PyYAML error, or ": message" when it has no mark."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return f": {problem}"
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def shared_parameters(
    params_file: str | Path | None = None, param_args: list[str] | tuple[str, ...] = (), model: str | None = None
) -> dict[str, object]:
    """Merge the parameter file, then `--param` values, then `--model` (later wins) into one mapping."""
    params = load_params_file(params_file) if params_file else {}
    params.update(parse_param(text) for text in param_args)
    if model is not None:
        params["model_name"] = model
    for name, value in params.items():
        check_plain_data(name, value)
    return params


def with_local_model_checked(shared: dict[str, object]) -> dict[str, object]:
    """Return `shared` with a `model_name` that is an existing local path made absolute (chapters run in the build
    folder), after checking that it holds a GPT-2; hub names and None pass unchanged."""
    model = checked_parameter("model_name", shared.get("model_name"))
    if isinstance(model, str) and not model.strip():
        raise ParameterError(
            "model_name='' names no model: leave it out (the embedded default), or give a name or a folder."
        )
    if not isinstance(model, str) or not Path(model).exists():
        return shared
    check_local_model(model)
    return {**shared, "model_name": str(Path(model).resolve())}


def declared_parameters(notebook: Path) -> dict[str, object]:
    """Return the names declared in the notebook's `parameters` cell with their defaults (None if not a literal)."""
    return {name: _literal(info["default"]) for name, info in papermill.inspect_notebook(str(notebook)).items()}


def _literal(source: str) -> object:
    """Return the Python literal written in `source`, or None when it is an expression."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return None


def check_parameters(shared: dict[str, object], declared: dict[str, dict[str, object]]) -> None:
    """Raise on shared names that no chapter declares, or that are per chapter; `declared` maps chapter -> names."""
    per_chapter = sorted(set(shared) & set(PER_CHAPTER_PARAMETERS))
    if per_chapter:
        raise BookError(
            f"{', '.join(per_chapter)} is set per chapter and cannot be shared; use --build-dir to move results."
        )
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(shared) - known)
    if unknown:
        raise BookError(
            f"No chapter declares the parameter(s) {', '.join(unknown)}. "
            f"Declared parameters: {', '.join(sorted(known - set(PER_CHAPTER_PARAMETERS)))}."
        )


def parameters_for(shared: dict[str, object], declared: set[str] | dict[str, object]) -> dict[str, object]:
    """Return the part of `shared` that a notebook declaring `declared` accepts."""
    return {name: value for name, value in shared.items() if name in declared}


def typed_parameters(params: dict[str, object], defaults: dict[str, object], *, chapter: str) -> dict[str, object]:
    """Return `params` with each value converted to the type of its default in `chapter` (see `typed_parameter`),
    then checked against its rule in `ihlib.book.declarations` (type and range)."""
    return {
        name: checked_parameter(name, typed_parameter(name, value, defaults[name], chapter=chapter))
        for name, value in params.items()
    }


TYPE_HINTS = {
    bool: "true or false",
    int: "an integer such as 20 or 1e3",
    float: "a number such as 0.5 or 1e-3",
    str: "a string (quote digits: '\"123\"')",
    list: "a list such as [2, 3]",
    tuple: "a list such as [2, 3]",
    dict: "a mapping such as {a: 1}",
}


def typed_parameter(name: str, value: object, default: object, *, chapter: str) -> object:
    """Return `value` as the type of `default` (text such as "1e3" read as a number; an integral number as an int
    where the default is an int), unchanged where the default is None; raise ParameterError naming both otherwise."""
    if default is None:
        return value
    kind = type(default)
    typed = _converted(value, kind)
    if typed is None:
        raise ParameterError(
            f"parameter {name}={value!r}: the default in {chapter} is {default!r} ({kind.__name__}), "
            f"so use {TYPE_HINTS.get(kind, f'a {kind.__name__}')}."
        )
    return typed


def _converted(value: object, kind: type) -> object | None:
    """Return `value` as an instance of `kind` where that loses nothing, else None."""
    if kind in (int, float):
        number = _as_number(value)
        if number is None or (kind is int and not float(number).is_integer()):
            return None
        return int(number) if kind is int else float(number)
    if kind in (list, tuple) and isinstance(value, list | tuple):
        return kind(value)
    return value if isinstance(value, kind) else None


def _as_number(value: object) -> int | float | None:
    """Return `value` if it is an int or float (not a bool), the float that text such as "1e3" spells, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
