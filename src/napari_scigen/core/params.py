"""Engine parameters, declared once.

Every engine's parameters are a frozen dataclass deriving from :class:`EngineParams`
whose fields are declared with :func:`param`. The field metadata (help text, bounds,
choices, label, whether it is an advanced setting) is the single source for

* validation: :class:`EngineParams` checks types, bounds and choices of every field
  and raises :class:`ParameterError` (an :class:`~napari_scigen.core.validation.InvalidInputError`)
  naming the field; cross-field rules go in :meth:`EngineParams.check`;
* the command line: :func:`add_cli_arguments` turns the fields into argparse flags
  (``steps`` -> ``--steps``) and :func:`params_from_cli` reads them back;
  :func:`params_to_argv` is the inverse (used by tests and by "copy as command");
* the napari forms: ``napari_scigen._qt._fields`` builds magicgui widgets from
  :func:`fields_of`.

Nothing here imports torch, Qt or napari.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class BlurParams(EngineParams):
...     sigma: float = param(1.0, help="Gaussian sigma in pixels", min=0.0)
...     passes: int = param(1, help="how often to blur", min=1, max=10)
>>> BlurParams(sigma=2).sigma
2.0
>>> BlurParams(passes=0)
Traceback (most recent call last):
...
napari_scigen.core.params.ParameterError: passes must be >= 1, got 0
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .indices import is_index
from .validation import InvalidInputError

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
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} {reason}")
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
    kind: str | None = None  # "path", "dir", "text", "prompt", "device"
    finite: bool = True
    increasing: bool = False


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
        ``"path"`` / ``"dir"`` (file pickers), ``"prompt"`` (wide text), ``"device"``.
    finite : bool
        Floats must be finite (NaN/inf rejected); on by default.
    increasing : bool
        Tuples must be strictly increasing (e.g. a ``(low, high)`` window).
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


@dataclass(frozen=True)
class EngineParams:
    """Base of every engine's parameter dataclass (declare subclasses frozen).

    On construction every field is checked against its declaration and stored in
    canonical form (ints as ``int``, floats as ``float``, sequences as tuples);
    then :meth:`check` runs the cross-field rules.
    """

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
        merged = {**(values or {}), **overrides}
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


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

#: Prefix of the argparse ``dest`` of parameter flags (keeps them apart from command flags).
DEST_PREFIX = "param__"


def _format_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(_format_default(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "''"


def parse_text(spec: FieldSpec, text: str) -> Any:
    """A typed value of ``spec`` from text (a CLI argument, a widget's text field).

    ``""``/``"none"`` is ``None`` for optional fields; tuples are comma-separated.

    Raises
    ------
    ValueError
        ``"expected a number, got 'x'"`` and the like (without the field name).
    """
    text = str(text).strip()
    if text.lower() in ("none", ""):
        if spec.optional:
            return None
        if spec.base is not str:
            raise ValueError("a value is needed")
    if spec.base is tuple:
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        return tuple(_parse_scalar(spec.item, part) for part in parts)
    return _parse_scalar(spec.base, text)


def _parse_scalar(kind: type, text: str) -> Any:
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"expected {noun}, got {text!r}") from None
    return text


def _argparse_type(spec: FieldSpec):
    def parse(text: str):
        try:
            return parse_text(spec, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "list" if spec.base is tuple else spec.base.__name__
    return parse


def _argparse_kwargs(spec: FieldSpec, users: Sequence[str] = ()) -> dict[str, Any]:
    info = spec.info
    where = f" [{', '.join(users)}]" if users else ""
    help_text = f"{info.help}{where} (default: {_format_default(spec.default)})"
    kwargs: dict[str, Any] = {
        "dest": DEST_PREFIX + spec.name,
        "default": argparse.SUPPRESS,
        "help": help_text.replace("%", "%%"),
    }
    if spec.base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if spec.base is tuple:
        kwargs["type"] = _argparse_type(spec)
        kwargs["metavar"] = ",".join([spec.item.__name__.upper()] * (spec.length or 2))
        return kwargs
    kwargs["type"] = _argparse_type(spec)
    if info.choices is not None:
        kwargs["choices"] = list(info.choices)
        kwargs["metavar"] = "{" + ",".join(map(str, info.choices)) + "}"
    else:
        kwargs["metavar"] = {"int": "N", "float": "X", "str": "TEXT"}[spec.base.__name__]
        if info.kind in ("path", "dir"):
            kwargs["metavar"] = "PATH"
    return kwargs


def add_cli_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: Sequence[str] = (),
    users: Sequence[str] = (),
    taken: set[str] | None = None,
) -> list[str]:
    """Add one flag per declared field of ``cls`` to ``parser``.

    Flags are added with ``default=argparse.SUPPRESS`` so that only the flags a user
    typed reach :func:`params_from_cli`; the params class supplies every default.

    Parameters
    ----------
    parser : ArgumentParser or argument group
        Where to add the flags.
    cls : type
        An :class:`EngineParams` subclass.
    exclude : sequence of str
        Field names not to expose (the command sets them itself).
    users : sequence of str
        Engine names shown in the help (``[flow, stylegan]``) when one command
        serves several engines.
    taken : set of str, optional
        Flags already added by another class on the same parser; they are skipped
        (one flag then serves every engine that declares the field) and the set is
        updated.

    Returns
    -------
    list of str
        The flags added.
    """
    added = []
    for spec in fields_of(cls):
        if not spec.info.cli or spec.name in exclude:
            continue
        if taken is not None and spec.flag in taken:
            continue
        parser.add_argument(spec.flag, **_argparse_kwargs(spec, users))
        added.append(spec.flag)
        if taken is not None:
            taken.add(spec.flag)
    return added


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The parameter flags a user typed, as ``{field name: value}``."""
    return {
        key[len(DEST_PREFIX) :]: value
        for key, value in vars(namespace).items()
        if key.startswith(DEST_PREFIX)
    }


def params_from_cli(
    cls: type,
    namespace: argparse.Namespace,
    *,
    base: Mapping[str, Any] | None = None,
    ignore_foreign: bool = False,
    **fixed: Any,
):
    """Build ``cls`` from the typed flags that belong to it, plus ``fixed`` values.

    ``base`` values (e.g. a workflow's own defaults) are overridden by typed flags;
    ``fixed`` values override both. With ``ignore_foreign``, typed flags of other
    classes are left for them (a command running several engines).

    Raises
    ------
    InvalidInputError
        When a typed flag does not belong to ``cls`` (e.g. a StyleGAN flag with
        ``--method flow``), or a value is invalid (the message names the flag).
    """
    typed = cli_values(namespace)
    specs = {spec.name: spec for spec in fields_of(cls)}
    foreign = sorted(name for name in typed if name not in specs)
    if foreign and not ignore_foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise InvalidInputError(f"{flags} do(es) not apply here ({cls.__name__})")
    typed = {name: value for name, value in typed.items() if name in specs}
    try:
        return cls.from_mapping({**(base or {}), **typed, **fixed})
    except ParameterError as error:
        spec = specs.get(error.field)
        if spec is not None and spec.info.cli and error.field in typed:
            raise InvalidInputError(f"{spec.flag} {error.reason}") from None
        raise


def params_to_argv(params: EngineParams, *, exclude: Sequence[str] = ()) -> list[str]:
    """The CLI flags that rebuild ``params`` (fields equal to the default are left out).

    The inverse of :func:`params_from_cli`: parsing the returned tokens with a parser
    made by :func:`add_cli_arguments` gives back an equal ``params``.
    """
    argv: list[str] = []
    for spec in fields_of(type(params)):
        if not spec.info.cli or spec.name in exclude:
            continue
        value = getattr(params, spec.name)
        if value == spec.default:
            continue
        if spec.base is bool:
            argv.append(spec.flag if value else "--no-" + spec.flag[2:])
        elif value is None:
            argv += [spec.flag, "none"]
        elif spec.base is tuple:
            argv += [spec.flag, ",".join(repr(v) if spec.item is float else str(v) for v in value)]
        elif spec.base is float:
            argv += [spec.flag, repr(value)]
        else:
            argv += [spec.flag, str(value)]
    return argv


def describe_params(cls: type) -> list[dict[str, Any]]:
    """Rows ``{name, flag, type, default, help, bounds}`` for docs and ``--help`` tables."""
    rows = []
    for spec in fields_of(cls):
        bounds = []
        if spec.info.min is not None:
            bounds.append(f"{'>' if spec.info.min_exclusive else '>='} {spec.info.min:g}")
        if spec.info.max is not None:
            bounds.append(f"<= {spec.info.max:g}")
        if spec.info.choices is not None:
            bounds.append("one of " + ", ".join(map(str, spec.info.choices)))
        type_name = (
            spec.base.__name__ if spec.base is not tuple else f"tuple of {spec.item.__name__}"
        )
        rows.append(
            {
                "name": spec.name,
                "flag": spec.flag if spec.info.cli else "",
                "type": type_name + (" or none" if spec.optional else ""),
                "default": _format_default(spec.default),
                "help": spec.help,
                "bounds": "; ".join(bounds),
            }
        )
    return rows
