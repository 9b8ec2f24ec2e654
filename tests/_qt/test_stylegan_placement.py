"""StyleGAN samples land beside the volume (issue 21, finding 13): in its world and units,
to its right, from the slice shown; not an opaque tile over its corner at slice 0, and
the slider stays where the user is."""

from __future__ import annotations

from napari_scigen._qt._stylegan_widget import StyleGANWidget


def test_samples_are_placed_beside_the_volume_at_the_slice_shown(rock_viewer, nothreads):
    viewer, image = rock_viewer
    image.translate = (0.0, 10.0, 20.0)
    viewer.dims.set_point(0, 6 * 5.0)
    widget = StyleGANWidget(viewer)
    widget.volume_picker.value = "rock"
    widget.device.value = "cpu"
    widget.sample_form.set_values({"count": 2, "seed": 9})
    widget.start("sample")
    samples = viewer.layers["stylegan samples 1"]
    assert viewer.dims.point[0] == 30.0  # the slider did not jump
    assert tuple(samples.scale) == tuple(image.scale)
    assert samples.translate[0] == 30.0 and samples.translate[1] == 10.0
    right_edge = 20.0 + image.data.shape[-1] * 2.5
    assert samples.translate[2] > right_edge  # not over the volume
    assert viewer.layers.selection.active is samples
