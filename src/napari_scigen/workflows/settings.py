"""The options of the ``validate`` workflow, declared once like an engine's parameters.

:class:`ValidateParams` is the single declaration of what ``napari-scigen validate``
offers besides the engine flags: its fields become the command's flags
(:func:`napari_scigen.core.params.add_cli_arguments`, flag = field name) and its checks
run before any work (as ``--flag`` errors on the command line).

Examples
--------
>>> ValidateParams().methods
'linear,flow'
>>> ValidateParams(drop_every=1)
Traceback (most recent call last):
...
napari_scigen.core.params.declare.ParameterError: drop_every must be an integer >= 2, got 1
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.params import EngineParams, ParameterError, device_param, param
from ..core.validation import InvalidInputError
from .validate import DEFAULT_METHODS, VALIDATION_METRICS


@dataclass(frozen=True)
class ValidateParams(EngineParams):
    """Options of the ``validate`` workflow (``napari-scigen validate``)."""

    drop_every: int | None = param(
        None, help="hold out one interior slice in G (none: 4 unless --keep-every is given)"
    )
    keep_every: int | None = param(
        None, help="keep slices 0, G, 2G, ... and rebuild the rest (not with --drop-every)"
    )
    offset: int | None = param(
        None,
        help="first held-out slice (--drop-every, default 1) or first kept slice "
        "(--keep-every, default 0)",
    )
    methods: str = param(
        ",".join(DEFAULT_METHODS),
        help="comma-separated interpolation methods (the registered interpolation engines, "
        "see `napari-scigen engines`)",
        kind="text",
    )
    metrics: str = param(
        ",".join(VALIDATION_METRICS),
        help="comma-separated: "
        + ", ".join(VALIDATION_METRICS)
        + " (GMSD needs no weights: the offline substitute when LPIPS' backbone is missing)",
        kind="text",
    )
    device: str = device_param("torch device of LPIPS and every method with a device")

    def check(self) -> None:
        from .validate import parse_names, validation_methods

        if self.drop_every is not None and self.keep_every is not None:
            raise ParameterError("keep_every", "cannot be combined with --drop-every")
        for name in ("drop_every", "keep_every"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ParameterError(name, f"must be an integer >= 2, got {value}")
        low = 0 if self.keep_every else 1
        if self.offset is not None and self.offset < low:
            raise ParameterError("offset", f"must be >= {low} here, got {self.offset}")
        for name, known in (("methods", validation_methods()), ("metrics", VALIDATION_METRICS)):
            try:
                parse_names(getattr(self, name), known, name)
            except InvalidInputError as error:
                raise ParameterError(name, f"has {error}") from None

    def method_names(self) -> tuple[str, ...]:
        """The chosen methods, checked against the registered interpolation engines."""
        from .validate import parse_names, validation_methods

        return parse_names(self.methods, validation_methods(), "methods")
