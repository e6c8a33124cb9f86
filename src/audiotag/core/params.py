"""Loading params.yaml: the strict base of every stage's config, shared field types, and
the helpers that validate one group with a message naming the key.

Each stage's config lives beside its code (``audiotag.features.config``,
``audiotag.training.config``, ...); stage scripts load params.yaml once (:func:`read_params`)
and parse the groups they use. Any bad value stops the stage before it touches an output,
with a message naming the offending key (``params.yaml: train.lr: ...``).

params.yaml is the one source of values: a config's defaults are the values params.yaml
holds (``tests/unit/test_config.py::test_code_defaults_agree_with_params_yaml``), so library code
and tests built on defaults compute what the pipeline computes.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from audiotag.core.errors import ParamsError

KNOWN_GROUPS = (
    "seed", "data", "split", "clean", "features", "train", "cv", "models", "evaluate",
    "ensembles", "weights", "report",
)


def get_dotted(tree: Any, key: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for the dotted ``key`` ``a.b``; ``default`` where a part is
    missing (or its parent is not a mapping)."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def has_dotted(tree: Any, key: str) -> bool:
    """Whether the dotted ``key`` is in ``tree`` (its value may be None)."""
    missing = object()
    return get_dotted(tree, key, missing) is not missing


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for the dotted ``key`` ``a.b``, making the mappings on the
    way."""
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def closest(name: str, valid: Any) -> str | None:
    """The entry of ``valid`` closest to ``name`` (difflib), or None if none is close."""
    close = difflib.get_close_matches(name, [str(v) for v in valid], n=1)
    return close[0] if close else None


def did_you_mean(name: str, valid: Any, prefix: str = "") -> str:
    """``did you mean <prefix><closest>?``, or ``known: <every valid name>``: the tail of
    every "unknown X" message."""
    valid = sorted(str(v) for v in valid)
    close = closest(name, valid)
    return f"did you mean {prefix}{close}?" if close else f"known: {', '.join(valid)}"


def unknown_key(where: str, key: str, valid: Any) -> str:
    """``params.yaml: train.epochz: unknown key; did you mean train.epochs?`` (difflib)."""
    parent, _, name = key.rpartition(".")
    hint = did_you_mean(name, valid, f"{parent}." if parent else "")
    return f"{where}: {key}: unknown key; {hint}"


InputPath = Annotated[str | None, Field(json_schema_extra={"input_path": True})]
"""A file or folder outside the pipeline that a dataset source reads (``local_dir``, the
``folder`` source's ``audio_dir``/``csv``): it must be listed in ``data.inputs`` so that
DVC sees it change (see :func:`audiotag.data.sources.check_inputs_tracked`)."""


def _admits_bool(annotation: Any) -> bool:
    """Whether a field type accepts a boolean (``bool``, ``Any``, or one inside it)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation) if not isinstance(arg, str))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool)


class Strict(BaseModel):
    """Base of every params config: unknown keys are errors, and a boolean is never taken
    for a number (pydantic's lax mode reads ``epochs: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if _holds_bool(value) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number or text, not a boolean")
        return value


M = TypeVar("M", bound=BaseModel)


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice in one mapping (as DVC does),
    instead of keeping the last value."""

    root: yaml.Node | None = None

    def construct_document(self, node: yaml.Node) -> Any:
        self.root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(f"line {line}: {_key_path(self, node, key)}: a duplicate key "
                                    f"(first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep)


def _key_path(loader: _UniqueKeyLoader, node: yaml.MappingNode, key: Any) -> str:
    """The dotted path of ``key`` in ``node``, found from the document's root."""
    def find(current: yaml.Node, prefix: list[str]) -> list[str] | None:
        if current is node:
            return [*prefix, str(key)]
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if (found := find(v, [*prefix, str(k.value)])) is not None:
                    return found
        return None

    return ".".join(find(loader.root, []) or [str(key)])


def read_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read params.yaml; unknown top-level groups (a misspelt ``trian:``) are an error."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except _DuplicateKey as err:
        raise ParamsError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of groups at the top level")
    unknown = sorted(set(raw) - set(KNOWN_GROUPS))
    if unknown:
        raise ParamsError("\n".join(unknown_key(str(path), key, KNOWN_GROUPS) for key in unknown))
    return raw


def format_validation_error(err: ValidationError, prefix: str, where: str = "params.yaml",
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``params.yaml: train.lr: Input should be greater than 0 (got -1)``;
    an unknown key of ``model`` suggests the closest field."""
    lines = []
    for problem in err.errors():
        key = ".".join([prefix, *(str(p) for p in problem["loc"])]) if problem["loc"] else prefix
        owner = _nested_model(model, problem["loc"][:-1])
        if owner is not None and problem["type"] == "extra_forbidden":
            name = str(problem["loc"][-1])
            moved = getattr(owner, "moved", {})
            if name in moved:  # a key of an older layout: say where it lives now
                lines.append(f"{where}: {key}: moved to {key.rpartition('.')[0]}.{moved[name]}")
            else:
                lines.append(unknown_key(where, key, owner.model_fields))
            continue
        got = "" if problem["type"] == "missing" else f" (got {problem.get('input')!r})"
        lines.append(f"{where}: {key}: {problem['msg']}{got}")
    return "\n".join(lines)


def _nested_model(model: type[BaseModel] | None,
                  loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config class at ``loc`` inside ``model`` (a nested block such as
    ``clean.flag``), or None where ``loc`` leaves the config classes."""
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        inner = model.model_fields[part].annotation
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return model


def parse_group(raw: dict[str, Any], key: str, model: type[M], where: str = "params.yaml") -> M:
    """Validate ``raw[key]`` (a dotted key such as ``data.synthetic`` is allowed) as ``model``."""
    value = get_dotted(raw, key)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ParamsError(f"{where}: {key}: expected a mapping, got {value!r}")
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, key, where, model)) from None


def parse_seed(raw: dict[str, Any], where: str = "params.yaml") -> int:
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"{where}: seed: expected a non-negative integer (got {seed!r})")
    return seed
