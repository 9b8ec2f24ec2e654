"""DiffEdit and ControlNet dock widgets on tiny offline Stable Diffusion pipelines (CPU)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen._qt._controlnet_widget import (  # noqa: E402
    CONTROL_CANNY,
    CONTROL_LAYER,
    ControlNetWidget,
)
from napari_scigen._qt._diffedit_widget import DiffEditWidget  # noqa: E402
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from tiny_sd import TINY_RESOLUTION, tiny_models  # noqa: E402

SCALE = (4.0, 1.5, 1.5)


def digest(array) -> str:
    """SHA-256 of an array's bytes (to prove an input layer was not modified)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny SD / DiffEdit / ControlNet folders, built once per test process."""
    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_widgets"))


@pytest.fixture
def disk_viewer(make_napari_viewer):
    """A viewer with a 3 x 64 x 64 uint16 volume 'vol' (a noisy disk) and a box mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disk = np.hypot(yy - 32, xx - 32) < 16
    volume = np.stack(
        [(disk * 25000 + 8000 + rng.normal(0, 800, (64, 64))).clip(0) for _ in range(3)]
    ).astype(np.uint16)
    viewer = make_napari_viewer()
    image = viewer.add_image(volume, name="vol", scale=SCALE)
    mask = np.zeros(volume.shape, np.uint8)
    mask[1, 20:40, 24:44] = 1
    viewer.add_labels(mask, name="box", scale=SCALE)
    return viewer, image, mask


def _set(widget, **values) -> None:
    """Type ``values`` into the widget's parameter fields (by field name)."""
    for name, value in values.items():
        widget.fields[name].value = value


def _diffedit(viewer, tiny) -> DiffEditWidget:
    widget = DiffEditWidget(viewer)
    widget.image_picker.value = "vol"
    _set(widget, model=str(tiny.sd), local_files_only=True, source_prompt="rock")
    _set(widget, prompt="a pore", steps=4, strength=0.5, guidance_scale=5.0)
    _set(widget, resolution=TINY_RESOLUTION, context=8, feather=2.0, device="cpu", seed=7)
    return widget


def _controlnet(viewer, tiny) -> ControlNetWidget:
    widget = ControlNetWidget(viewer)
    widget.image_picker.value = "vol"
    _set(widget, model=str(tiny.sd), controlnet_model=str(tiny.controlnet))
    _set(widget, inpaint_controlnet_model=str(tiny.controlnet), local_files_only=True)
    _set(widget, prompt="rock", steps=3, guidance_scale=5.0, resolution=TINY_RESOLUTION)
    _set(widget, context=8, feather=2.0, device="cpu", scheduler="ddim", seed=11)
    return widget


def test_slice_field_reads_all_current_and_ranges(disk_viewer, tiny):
    from napari_scigen._qt._shared import read_slices

    viewer, image, _ = disk_viewer
    widget = DiffEditWidget(viewer)
    viewer.dims.set_point(0, 2 * SCALE[0])  # show slice 2
    for text, expected in (("all", None), (" Current ", (2,)), ("0-1", (0, 1)), ("1:3", (1, 2))):
        widget.slices.value = text
        assert read_slices(widget.slices, viewer, image) == expected
    widget.slices.value = "1-5"
    with pytest.raises(ValueError, match="outside"):
        read_slices(widget.slices, viewer, image)


def test_parameter_fields_come_from_the_declarations(disk_viewer, tiny):
    from napari_scigen.core.params import fields_of
    from napari_scigen.engines.sd.params import ControlNetParams, DiffEditParams

    viewer, *_ = disk_viewer
    diffedit, controlnet = DiffEditWidget(viewer), ControlNetWidget(viewer)
    assert set(diffedit.fields.widgets) == {spec.name for spec in fields_of(DiffEditParams)}
    shown = {spec.name for spec in fields_of(ControlNetParams)} - {"masked_control"}
    assert set(controlnet.fields.widgets) == shown  # the control choice sets masked_control
    assert diffedit.params() == DiffEditParams()
    assert controlnet.params() == ControlNetParams()
    assert "--guidance" in diffedit.fields["guidance_scale"].tooltip


def test_diffedit_widget_edit_adds_layer_and_keeps_pixels_outside_mask(
    disk_viewer, tiny, nothreads
):
    viewer, image, mask = disk_viewer
    before = digest(image.data)
    widget = _diffedit(viewer, tiny)
    widget.mask_picker.value = "box"
    widget.slices.value = "1"
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    result = viewer.layers["vol diffedit 1"]
    assert result.data.shape == image.data.shape and result.data.dtype == np.uint16
    outside = mask == 0
    np.testing.assert_array_equal(result.data[outside], image.data[outside])
    assert not np.array_equal(result.data[~outside], image.data[~outside])
    assert tuple(result.scale) == SCALE
    assert result.metadata["provenance"]["engine"] == "diffedit"
    assert not [layer for layer in viewer.layers if "diffedit mask" in layer.name]
    assert digest(image.data) == before


def test_diffedit_widget_generates_editable_mask_layer_and_selects_it(disk_viewer, tiny, nothreads):
    viewer, image, _ = disk_viewer
    before = digest(image.data)
    widget = _diffedit(viewer, tiny)
    widget.fields["mask_threshold"].value = 1.0
    viewer.dims.set_point(0, 2 * SCALE[0])  # show slice 2
    widget.slices.value = "current"
    widget.generate_mask_button.native.click()
    assert widget.status.text() == "Done.", widget.status.text()
    mask_layer = viewer.layers["vol diffedit mask 1"]
    assert type(mask_layer).__name__ == "Labels" and mask_layer.editable
    assert mask_layer.mode == "paint" and mask_layer.selected_label == 1
    assert widget.mask_picker.value == "vol diffedit mask 1"
    assert mask_layer.data.shape == image.data.shape and tuple(mask_layer.scale) == SCALE
    assert mask_layer.data[2].any() and not mask_layer.data[[0, 1]].any()
    assert mask_layer.metadata["provenance"]["engine"] == "diffedit-mask"
    assert "vol diffedit 1" not in viewer.layers  # no edit yet
    assert widget.run_button.isEnabled() and widget.generate_mask_button.enabled
    assert digest(image.data) == before


def test_diffedit_widget_threaded_cancel_adds_no_layer(disk_viewer, tiny, qtbot):
    viewer, image, _ = disk_viewer
    widget = _diffedit(viewer, tiny)
    widget.mask_picker.value = "box"
    widget.slices.value = "all"
    _set(widget, steps=40, strength=1.0)
    n_layers = len(viewer.layers)
    steps_seen = []
    original = widget._on_progress

    def cancel_on_first_step(event):
        original(event)
        if "step" in event.message:
            steps_seen.append(event.step)
            widget.cancel()

    widget._on_progress = cancel_on_first_step
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "cancelled", widget.status.text()
    assert len(viewer.layers) == n_layers
    assert steps_seen and max(steps_seen) < 20  # stopped long before the 80 steps
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and widget.generate_mask_button.enabled


def test_controlnet_canny_preview_follows_sigma_and_matches_engine(disk_viewer, tiny):
    from napari_scigen.core.stack import percentile_window
    from napari_scigen.engines.sd.control import canny_condition

    viewer, image, _ = disk_viewer
    widget = ControlNetWidget(viewer)
    widget.image_picker.value = "vol"
    assert "vol canny preview" not in viewer.layers  # only on request
    widget.live_preview.value = True
    preview = viewer.layers["vol canny preview"]
    assert preview is widget.preview_layer
    assert preview.data.shape == image.data.shape and tuple(preview.scale) == SCALE
    window = percentile_window(np.asarray(image.data), 0.5, 99.5)
    expected = canny_condition(image.data[1], sigma=2.0, low=0.1, high=0.2, window=window)
    np.testing.assert_array_equal(preview.data[1], expected)
    sharp = np.array(preview.data, copy=True)
    widget.fields["canny_sigma"].value = 0.5
    assert viewer.layers["vol canny preview"] is preview  # updated in place, no new layer
    assert not np.array_equal(preview.data, sharp)
    assert np.count_nonzero(preview.data) > np.count_nonzero(sharp)  # less smoothing, more edges
    widget.live_preview.value = False
    frozen = np.array(preview.data, copy=True)
    widget.fields["canny_sigma"].value = 3.0
    np.testing.assert_array_equal(preview.data, frozen)  # no live preview: left alone


def test_controlnet_preview_of_a_large_volume_follows_the_current_slice(
    disk_viewer, tiny, monkeypatch
):
    from napari_scigen._qt import _controlnet_widget

    monkeypatch.setattr(_controlnet_widget, "PREVIEW_STACK_VOXELS", 1000)  # "large"
    viewer, image, _ = disk_viewer
    viewer.dims.set_point(0, 0.0)
    widget = ControlNetWidget(viewer)
    widget.image_picker.value = "vol"
    widget.live_preview.value = True
    preview = viewer.layers["vol canny preview"]
    assert preview.data.shape == (64, 64) and tuple(preview.scale) == SCALE[1:]
    assert preview.metadata["canny_slice"] == 0
    first = np.array(preview.data, copy=True)
    viewer.dims.set_point(0, 2 * SCALE[0])
    assert preview.metadata["canny_slice"] == 2
    assert not np.array_equal(preview.data, first)  # slice 2 has its own noise
    widget.fields["canny_sigma"].value = 1.0
    assert viewer.layers["vol canny preview"] is preview and preview.metadata["canny_slice"] == 2


def test_controlnet_widget_generates_current_slice_at_its_z(disk_viewer, tiny, nothreads):
    viewer, image, _ = disk_viewer
    before = digest(image.data)
    widget = _controlnet(viewer, tiny)
    viewer.dims.set_point(0, 2 * SCALE[0])
    widget.slices.value = "current"
    widget.fields["count"].value = 2
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    result = viewer.layers["vol controlnet 1"]
    assert result.data.shape == (2, 1, 64, 64) and result.data.dtype == np.uint16
    assert not np.array_equal(result.data[0], result.data[1])  # two variants
    assert tuple(result.scale)[-3:] == SCALE
    assert result.translate[-3] == pytest.approx(2 * SCALE[0])  # sits on slice 2
    assert result.metadata["provenance"]["extra"]["control_source"] == "canny"
    assert digest(image.data) == before


def test_controlnet_widget_masked_mode_with_label_control_keeps_outside(
    disk_viewer, tiny, nothreads
):
    viewer, image, mask = disk_viewer
    before = digest(image.data)
    grains = np.zeros((64, 64), np.int32)
    grains[10:30, 10:30], grains[34:60, 30:50] = 1, 2
    viewer.add_labels(grains, name="grains")
    widget = _controlnet(viewer, tiny)
    widget.mask_picker.value = "box"
    widget.control_source.value = CONTROL_LAYER
    widget.control_picker.value = "grains"
    widget.slices.value = "1"
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    result = viewer.layers["vol controlnet 1"]
    assert result.data.shape == image.data.shape and result.data.dtype == np.uint16
    outside = mask == 0
    np.testing.assert_array_equal(result.data[outside], image.data[outside])
    assert not np.array_equal(result.data[~outside], image.data[~outside])
    provenance = result.metadata["provenance"]
    assert provenance["engine"] == "controlnet-inpaint"
    assert provenance["extra"]["control_source"] == "layer"
    assert digest(image.data) == before


def test_controlnet_widget_reports_inpaint_control_without_mask(disk_viewer, tiny, nothreads):
    viewer, *_ = disk_viewer
    widget = _controlnet(viewer, tiny)
    widget.control_source.value = "masked image (inpaint ControlNet)"
    n_layers = len(viewer.layers)
    widget.run()
    assert "needs a mask" in widget.status.text()
    assert len(viewer.layers) == n_layers


def test_controlnet_hidden_context_does_not_block_a_run_without_mask(disk_viewer, tiny):
    viewer, _, _ = disk_viewer
    widget = _controlnet(viewer, tiny)
    widget.fields["context"].value = TINY_RESOLUTION  # too large for the model size
    assert widget.mask_picker.value is None
    assert widget.params().context <= (TINY_RESOLUTION - 8) // 2
    widget.mask_picker.value = "box"  # the field is shown again and checked as typed
    with pytest.raises(ValueError, match="context"):
        widget.params()


def test_controlnet_widget_masked_canny_is_done_by_the_engine(disk_viewer, tiny, nothreads):
    viewer, image, mask = disk_viewer
    widget = _controlnet(viewer, tiny)
    widget.mask_picker.value = "box"
    assert widget.control_source.value == CONTROL_CANNY
    assert widget.params().masked_control == "canny"
    widget.slices.value = "1"
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    result = viewer.layers["vol controlnet 1"]
    outside = mask == 0
    np.testing.assert_array_equal(result.data[outside], image.data[outside])
    assert not np.array_equal(result.data[~outside], image.data[~outside])
    provenance = result.metadata["provenance"]
    assert provenance["extra"]["control_source"] == "canny"
    assert provenance["params"]["masked_control"] == "canny"
    widget.control_source.value = "masked image (inpaint ControlNet)"
    assert widget.params().masked_control == "inpaint"


def _write_inputs(folder, image, mask):
    write_volume(folder / "vol.tif", np.asarray(image.data))
    write_volume(folder / "box.tif", mask, kind="labels")
    return str(folder / "vol.tif"), str(folder / "box.tif")


def test_widget_and_cli_record_the_same_params(disk_viewer, tiny, nothreads, tmp_path):
    viewer, image, mask = disk_viewer
    volume_file, mask_file = _write_inputs(tmp_path, image, mask)
    tiny_flags = ["--model", str(tiny.sd), "--local-files-only", "--resolution",
                  str(TINY_RESOLUTION), "--context", "8", "--feather", "2", "--device", "cpu",
                  "--slices", "1", "--mask", mask_file, "-q"]  # fmt: skip

    diffedit = _diffedit(viewer, tiny)
    diffedit.mask_picker.value = "box"
    diffedit.slices.value = "1"
    diffedit.run()
    assert diffedit.status.text() == "Done.", diffedit.status.text()
    layer = viewer.layers["vol diffedit 1"]
    code = main(
        ["diffedit", volume_file, "--source-prompt", "rock", "--prompt", "a pore", "--steps", "4",
         "--strength", "0.5", "--guidance", "5", "--seed", "7", *tiny_flags,
         "-o", str(tmp_path / "diffedit.tif")]
    )  # fmt: skip
    assert code == 0
    written = read_volume(tmp_path / "diffedit.tif")
    assert written.provenance["params"] == layer.metadata["provenance"]["params"]
    np.testing.assert_array_equal(np.asarray(written.data), layer.data)

    controlnet = _controlnet(viewer, tiny)
    controlnet.mask_picker.value = "box"  # masked mode, Canny control
    controlnet.slices.value = "1"
    controlnet.fields["control_end"].value = 0.8
    controlnet.run()
    assert controlnet.status.text() == "Done.", controlnet.status.text()
    layer = viewer.layers["vol controlnet 1"]
    code = main(
        ["controlnet", volume_file, "--prompt", "rock", "--steps", "3", "--guidance", "5",
         "--seed", "11", "--scheduler", "ddim", "--controlnet-model", str(tiny.controlnet),
         "--inpaint-controlnet-model", str(tiny.controlnet), "--masked-control", "canny",
         "--control-end", "0.8", *tiny_flags, "-o", str(tmp_path / "controlnet.tif")]
    )  # fmt: skip
    assert code == 0
    written = read_volume(tmp_path / "controlnet.tif")
    assert written.provenance["params"] == layer.metadata["provenance"]["params"]
    assert written.provenance["extra"]["control_source"] == "canny"
    np.testing.assert_array_equal(np.asarray(written.data), layer.data)
