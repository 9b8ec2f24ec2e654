"""Declaring, validating and building engine parameters (see :mod:`napari_scigen.core.params`)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..indices import is_index
from ..validation import InvalidInputError

#: Key of this module's record in a dataclass field's metadata.
METADATA_KEY = "napari_scigen"


class ParameterError(InvalidInputError):
    """A parameter value is out of its declared type, bounds or choices.

    Attributes
    ----------
    field : str
        The dataclass field name (the CLI flag is ``--`` + the name with dashes).
    reason : str
        What is wrong, without the field name (``"must be >= 1, got 0"``).
    options : tuple of str
        Other options the reason spells as keyword arguments (``drop_every=G``), which
        front-ends respell (see :mod:`napari_scigen.core.validation`); the field itself
        is the message's subject, shown as each front-end names it.
    """

    def __init__(self, field: str, reason: str, *, options=()):
        super().__init__(f"{field} {reason}", options=options)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ParamInfo:
    """What :func:`param` records about one field (see there)."""

    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] | None = None
    step: float | None = None
    label: str | None = None
    flag: str | None = None
    advanced: bool = False
    cli: bool = True
    gui: bool = True
    kind: str | None = None  # "path", "dir", "text", "prompt", "device", "lines"
    finite: bool = True
    increasing: bool = False
    aliases: tuple[str, ...] = ()


def param(
    default: Any = dataclasses.MISSING,
    *,
    help: str,  # noqa: A002 - the argparse word, on purpose
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    min_exclusive: bool = False,
    choices: Sequence[Any] | None = None,
    step: float | None = None,
    label: str | None = None,
    flag: str | None = None,
    advanced: bool = False,
    cli: bool = True,
    gui: bool = True,
    kind: str | None = None,
    finite: bool = True,
    increasing: bool = False,
    aliases: Sequence[str] = (),
) -> Any:
    """Declare one engine parameter (a dataclass field with metadata).

    Parameters
    ----------
    default : object
        Default value (immutable: numbers, strings, tuples, ``None``).
    help : str
        One sentence for ``--help``, the widget tooltip and the docs.
    min, max : float, optional
        Inclusive bounds (``min_exclusive=True`` makes ``min`` exclusive). For
        tuples they apply to every item.
    choices : sequence, optional
        The allowed values.
    step : float, optional
        Spin-box step in the widget.
    label : str, optional
        Widget label (default: the field name with spaces).
    flag : str, optional
        CLI flag without dashes (default: the field name with dashes).
    advanced : bool
        Shown in the widget's collapsed "Advanced" section.
    cli, gui : bool
        Whether the field becomes a CLI flag / a widget field.
    kind : str, optional
        ``"path"`` / ``"dir"`` (file pickers), ``"prompt"`` (wide text), ``"device"``,
        ``"lines"`` (a tuple of text given one item per flag, ``--flag A --flag B``: the
        items may hold commas).
    finite : bool
        Floats must be finite (NaN/inf rejected); on by default.
    increasing : bool
        Tuples must be strictly increasing (e.g. a ``(low, high)`` window).
    aliases : sequence of str
        Former names of the field, still accepted for one release with a
        ``DeprecationWarning``: as keyword (``Params(old=...)``), attribute, mapping key
        and CLI flag (``--old-name``, hidden from ``--help``).
    """
    info = ParamInfo(
        help=help,
        min=min,
        max=max,
        min_exclusive=min_exclusive,
        choices=tuple(choices) if choices is not None else None,
        step=step,
        label=label,
        flag=flag,
        advanced=advanced,
        cli=cli,
        gui=gui,
        kind=kind,
        finite=finite,
        increasing=increasing,
        aliases=tuple(aliases),
    )
    return dataclasses.field(default=default, metadata={METADATA_KEY: info})


@dataclass(frozen=True)
class FieldSpec:
    """A declared field, with its annotation resolved.

    Attributes
    ----------
    name : str
        Field name.
    base : type
        ``int``, ``float``, ``bool``, ``str`` or ``tuple``.
    optional : bool
        ``None`` is accepted.
    item : type or None
        Item type of a tuple field.
    length : int or None
        Fixed length of a tuple field (``None``: any length).
    default : object
        The default value.
    info : ParamInfo
        The declaration.
    """

    name: str
    base: type
    optional: bool
    item: type | None
    length: int | None
    default: Any
    info: ParamInfo

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--projection-steps``."""
        return "--" + (self.info.flag or self.name.replace("_", "-"))

    @property
    def label(self) -> str:
        """The widget label."""
        return self.info.label or self.name.replace("_", " ")

    @property
    def help(self) -> str:
        """The help sentence."""
        return self.info.help


def _resolve(annotation: Any) -> tuple[type, bool, type | None, int | None]:
    """``(base, optional, item, length)`` of a field annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported parameter annotation {annotation!r}")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple, optional, args[0], None
        if args and all(a is args[0] for a in args):
            return tuple, optional, args[0], len(args)
        raise TypeError(f"unsupported tuple annotation {annotation!r}")
    if annotation in (int, float, bool, str):
        return annotation, optional, None, None
    raise TypeError(f"unsupported parameter annotation {annotation!r}")


@functools.cache
def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The declared fields of a params class, in declaration order.

    Every field of an :class:`EngineParams` subclass must be declared with
    :func:`param` (so it has help text); a plain field raises ``TypeError``.
    """
    hints = typing.get_type_hints(cls)
    specs = []
    for field in dataclasses.fields(cls):
        info = field.metadata.get(METADATA_KEY)
        if info is None:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with param(help=...)")
        base, optional, item, length = _resolve(hints[field.name])
        specs.append(FieldSpec(field.name, base, optional, item, length, field.default, info))
    return tuple(specs)


def field_spec(cls: type, name: str) -> FieldSpec:
    """One declared field of ``cls`` by name."""
    for spec in fields_of(cls):
        if spec.name == name:
            return spec
    raise KeyError(name)


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------


def _coerce_scalar(spec: FieldSpec, kind: type, value: Any, what: str) -> Any:
    """Check one scalar against its type; return it in canonical Python form."""
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ParameterError(what, f"must be true or false, got {value!r}")
    if kind is int:
        if is_index(value):
            return int(value)
        raise ParameterError(what, f"must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise ParameterError(what, f"must be a number, got {value!r}")
        number = float(value)
        if spec.info.finite and not math.isfinite(number):
            raise ParameterError(what, f"must be a finite number, got {value!r}")
        return number
    if kind is str:
        if isinstance(value, str):
            return value
        raise ParameterError(what, f"must be text, got {value!r}")
    raise TypeError(kind)  # pragma: no cover - excluded by _resolve


#: A torch device request: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device_param(
    help: str = "torch device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps",
    **kwargs: Any,
) -> Any:  # noqa: A002
    """The ``device`` field every torch engine declares (same check, flag and widget)."""
    return param("auto", help=help, kind="device", **kwargs)


def _check_bounds(spec: FieldSpec, value: Any, what: str) -> None:
    info = spec.info
    if info.min is not None:
        if info.min_exclusive and not value > info.min:
            raise ParameterError(what, f"must be > {info.min:g}, got {value!r}")
        if not info.min_exclusive and not value >= info.min:
            raise ParameterError(what, f"must be >= {info.min:g}, got {value!r}")
    if info.max is not None and not value <= info.max:
        raise ParameterError(what, f"must be <= {info.max:g}, got {value!r}")


def check_value(spec: FieldSpec, value: Any) -> Any:
    """Validate ``value`` for ``spec`` and return its canonical form.

    Raises
    ------
    ParameterError
        Wrong type (bools are not integers, integers must not be floats, floats must
        be finite), out of bounds, not one of the choices, or a tuple of the wrong length.
    """
    if value is None:
        if spec.optional:
            return None
        raise ParameterError(spec.name, "must be given (None is not allowed)")
    if spec.base is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)):
            raise ParameterError(spec.name, f"must be a sequence, got {value!r}")
        items = list(value)
        if spec.length is not None and len(items) != spec.length:
            raise ParameterError(spec.name, f"must have {spec.length} values, got {len(items)}")
        result = []
        for item in items:
            canonical = _coerce_scalar(spec, spec.item, item, spec.name)
            if spec.item in (int, float):
                _check_bounds(spec, canonical, spec.name)
            if spec.info.choices is not None and canonical not in spec.info.choices:
                raise ParameterError(
                    spec.name, f"values must be among {list(spec.info.choices)}, got {item!r}"
                )
            result.append(canonical)
        if spec.info.increasing and any(b <= a for a, b in itertools.pairwise(result)):
            raise ParameterError(spec.name, f"must be increasing (low < high), got {tuple(result)}")
        return tuple(result)
    canonical = _coerce_scalar(spec, spec.base, value, spec.name)
    if spec.info.kind == "device" and not DEVICE_PATTERN.match(canonical.strip().lower()):
        raise ParameterError(spec.name, f"must be auto, cpu, cuda, cuda:N or mps; got {value!r}")
    if spec.info.choices is not None and canonical not in spec.info.choices:
        choices = ", ".join(map(str, spec.info.choices))
        raise ParameterError(spec.name, f"must be one of {choices}; got {value!r}")
    if spec.base in (int, float):
        _check_bounds(spec, canonical, spec.name)
    return canonical


# ---------------------------------------------------------------------------------------
# deprecated aliases (former field names kept for one release)
# ---------------------------------------------------------------------------------------


@functools.cache
def aliases_of(cls: type) -> dict[str, str]:
    """``{former name: field name}`` of a params class (see ``param(aliases=...)``)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    return {old: spec.name for spec in fields_of(cls) for old in spec.info.aliases}


def warn_deprecated(old: str, new: str, where: str, *, stacklevel: int = 3) -> None:
    """The one ``DeprecationWarning`` of a former parameter name (keyword or flag)."""
    warnings.warn(
        f"{where}: {old} is deprecated, use {new} (the old name goes in the next release)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def translate_aliases(cls: type, values: Mapping[str, Any], *, stacklevel: int = 4) -> dict:
    """``values`` with former field names replaced by the current ones (with a warning).

    Raises
    ------
    InvalidInputError
        When a former name and its current name are both given.
    """
    aliases = aliases_of(cls)
    if not aliases or not any(name in aliases for name in values):
        return dict(values)
    translated: dict[str, Any] = {}
    for name, value in values.items():
        new = aliases.get(name)
        if new is None:
            translated[name] = value
            continue
        if new in values:
            raise InvalidInputError(f"{name} and {new} name the same parameter; give only {new}")
        warn_deprecated(name, new, cls.__name__, stacklevel=stacklevel)
        translated[new] = value
    return translated


class _ParamsMeta(type):
    """Lets a params class accept its former field names as keywords (with a warning)."""

    def __call__(cls, *args: Any, **kwargs: Any):
        if kwargs:
            kwargs = translate_aliases(cls, kwargs)
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True)
class EngineParams(metaclass=_ParamsMeta):
    """Base of every engine's parameter dataclass (declare subclasses frozen).

    On construction every field is checked against its declaration and stored in
    canonical form (ints as ``int``, floats as ``float``, sequences as tuples);
    then :meth:`check` runs the cross-field rules. A field's former names
    (``param(aliases=...)``) are accepted as keywords and read as attributes, with a
    ``DeprecationWarning``.
    """

    def __getattr__(self, name: str) -> Any:
        new = aliases_of(type(self)).get(name) if not name.startswith("__") else None
        if new is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warn_deprecated(name, new, type(self).__name__)
        return getattr(self, new)

    def __post_init__(self) -> None:
        for spec in fields_of(type(self)):
            canonical = check_value(spec, getattr(self, spec.name))
            object.__setattr__(self, spec.name, canonical)
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise :class:`ParameterError` (override in subclasses)."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **overrides: Any):
        """Build from a mapping plus keyword overrides; unknown names are an error.

        Raises
        ------
        InvalidInputError
            Naming the unknown parameters and the accepted ones.
        """
        merged = translate_aliases(cls, {**(values or {}), **overrides})
        known = {spec.name for spec in fields_of(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                f"accepted: {', '.join(sorted(known)) or 'none'}"
            )
        return cls(**merged)

    def replace(self, **overrides: Any):
        """A copy with some fields replaced (checked like the constructor)."""
        if not overrides:
            return self
        overrides = translate_aliases(type(self), overrides)
        return type(self).from_mapping(self.to_dict(), **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (tuples stay tuples)."""
        return {spec.name: getattr(self, spec.name) for spec in fields_of(type(self))}


def make_params(cls: type, params: Any = None, overrides: Mapping[str, Any] | None = None):
    """``params`` (an instance of ``cls``, a mapping or ``None``) with ``overrides`` applied.

    Raises
    ------
    InvalidInputError
        ``params`` of another engine's class, or unknown/invalid fields.
    """
    overrides = dict(overrides or {})
    if params is None:
        return cls.from_mapping(overrides)
    if isinstance(params, Mapping):
        return cls.from_mapping(params, **overrides)
    if not isinstance(params, cls):
        raise InvalidInputError(
            f"params must be a {cls.__name__} (or a dict of its fields), got {type(params).__name__}"
        )
    return params.replace(**overrides)
