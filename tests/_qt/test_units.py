"""Every added layer is in the source's units (issue 21, finding 5): whole-volume stores,
Compare engines' stacks and previews without a source keep napari at one world unit, so
it never warns "Inconsistent units across layers"."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_scigen._qt import _batch
from napari_scigen._qt._compare_widget import CompareWidget
from napari_scigen._qt._finetune_widget import FinetuneWidget
from napari_scigen._qt._stylegan_widget import StyleGANWidget
from napari_scigen.core.result import EngineResult


@pytest.fixture
def um_viewer(make_napari_viewer, small_rock):
    """The rock in micrometres, as the reader and the samples open it."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        small_rock.volume.copy(),
        name="rock",
        scale=(5.0, 2.5, 2.5),
        translate=(10.0, 0.0, 0.0),
        units=("um",) * 3,
        metadata={"voxel_unit": "um"},
    )
    return viewer, layer


def _one_world_unit(viewer) -> None:
    units = viewer.layers.extent.units  # None is what makes napari warn
    assert units is not None, [(layer.name, layer.units) for layer in viewer.layers]
    assert {str(u) for u in units} == {"micrometer"}


def test_a_whole_volume_store_layer_is_in_the_sources_units(um_viewer, tmp_path):
    zarr = pytest.importorskip("zarr")
    viewer, image = um_viewer
    store = tmp_path / "rock.zarr"
    zarr.open_array(str(store / "0"), mode="w", shape=(23, 96, 96), dtype="uint16")
    job = SimpleNamespace(store=store, request=SimpleNamespace(factor=2), kind="image", unit="um")
    layer = _batch._output_layer(viewer, job, image, "rock whole volume linear")
    assert tuple(layer.scale) == (2.5, 2.5, 2.5) and tuple(layer.translate) == (10.0, 0.0, 0.0)
    _one_world_unit(viewer)


def test_compare_stacks_are_in_the_sources_units(um_viewer):
    viewer, image = um_viewer
    widget = CompareWidget(viewer)
    real = np.asarray(image.data[2:5])
    result = EngineResult(data=real, provenance={"engine": "compare"}, images={"linear": real})
    layers = widget.add_compare_layers(image, result)
    assert [layer.name for layer in layers] == ["compare real", "compare linear"]
    _one_world_unit(viewer)


def test_previews_without_a_source_take_the_units_shown(um_viewer):
    viewer, _ = um_viewer
    FinetuneWidget(viewer).show_preview(np.zeros((32, 32), np.float32))
    stylegan = StyleGANWidget(viewer)
    stylegan.show_preview(np.zeros((2, 16, 16), np.float32))
    assert {"sd-lora preview", "stylegan preview"} <= {layer.name for layer in viewer.layers}
    _one_world_unit(viewer)
