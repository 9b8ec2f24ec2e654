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


def test_the_mask_dock_fields_are_the_mask_tool_declaration(rock_viewer):
    from napari_scigen._qt._mask_widget import MaskWidget
    from napari_scigen.core.params import fields_of
    from napari_scigen.workflows.settings import MaskToolParams

    viewer, _ = rock_viewer
    widget = MaskWidget(viewer)
    for spec in fields_of(MaskToolParams):
        field = widget.fields[spec.name]
        assert (field.value, field.label) == (spec.default, spec.label)
        assert spec.help[1:] in field.tooltip
        if spec.info.max is not None:
            assert (field.min, field.max) == (spec.info.min, spec.info.max)
    assert widget.settings() == MaskToolParams()


def test_the_mask_dock_refuses_a_threshold_window_that_is_not_increasing(rock_viewer):
    from napari_scigen._qt._mask_widget import MaskWidget

    viewer, _ = rock_viewer
    widget = MaskWidget(viewer)
    widget.low.value, widget.high.value = 5.0, 5.0
    widget.mask_from_threshold()
    assert widget.status.text() == "Error: threshold high must be above threshold low (5), got 5"
    assert len(viewer.layers) == 1
