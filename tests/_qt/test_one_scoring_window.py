"""One scoring-window default: every front-end gives the same PSNR for the same pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_scigen import api
from napari_scigen.cli import main
from napari_scigen.core.progress import drain
from napari_scigen.metrics.pixel import scoring_window
from napari_scigen.workflows.compare import run_compare
from napari_scigen.workflows.validate import run_validation


def _psnr(rows, key="value") -> float:
    (row,) = [row for row in rows if row["metric"] == "psnr" and row.get("region") != "outside"]
    return row[key]


def test_every_front_end_gives_the_same_psnr_for_the_same_pair_by_default(
    rock_viewer, nothreads, tmp_path, capsys
):
    from napari_scigen._qt._metrics_widget import REGION_REBUILT, MetricsWidget

    viewer, reference = rock_viewer
    volume = np.asarray(reference.data)
    # the 16-bit rock fills part of its dtype: the dtype span would flatter every score
    assert np.ptp(volume) < 0.8 * np.iinfo(volume.dtype).max

    validation = drain(run_validation(volume, methods="linear", metrics="psnr", drop_every=4))
    held_out = validation.provenance["extra"]["held_out"]
    rebuilt = volume.copy()
    rebuilt[held_out] = validation.images["linear rebuilt"]
    by_validate = _psnr(validation.provenance["table"])

    by_api = _psnr(
        api.evaluate(volume, rebuilt, metrics="psnr", slices=held_out).provenance["table"]
    )

    tifffile.imwrite(tmp_path / "ref.tif", volume)
    tifffile.imwrite(tmp_path / "gen.tif", rebuilt)
    argv = ["metrics", str(tmp_path / "ref.tif"), str(tmp_path / "gen.tif"), "--metrics", "psnr"]
    argv += ["--slices", ",".join(map(str, held_out)), "--json", str(tmp_path / "m.json"), "-q"]
    assert main(argv) == 0
    assert "window: reference 0.5-99.5 percentiles" in capsys.readouterr().out
    by_cli = _psnr(json.loads((tmp_path / "m.json").read_text())["table"])

    provenance = {"engine": "linear", "extra": {"synthesized_indices": list(held_out)}}
    viewer.add_image(
        rebuilt, name="rebuilt", scale=reference.scale, metadata={"provenance": provenance}
    )
    widget = MetricsWidget(viewer)
    widget.reference_picker.value, widget.generated_picker.value = "rock", "rebuilt"
    assert widget.region.value == REGION_REBUILT
    for name, box in widget.metric_boxes.items():
        box.value = name == "psnr"
    widget.run()
    by_dock = _psnr(widget.rows)
    assert "0.5-99.5 percentiles" in widget.notes.text()

    assert by_api == pytest.approx(by_validate, rel=1e-12)
    assert by_cli == pytest.approx(by_validate, rel=1e-12)
    assert by_dock == pytest.approx(by_validate, rel=1e-12)
    window = scoring_window(volume)
    assert validation.provenance["extra"]["scoring_window"] == window.as_dict()

    # compare reports mean ± std over slices: on one slice the mean is that slice's PSNR
    z = held_out[0]
    compared = drain(run_compare(volume, engines="interpolate/linear", slices=[z], metrics="psnr"))
    one = volume.copy()
    one[z] = compared.images["interpolate/linear"][0]
    expected = _psnr(api.evaluate(volume, one, metrics="psnr", slices=[z]).provenance["table"])
    assert _psnr(compared.provenance["table"], "mean") == pytest.approx(expected, rel=1e-12)
    assert compared.provenance["extra"]["scoring_window"] == window.as_dict()
