"""Typed settings: the one check behind every config field, and reading YAML settings files safely.

Each field of the config dataclasses (``TrainConfig`` and its parts, ``InferenceConfig``,
``PostprocessConfig``) declares its type in its annotation and its range with ``setting(...)``.
``check_fields`` checks every field against both, turns harmless forms into the declared type
(lists into tuples, ``64.0`` into ``64``, numpy scalars into Python numbers, paths into strings,
dicts into nested configs) and otherwise raises ``ConfigError`` naming the field (dotted for nested
ones: ``augment.noise``), what it must be and what it got. Strings are never parsed into numbers:
``max_steps: '5'`` is a mistake to point out, not to guess at.

Why a small checker and not pydantic: the configs are plain dataclasses with a dozen simple types
(bool, int, float, str, optional, tuples, nested configs), the errors must read as this project's
messages (dotted key, range, the YAML file) and the headless install should not gain a dependency
for it; pydantic v2 (pydantic + pydantic-core + 3 helpers, about 9 MB) adds 0.15 s to the import
and would still need its strict/lax modes tuned per field and its errors rewritten.

``load_yaml_mapping`` reads a settings file with PyYAML's safe loader (a ``!!python/...`` tag is
refused, never constructed) and turns every YAML problem into a ``ConfigError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.errors import ConfigError

#: Device names a config may hold; whether the device exists is checked when a job starts.
DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """The range of one field (of each element, for tuples): bounds, choices, a pattern, and why."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: re.Pattern[str] | None = None
    examples: str = ""  # shown with a pattern: what a valid value looks like
    why: str = ""  # a reason the user may need, e.g. "the network downsamples 32x"

    def describe(self) -> str:
        parts = []
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {bound:g}")
        return " and ".join(parts)


def setting(default: Any = MISSING, *, factory: Any = MISSING, **rule: Any) -> Any:
    """A dataclass field with its range: ``patch_size: int = setting(352, ge=32, why=...)``."""
    if isinstance(rule.get("choices"), list):
        rule["choices"] = tuple(rule["choices"])
    return field(default=default, default_factory=factory, metadata={"rule": Rule(**rule)})


def config_error(key: str, problem: str) -> ConfigError:
    """``ConfigError("key problem")`` that remembers the key, so nested configs can prefix it."""
    err = ConfigError(f"{key} {problem}")
    err.key, err.problem = key, problem  # type: ignore[attr-defined]
    return err


def prefixed(prefix: str, exc: ConfigError) -> ConfigError:
    """``exc`` with its key moved under ``prefix`` (``noise`` -> ``augment.noise``)."""
    key = getattr(exc, "key", None)
    if key is None:
        return config_error(prefix + ":", str(exc))
    return config_error(f"{prefix}.{key}", exc.problem)  # type: ignore[attr-defined]


def in_file(path: str | os.PathLike[str], exc: ConfigError) -> ConfigError:
    """``exc`` with the settings file it came from named first."""
    return ConfigError(f"{path}: {exc}")


# ------------------------------------------------------------------------------------------- types
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def describe_type(tp: Any) -> str:
    """The declared type in words, as the user wrote it in YAML or Python."""
    if _is_union(tp):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        text = " or ".join(describe_type(a) for a in arms)
        return text + (" or null/None" if len(arms) < len(typing.get_args(tp)) else "")
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe_type(args[0]).removeprefix('a ')}s"
        return f"a list of {len(args)} {describe_type(args[0]).removeprefix('a ')}s"
    if origin is dict or tp is dict:
        return "a mapping"
    if is_dataclass(tp):
        return f"a mapping of {tp.__name__} settings"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Mismatch(Exception):
    """The value does not have the declared type (internal: turned into a ConfigError)."""


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or ``_Mismatch``; nested configs raise their own ConfigError."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(value, arm, key)
            except _Mismatch:
                continue
        raise _Mismatch
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple | np.ndarray):
            raise _Mismatch
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        return dict(value)
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value)
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool | np.bool_):
            raise _Mismatch
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _Mismatch
    if tp is float:
        numeric = isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool | np.bool_) or not numeric:
            raise _Mismatch
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Mismatch
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value  # pragma: no cover - a type this checker does not know is left alone


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    plain = isinstance(value, int | float) and not isinstance(value, bool)
    return text if plain else f"{text} ({type(value).__name__})"


def _expectation(tp: Any, rule: Rule | None) -> str:
    """What a field must be, in words: "a whole number >= 1, or null/None (why)"."""
    optional = _is_union(tp) and type(None) in typing.get_args(tp)
    if optional:
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = arms[0] if len(arms) == 1 else typing.Union[tuple(arms)]  # noqa: UP007 - built at run time
    text = describe_type(tp)
    if float in (tp, *typing.get_args(tp)):
        text = text.replace("a number", "a finite number")
    if rule is not None and rule.choices:
        text = "one of " + ", ".join(rule.choices)
    elif rule is not None and rule.describe():
        text += " " + rule.describe()
    if rule is not None and rule.pattern is not None and rule.examples:
        text = f"a name such as {rule.examples}"
    if optional:
        text += ", or null/None"
    return text + (f" ({rule.why})" if rule is not None and rule.why else "")


def _check_range(value: Any, rule: Rule) -> bool:
    """True when ``value`` (or every element of a tuple) is in the rule's range."""
    if isinstance(value, tuple):
        return all(_check_range(v, rule) for v in value)
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return not (
            (rule.ge is not None and value < rule.ge)
            or (rule.gt is not None and value <= rule.gt)
            or (rule.le is not None and value > rule.le)
            or (rule.lt is not None and value >= rule.lt)
        )
    if isinstance(value, str):
        if rule.choices is not None and value not in rule.choices:
            return False
        return rule.pattern is None or bool(rule.pattern.match(value.strip()))
    return True


def check_fields(obj: Any) -> None:
    """Check (and normalise in place) every field of the dataclass instance ``obj``.

    Raises ``ConfigError`` "<field> must be <type and range>, got <value>" for the first bad field;
    nested configs' fields are named with dots. Floats must be finite (no NaN or infinity).
    """
    hints = _hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        tp = hints[f.name]
        rule = f.metadata.get("rule")
        try:
            converted = _convert(value, tp, f.name)
        except _Mismatch:
            raise config_error(f.name, f"must be {_expectation(tp, rule)}, got {_shown(value)}.") from None
        except ConfigError as exc:  # a nested config
            raise prefixed(f.name, exc) from None
        if is_dataclass(converted) and not isinstance(converted, type):
            try:
                check_fields(converted)
            except ConfigError as exc:
                raise prefixed(f.name, exc) from None
        if not _check_range(converted, rule or Rule()):  # floats are finite even without a rule
            raise config_error(f.name, f"must be {_expectation(tp, rule)}, got {_shown(value)}.")
        if converted is not value:
            object.__setattr__(obj, f.name, converted)


def check_keys(cls: type, data: Mapping[str, Any]) -> None:
    """Unknown keys (typos) are an error naming them and the known ones."""
    known = {f.name for f in fields(cls)}
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{cls.__name__} setting names are texts, got {bad[0]!r}.")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"Unknown {cls.__name__} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )


def build(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` after refusing unknown keys; the class's ``__post_init__`` checks the values."""
    check_keys(cls, data)
    return cls(**dict(data))


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars as plain dicts, lists and numbers (YAML, JSON, torch)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` (the new object is checked by its ``__post_init__``)."""
    return dataclasses.replace(obj, **changes)


# -------------------------------------------------------------------------------------------- YAML
def _loader() -> type:
    """PyYAML's SafeLoader, reading ``1e-4`` as a number as YAML 1.2 does (1.1 needs ``1.0e-4``).

    Only a resolver is added: tags still construct plain values only, never Python objects.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``{}`` for an empty file); errors name the file.

    ``what`` names the settings for messages ("recipe", "InferenceConfig"). Raises
    ``FileNotFoundError`` for a missing file and ``ConfigError`` for a file that is not text, not
    YAML, uses a Python tag (``!!python/object...``: refused, never run) or is not a mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such {what} file.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file; a {what} file is YAML text (key: value lines).") from None
    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader subclass: plain values only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        if isinstance(exc, yaml.constructor.ConstructorError) and "python/" in str(exc):
            problem = (
                "it uses a Python tag (!!python/...), which would create Python objects or run code; "
                "settings files hold plain values only, so it was refused"
            )
        else:
            problem = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ConfigError(f"{p}{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: a {what} file is a mapping of settings (key: value lines), got {type(data).__name__}."
        )
    return data
