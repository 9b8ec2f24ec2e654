"""The options of the ``metrics`` workflow, declared once like an engine's parameters.

:class:`MetricsParams` is the single declaration of what ``napari-scigen metrics``
and the Metrics dock offer: its fields become the command's flags
(:func:`napari_scigen.core.params.add_cli_arguments`) and the dock's device / LPIPS
backbone fields (:func:`napari_scigen._qt._fields.widget_for`). The scoring scale defaults to the reference's 0.5-99.5
percentile window (:func:`napari_scigen.metrics.pixel.scoring_window`), the default
of every front-end.

Examples
--------
>>> MetricsParams().scoring_range() is None  # the percentile window
True
>>> MetricsParams(data_range="2000,40000").scoring_range()
(2000.0, 40000.0)
>>> MetricsParams(device="gpu")
Traceback (most recent call last):
...
napari_scigen.core.params.declare.ParameterError: device must be auto, cpu, cuda, cuda:N or mps; got 'gpu'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.params import EngineParams, ParameterError, device_param, param
from ..core.validation import InvalidInputError
from .pixel import SCORING_PERCENTILES, SPAN

#: ``data_range`` text meaning the default percentile window.
PERCENTILE = "percentile"


def parse_scoring_range(text: str) -> Any:
    """``None`` (percentile window), ``"span"``, a data range or a ``(low, high)`` window.

    Raises
    ------
    ValueError
        Text that is none of these (the message says what is accepted).
    """
    cleaned = str(text).strip().lower()
    if cleaned in ("", PERCENTILE):
        return None
    if cleaned == SPAN:
        return SPAN
    parts = [part.strip() for part in cleaned.replace(";", ",").split(",")]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"must be {PERCENTILE}, {SPAN}, a number or LOW,HIGH; got {text!r}"
        ) from None
    if len(numbers) == 1 and numbers[0] > 0:
        return numbers[0]
    if len(numbers) == 2 and numbers[0] < numbers[1]:
        return (numbers[0], numbers[1])
    raise ValueError(f"needs a positive number or LOW,HIGH with LOW < HIGH; got {text!r}")


@dataclass(frozen=True)
class MetricsParams(EngineParams):
    """Options of the ``metrics`` workflow (``napari-scigen metrics``, the Metrics dock)."""

    metrics: str = param(
        "ssim,psnr",
        help="comma-separated: ssim, psnr, lpips, gmsd, morphology, fid, kid, prdc, clipscore, "
        "or 'all'",
        kind="text",
    )
    data_range: str = param(
        PERCENTILE,
        help=f"scale of SSIM/PSNR/GMSD: {PERCENTILE} (the reference's "
        f"{SCORING_PERCENTILES[0]:g}-{SCORING_PERCENTILES[1]:g} percentile window, the default "
        f"of every front-end), {SPAN} (dtype span / max-min: flatters 16-bit scans), a number "
        "(a data range) or LOW,HIGH (a window both images are clipped to)",
        kind="text",
        aliases=("window",),
    )
    device: str = device_param(
        "where LPIPS, Inception (FID/KID/PRDC) and CLIP run: auto, cpu, cuda, cuda:N or mps"
    )
    lpips_net: str = param("alex", help="LPIPS backbone", choices=("alex", "vgg"))
    voxel_size: float | None = param(
        None,
        help="voxel size for morphology; none = the reference file's x voxel size",
        min=0.0,
        min_exclusive=True,
    )
    slices: str | None = param(
        None,
        help="score only these z slices of both stacks, e.g. '3, 5, 10-12' or '10:20'",
        kind="text",
    )
    prompt: str | None = param(None, help="text for clipscore", kind="prompt")
    clip_model: str | None = param(None, help="CLIP model id or folder for clipscore", kind="text")

    def check(self) -> None:
        from .evaluate import parse_metrics

        try:
            parse_metrics(self.metrics)
        except InvalidInputError as error:
            raise ParameterError("metrics", f"has {error}") from None
        try:
            parse_scoring_range(self.data_range)
        except ValueError as error:
            raise ParameterError("data_range", str(error)) from None

    def scoring_range(self) -> Any:
        """``data_range`` as :func:`~napari_scigen.metrics.evaluate.run_evaluate` takes it."""
        return parse_scoring_range(self.data_range)
