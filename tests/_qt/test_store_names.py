"""Whole-volume layers tell their method apart (issue 21, finding 9): the method ends the
name (napari's layer list cuts long names in the middle), and a rerun on the same store
replaces its layer instead of adding "… [1]"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_scigen._qt import _batch


def test_whole_volume_layers_end_with_their_method_and_a_rerun_replaces_its_layer(
    rock_viewer, tmp_path
):
    zarr = pytest.importorskip("zarr")
    viewer, image = rock_viewer
    shown = []
    for method in ("flow", "linear", "linear"):  # linear twice: a rerun on its store
        store = tmp_path / f"rock.{method}.ome.zarr"
        zarr.open_array(str(store / "0"), mode="w", shape=image.data.shape, dtype="uint16")
        job = SimpleNamespace(store=store, request=SimpleNamespace(factor=None), kind="image")
        job.unit = "um"
        shown.append(_batch.show_store(viewer, job, image, method))
    names = [layer.name for layer in viewer.layers]
    assert names == ["rock", "rock whole volume flow", "rock whole volume linear"]
    assert viewer.layers[-1] is shown[-1]


def test_a_dropped_store_of_this_plugin_opens_named_after_its_method(make_napari_viewer, tmp_path):
    pytest.importorskip("zarr")
    from napari_scigen.core.io.zarr_write import create_zarr
    from napari_scigen.core.provenance import make_provenance

    whole = make_provenance(
        "batch-interpolate-flow", extra={"task": "interpolate", "method": "flow"}
    )
    single = {**make_provenance("inpaint-biharmonic"), "method": "biharmonic"}
    stores = {
        "rock_microCT__synthetic.flow.ome.zarr": whole,
        "rock.ome.zarr": single,
        "scan.ome.zarr": None,  # not ours: its stem, as before
    }
    viewer = make_napari_viewer()
    for file_name, provenance in stores.items():
        create_zarr(tmp_path / file_name, (4, 8, 8), "uint16", provenance=provenance)
        viewer.open(str(tmp_path / file_name), plugin="napari-scigen")
    assert [layer.name for layer in viewer.layers] == [
        "rock_microCT__synthetic whole volume flow",
        "rock biharmonic",
        "scan",
    ]
