"""Dock fields of workflow options come from their one declaration (same default and choices)."""

from __future__ import annotations

from napari_scigen.core.params import field_spec
from napari_scigen.engines.sd.params import StableDiffusionParams
from napari_scigen.metrics.settings import MetricsParams


def test_the_mask_dock_feathers_like_the_engines_by_default(rock_viewer):
    from napari_scigen._qt._mask_widget import MaskWidget

    viewer, _ = rock_viewer
    widget = MaskWidget(viewer)
    assert widget.feather.value == field_spec(StableDiffusionParams, "feather").default == 3.0


def test_the_metrics_dock_offers_the_metrics_command_s_device_and_backbone(rock_viewer):
    from napari_scigen._qt._metrics_widget import MetricsWidget

    viewer, _ = rock_viewer
    widget = MetricsWidget(viewer)
    for name in ("device", "lpips_net"):
        spec = field_spec(MetricsParams, name)
        field = getattr(widget, name)
        assert field.value == spec.default
        assert spec.help[1:] in field.tooltip and spec.flag in field.tooltip  # "CLI: --device"
    assert list(widget.lpips_net.choices) == ["alex", "vgg"]
    assert {"auto", "cpu", "cuda", "mps"} <= set(widget.device.choices)
