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
napari_scigen.core.params.declare.ParameterError: passes must be >= 1, got 0
"""

from __future__ import annotations

from .cli import (
    DEST_PREFIX,
    add_cli_arguments,
    cli_values,
    describe_params,
    params_from_cli,
    params_to_argv,
    parse_text,
    without_params,
)
from .common import (
    MAX_SEED,
    count_param,
    learning_rate_param,
    seed_param,
    train_steps_param,
)
from .declare import (
    DEVICE_PATTERN,
    METADATA_KEY,
    EngineParams,
    FieldSpec,
    ParameterError,
    ParamInfo,
    aliases_of,
    check_value,
    device_param,
    field_spec,
    fields_of,
    make_params,
    param,
    translate_aliases,
    warn_deprecated,
)

__all__ = [
    "DEST_PREFIX",
    "DEVICE_PATTERN",
    "MAX_SEED",
    "METADATA_KEY",
    "EngineParams",
    "FieldSpec",
    "ParamInfo",
    "ParameterError",
    "add_cli_arguments",
    "aliases_of",
    "check_value",
    "cli_values",
    "count_param",
    "describe_params",
    "device_param",
    "field_spec",
    "fields_of",
    "learning_rate_param",
    "make_params",
    "param",
    "params_from_cli",
    "params_to_argv",
    "parse_text",
    "seed_param",
    "train_steps_param",
    "translate_aliases",
    "warn_deprecated",
    "without_params",
]
