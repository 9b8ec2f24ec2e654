"""Command-line flags from parameter declarations, and back (see :mod:`napari_scigen.core.params`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..validation import InvalidInputError
from .declare import (
    DEVICE_PATTERN,
    EngineParams,
    FieldSpec,
    ParameterError,
    fields_of,
    warn_deprecated,
)

#: Prefix of the argparse ``dest`` of parameter flags (keeps them apart from command flags).
DEST_PREFIX = "param__"


def format_default(value: Any) -> str:
    """A default as ``--help`` and the docs show it (``on``/``off``, ``none``, ``a,b``)."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(format_default(v) for v in value) or "none"
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
            value = parse_text(spec, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if spec.info.kind == "device" and not DEVICE_PATTERN.match(str(value).strip().lower()):
            # checked while parsing: also when the chosen method has no device
            raise argparse.ArgumentTypeError(
                f"must be auto, cpu, cuda, cuda:N or mps; got {text!r}"
            )
        return value

    parse.__name__ = "list" if spec.base is tuple else spec.base.__name__
    return parse


def _argparse_kwargs(spec: FieldSpec, users: Sequence[str] = ()) -> dict[str, Any]:
    info = spec.info
    where = f" [{', '.join(users)}]" if users else ""
    help_text = f"{info.help}{where} (default: {format_default(spec.default)})"
    kwargs: dict[str, Any] = {
        "dest": DEST_PREFIX + spec.name,
        "default": argparse.SUPPRESS,
        "help": help_text.replace("%", "%%"),
    }
    if spec.base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if spec.base is tuple and info.kind == "lines":  # one item per flag (items hold commas)
        kwargs["action"] = "append"
        kwargs["metavar"] = "LINE"
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


def deprecated_action(base: type[argparse.Action], new_flag: str) -> type[argparse.Action]:
    """An argparse action that stores like ``base`` after warning that the flag is old.

    The warning is one line on stderr (``prog: warning: --old is deprecated, use --new``)
    plus a ``DeprecationWarning`` for scripts and tests.
    """

    class Deprecated(base):
        def __call__(self, parser, namespace, values, option_string=None):
            message = f"{option_string} is deprecated, use {new_flag}"
            print(f"{parser.prog}: warning: {message}", file=sys.stderr)
            warn_deprecated(option_string, new_flag, parser.prog, stacklevel=2)
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def _add_alias_flags(parser, spec: FieldSpec, kwargs: dict[str, Any], taken) -> None:
    """The former flags of ``spec`` (hidden from ``--help``), warning when used."""
    for old in spec.info.aliases:
        flag = "--" + old.replace("_", "-")
        if taken is not None:
            if flag in taken:
                continue
            taken.add(flag)
        hidden = {**kwargs, "help": argparse.SUPPRESS}
        # a former flag may carry former values: the params class checks (and maps) them
        hidden.pop("choices", None)
        if spec.base is bool:
            hidden["action"] = deprecated_action(argparse.BooleanOptionalAction, spec.flag)
        else:
            hidden["action"] = deprecated_action(argparse._StoreAction, spec.flag)
        parser.add_argument(flag, **hidden)


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
        kwargs = _argparse_kwargs(spec, users)
        if taken is None or spec.flag not in taken:
            parser.add_argument(spec.flag, **kwargs)
            added.append(spec.flag)
            if taken is not None:
                taken.add(spec.flag)
        _add_alias_flags(parser, spec, kwargs, taken)
    return added


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The parameter flags a user typed, as ``{field name: value}``."""
    return {
        key[len(DEST_PREFIX) :]: value
        for key, value in vars(namespace).items()
        if key.startswith(DEST_PREFIX)
    }


def without_params(namespace: argparse.Namespace, cls: type) -> argparse.Namespace:
    """``namespace`` less the flags of ``cls`` (a workflow's own flags, so that what is
    left are the engines' flags, e.g. for :func:`params_from_cli` of an engine)."""
    own = {DEST_PREFIX + spec.name for spec in fields_of(cls)}
    return argparse.Namespace(**{k: v for k, v in vars(namespace).items() if k not in own})


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
        elif spec.base is tuple and spec.info.kind == "lines":
            argv += [token for item in value for token in (spec.flag, str(item))]
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
                "default": format_default(spec.default),
                "help": spec.help,
                "bounds": "; ".join(bounds),
            }
        )
    return rows
