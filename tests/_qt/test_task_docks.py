"""One registry-built dock per task (issue 23, item 5): *Generate slices*, *Automatic mask*,
*Train a model* and *Sample a model* offer every registered engine of their task with the
form its params declare, and run through the API into layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._qt._task_docks import (
    AutoMaskWidget,
    GenerateWidget,
    SampleWidget,
    TrainWidget,
)
from napari_scigen.core.params import fields_of
from napari_scigen.engines.registry import engine_names, engines
from registered_engine import registered_constant_sampler

#: The dock of each task.
DOCKS = {
    "generate": GenerateWidget,
    "mask": AutoMaskWidget,
    "train": TrainWidget,
    "sample": SampleWidget,
}


@pytest.mark.parametrize("task", sorted(DOCKS))
def test_each_task_dock_offers_every_registered_engine_with_its_declared_form(rock_viewer, task):
    viewer, _ = rock_viewer
    widget = DOCKS[task](viewer)
    assert tuple(widget.method.choices) == engine_names(task)
    for engine in engines(task):
        widget.methods.method = engine.name
        form = widget.methods.form
        assert set(form.widgets) == {spec.name for spec in fields_of(engine.params_class)}
        assert form.native.isVisibleTo(widget)
        assert widget.params() == engine.params_class()  # the form starts at the defaults
        for name, control in form.widgets.items():
            assert control.tooltip and "CLI: --" in control.tooltip, (engine.name, name)


def test_the_generate_dock_shows_the_control_layer_only_for_methods_that_take_one(rock_viewer):
    viewer, _ = rock_viewer
    widget = GenerateWidget(viewer)
    for engine in engines("generate"):
        widget.methods.method = engine.name
        shown = not widget.control_picker.native.isHidden()
        assert shown == ("control" in engine.inputs), engine.name


def test_one_registration_puts_an_engine_in_its_tasks_dock_with_its_form(
    make_napari_viewer, nothreads
):
    viewer = make_napari_viewer()
    with registered_constant_sampler():
        widget = SampleWidget(viewer)
        assert "constant" in widget.method.choices
        widget.methods.method = "constant"
        widget.methods.form.set_values({"count": 3, "value": 5.0})
        widget.run()
    assert widget.status.text().startswith("Done"), widget.status.text()
    layer = viewer.layers["constant samples 1"]
    assert layer.data.shape == (3, 4, 4) and float(layer.data.max()) == 5.0


def test_the_sample_dock_adds_new_slices_of_the_chosen_method(make_napari_viewer, nothreads):
    pytest.importorskip("torch")
    viewer = make_napari_viewer()
    widget = SampleWidget(viewer)
    widget.methods.method = "stylegan"  # the embedded generator: no training needed
    widget.methods.form.set_values({"count": 2, "device": "cpu", "seed": 5})
    widget.run()
    assert widget.status.text().startswith("Done"), widget.status.text()
    layer = viewer.layers["stylegan samples 1"]
    assert layer.data.shape[0] == 2
    assert layer.metadata["provenance"]["method"] == "stylegan"
    assert layer.metadata["provenance"]["task"] == "sample"


def test_the_train_dock_trains_the_chosen_method_into_the_run_folder(
    make_napari_viewer, nothreads, tmp_path
):
    pytest.importorskip("torch")
    from stylegan_tiny import textured_volume

    viewer = make_napari_viewer()
    viewer.add_image(textured_volume(shape=(4, 24, 24)), name="vol")
    widget = TrainWidget(viewer)
    widget.volume_picker.value = "vol"
    widget.out_dir.value = str(tmp_path / "run")
    widget.methods.method = "dcgan"
    tiny = {"train_steps": 2, "resolution": 16, "batch_size": 2, "channels": 4, "z_dim": 8}
    widget.methods.form.set_values({**tiny, "device": "cpu"})
    widget.run()
    assert widget.status.text().startswith("Trained 2 steps"), widget.status.text()
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir())[-1].startswith(
        "checkpoint-"
    )
    assert "dcgan preview" in viewer.layers
    assert viewer.layers["vol"].data.shape == (4, 24, 24)  # the input is untouched


def test_the_train_dock_asks_for_a_run_folder_before_starting(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    widget = TrainWidget(viewer)
    widget.volume_picker.value = "rock"
    assert widget.run() is None
    assert "run folder" in widget.status.text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from tiny_sd import tiny_models

    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_task_docks"))


@pytest.fixture
def disk(make_napari_viewer):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    slice_ = (np.hypot(yy - 32, xx - 32) < 16) * 25000 + 8000
    volume = np.stack([slice_ + rng.normal(0, 800, (64, 64)) for _ in range(3)])
    viewer = make_napari_viewer()
    viewer.add_image(volume.clip(0).astype(np.uint16), name="vol", scale=(4.0, 1.5, 1.5))
    return viewer


def _sd_form(widget, model, **values) -> None:
    from tiny_sd import TINY_RESOLUTION

    common = {
        "model": str(model),
        "local_files_only": True,
        "steps": 2,
        "device": "cpu",
        "context": 8,
    }
    widget.methods.form.set_values({**common, "resolution": TINY_RESOLUTION, **values})


def test_the_generate_dock_places_new_slices_at_the_chosen_slice(disk, tiny, nothreads):
    widget = GenerateWidget(disk)
    widget.image_picker.value = "vol"
    widget.methods.method = "controlnet"
    _sd_form(widget, tiny.sd, controlnet_model=str(tiny.controlnet), prompt="rock", seed=3)
    widget.slices.value = "2"
    widget.run()
    assert widget.status.text().startswith("Done"), widget.status.text()
    layer = disk.layers["vol controlnet 1"]
    assert layer.data.shape == (1, 64, 64) and layer.data.dtype == np.uint16
    assert layer.translate[-3] == pytest.approx(2 * 4.0)
    assert layer.metadata["provenance"]["task"] == "generate"


def test_the_automatic_mask_dock_adds_an_editable_mask_made_for_the_image(disk, tiny, nothreads):
    widget = AutoMaskWidget(disk)
    widget.image_picker.value = "vol"
    _sd_form(widget, tiny.diffedit, source_prompt="rock", prompt="a pore", seed=1)
    widget.slices.value = "1"
    widget.run()
    assert widget.status.text().startswith("Done"), widget.status.text()
    layer = disk.layers["vol diffedit mask 1"]
    assert layer.data.shape == (3, 64, 64) and layer.metadata["mask_for"] == "vol"
    assert tuple(layer.scale) == (4.0, 1.5, 1.5)
