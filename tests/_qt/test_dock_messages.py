"""A dock shows the options a core message names as its own fields (issue 23, item 7):
a parameter by its label (``'resume from the newest checkpoint' unticked``), never a CLI
flag; an option the dock has no field for is not offered as one to tick."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.io import write_zarr
from napari_scigen.core.io.outputs import check_store_output
from napari_scigen.core.validation import InvalidInputError


@pytest.fixture
def shown(monkeypatch):
    """The napari error notifications the docks show."""
    messages: list[str] = []
    monkeypatch.setattr("napari.utils.notifications.show_error", messages.append)
    return messages


def test_a_core_error_naming_an_option_reaches_the_dock_in_its_words(
    rock_viewer, nothreads, monkeypatch, shown, tmp_path
):
    from napari_scigen import api
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    store = tmp_path / "s.ome.zarr"
    write_zarr(store, np.zeros((2, 8, 8), np.uint8))

    def failing_job(*args, **kwargs):
        check_store_output(store, [], overwrite=False)  # the core's own refusal
        yield  # pragma: no cover

    monkeypatch.setattr(api, "interpolate_job", failing_job)
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "linear"
    widget.missing.value = "3"
    widget.run()
    # the interpolation dock has no overwrite field: nothing to tick is offered
    assert (
        shown
        and "run again with overwrite=True (an option of scripts and the command " in shown[-1]
    )
    assert "not of this dock" in shown[-1] and "ticked" not in shown[-1]
    assert "--overwrite" not in widget.status.text()


def test_a_parameter_and_the_options_it_names_show_as_the_docks_labels(rock_viewer, shown):
    pytest.importorskip("torch")
    from napari_scigen._qt._stylegan_widget import StyleGANWidget
    from napari_scigen.core.params import ParameterError

    widget = StyleGANWidget(rock_viewer[0])
    widget.show_error(
        ParameterError(
            "train_steps", "must be >= 1, got 0 (resume=False starts over)", options=["resume"]
        )
    )
    # the train form's label, and the run folder's resume check box (its text)
    assert shown[-1] == (
        "'total steps' must be >= 1, got 0 "
        "('resume from the newest checkpoint' unticked starts over)"
    )
    widget.show_error(InvalidInputError("choose one with count=N", options=["count"]))
    assert shown[-1] == "choose one with 'slices'"  # the sample form's label of count
