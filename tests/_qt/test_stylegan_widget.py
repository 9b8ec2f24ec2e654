"""StyleGAN dock widget: training with live previews, sampling and latent walks (tiny, CPU)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

from napari_scigen._qt._stylegan_widget import PREVIEW_LAYER, StyleGANWidget  # noqa: E402
from napari_scigen.core.stack import Window  # noqa: E402
from stylegan_tiny import TINY_CONFIG_KWARGS, textured_volume  # noqa: E402


def digest(array) -> str:
    """SHA-256 of an array's bytes (to prove an input layer was not modified)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_training_form(widget: StyleGANWidget, run_dir, steps: int) -> None:
    widget.volume_picker.value = "texture"
    widget.out_dir.value = str(run_dir)
    widget.train_form.set_values(
        {**TINY_CONFIG_KWARGS, "train_steps": steps, "batch_size": 4, "sample_every": 2}
    )
    widget.train_form["checkpoint_every"].value = 2
    widget.device.value = "cpu"


def test_stylegan_widget_trains_with_live_previews_then_samples_the_run(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    volume = viewer.add_image(
        textured_volume(), name="texture", scale=(2.5, 2.5, 2.5), translate=(0.0, 10.0, 20.0)
    )
    before = digest(volume.data)
    widget = StyleGANWidget(viewer)
    assert widget.run_button.text() == "Train"
    run_dir = tmp_path / "run"
    _tiny_training_form(widget, run_dir, steps=4)
    previews = []
    original = widget.show_preview

    def record(grid):
        previews.append(np.array(grid, copy=True))
        return original(grid)

    widget.show_preview = record
    job = widget.start("train")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    assert len(previews) >= 3  # steps 2 and 4 while training, then the final grid
    preview = viewer.layers[PREVIEW_LAYER]
    assert preview is widget.preview_layer and preview.data.ndim == 2
    assert 0.0 <= preview.data.min() and preview.data.max() <= 1.0
    assert len([layer for layer in viewer.layers if layer.name == PREVIEW_LAYER]) == 1
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / "networks.safetensors").is_file()
    assert tuple(preview.scale) == (2.5, 2.5)  # in the volume's world, not 1 px = 1 µm
    assert widget.last_result.step == 4
    assert Path(widget.generator.value) == run_dir
    assert "Trained 4 steps" in widget.status.text()
    assert widget.last_result.provenance["task"] == "train"

    # resume to 6 steps, though the form now asks for another architecture: the run keeps
    # its saved one (the engine decides, as for the API and the CLI) and the form shows it
    widget.train_form.set_values({"train_steps": 6, "z_dim": 8, "w_dim": 8})
    widget.set_status("")
    job = widget.start("train")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    assert widget.last_result.step == 6
    assert widget.last_result.provenance["extra"]["adopted_saved_config"] is True
    assert "saved architecture" in widget.status.text()
    assert widget.train_form["z_dim"].value == TINY_CONFIG_KWARGS["z_dim"]
    assert widget.train_form["w_dim"].value == TINY_CONFIG_KWARGS["w_dim"]

    # Sample now uses the trained run (window of the training volume: uint16)
    widget.sample_form.set_values({"count": 3, "seed": 5})
    job = widget.start("sample")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    samples = viewer.layers["stylegan samples 1"]
    assert samples.data.shape == (3, 16, 16) and samples.data.dtype == np.uint16
    assert samples.metadata["provenance"]["model"] == str(run_dir.resolve())
    assert tuple(samples.scale) == (2.5, 2.5, 2.5)
    # beside the volume (to its right), from the slice shown: the slider stays on it
    assert tuple(samples.translate)[:2] == (viewer.dims.point[0], 10.0)
    assert samples.translate[2] > 20.0 + volume.data.shape[-1] * 2.5
    assert viewer.layers.selection.active is samples
    assert digest(volume.data) == before


def test_stylegan_widget_samples_the_embedded_default(make_napari_viewer, nothreads):
    from napari_scigen import api
    from napari_scigen.engines.stylegan.params import StyleGANSampleParams

    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.sample_form.set_values({"count": 2, "seed": 9, "truncation_psi": 0.5})
    widget.start("sample")
    assert widget.status.text() == "Done.", widget.status.text()
    assert widget.run_button.text() == "Sample"
    layer = viewer.layers["stylegan samples 1"]
    params = StyleGANSampleParams(count=2, seed=9, truncation_psi=0.5, device="cpu")
    expected = api.sample(method="stylegan", params=params)
    np.testing.assert_array_equal(layer.data, expected.data)
    assert layer.metadata["provenance"]["model"].startswith("embedded:")
    # the widget and the API record the same parameters for the same inputs
    assert layer.metadata["provenance"]["params"] == expected.provenance["params"]
    assert tuple(layer.scale) == (1.0, 1.0, 1.0)  # no volume chosen: pixel units


def test_stylegan_widget_latent_walk_adds_a_stack_of_the_requested_frames(
    make_napari_viewer, nothreads
):
    from napari_scigen.engines.stylegan.default import load_default_generator
    from napari_scigen.engines.stylegan.sample import latent_walk

    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.walk_form.set_values({"seed_a": 3, "seed_b": 4, "frames": 5})
    widget.start("walk")
    assert widget.status.text() == "Done.", widget.status.text()
    assert widget.run_button.text() == "Walk"
    layer = viewer.layers["stylegan walk 1"]
    generator, metadata = load_default_generator("cpu")
    window = Window(**metadata["window"])  # the grey values of samples (issue 21, 13)
    assert layer.data.shape == (5, 64, 64) and layer.data.dtype == np.dtype(window.dtype)
    np.testing.assert_array_equal(layer.data, window.from_unit(latent_walk(generator, 3, 4, 5)))
    assert layer.metadata["provenance"]["extra"]["window"] == window.as_dict()
    assert not np.array_equal(layer.data[0], layer.data[-1])
    frames = layer.data.astype(np.float64)
    steps = [float(np.abs(b - a).mean()) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    assert max(steps) < float(np.abs(frames[-1] - frames[0]).mean())  # smooth walk
    provenance = layer.metadata["provenance"]
    assert provenance["engine"] == "latent-walk-stylegan" and provenance["seed"] == [3, 4]
    assert provenance["model"].startswith("embedded:") and provenance["params"]["frames"] == 5


def test_stylegan_widget_reports_missing_inputs(make_napari_viewer, nothreads, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(textured_volume(), name="texture")
    widget = StyleGANWidget(viewer)
    widget.start("train")
    assert "run folder" in widget.status.text()
    widget.generator.value = str(tmp_path / "nowhere")
    n_layers = len(viewer.layers)
    widget.start("sample")
    assert "does not exist" in widget.status.text()
    assert len(viewer.layers) == n_layers


GUARD_SCRIPT = """
import sys
import napari
from qtpy.QtWidgets import QApplication

app = QApplication.instance() or QApplication([])
viewer = napari.Viewer(show=False)  # creates the OpenGL canvas (Mesa loads its libLLVM)
assert "triton" not in sys.modules
from napari_scigen._qt._llvm_guard import _system_llvm_loaded
from napari_scigen._qt._stylegan_widget import StyleGANWidget
from stylegan_tiny import TINY_CONFIG_KWARGS, textured_volume

viewer.add_image(textured_volume(), name="texture")
widget = StyleGANWidget(viewer)
widget.volume_picker.value = "texture"
widget.out_dir.value = sys.argv[1]
widget.device.value = "cpu"
widget.train_form.set_values({**TINY_CONFIG_KWARGS, "train_steps": 1, "batch_size": 2})
widget.start("train")
print("STATUS", widget.status.text())
print("LLVM", _system_llvm_loaded(), "TRITON_BLOCKED", sys.modules.get("triton", 0) is None)
viewer.close()
"""


def test_stylegan_widget_training_survives_opengl_llvm_in_a_fresh_process(tmp_path):
    """Training right after napari's OpenGL canvas exists must not segfault (triton vs Mesa)."""
    tests_dir = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NAPARI_SCIGEN_NOTHREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir), env.get("PYTHONPATH", "")])
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GUARD_SCRIPT), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "STATUS Trained 1 steps" in completed.stdout, completed.stdout + completed.stderr[-2000:]
    if "LLVM True" in completed.stdout:  # Mesa OpenGL (e.g. Xvfb): triton had to be kept out
        assert "TRITON_BLOCKED True" in completed.stdout
    assert sorted((tmp_path / "run").glob("checkpoint-*"))


def test_cancelled_training_keeps_a_checkpoint_and_offers_it_to_interpolation(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    viewer = make_napari_viewer()
    viewer.add_image(textured_volume(), name="texture")
    interpolation = InterpolateWidget(viewer)  # open before training ends
    widget = StyleGANWidget(viewer)
    run_dir = tmp_path / "run"
    _tiny_training_form(widget, run_dir, steps=500)
    widget.train_form.set_values({"sample_every": 1000})
    widget.train_form["checkpoint_every"].value = 1000  # no periodic checkpoint
    job = widget.start("train")
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 4, timeout=60_000)  # >= 2 steps
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "cancelled", widget.status.text()
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "networks.safetensors").is_file()
    assert int(checkpoints[0].name.split("-")[1]) >= 2  # the steps done before Cancel
    assert checkpoints[0].name in widget.status.text()
    assert Path(widget.generator.value) == run_dir  # Sample and Latent walk use it
    assert interpolation.method.value == "stylegan"
    assert Path(interpolation.methods.form["generator"].value) == run_dir

    # the interpolation widget runs with the generator trained here
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    interpolation.image_picker.value = "texture"
    # no held-out self-check (it may fill with linear): the handed-over generator is tested
    form = {"projection_steps": 2, "device": "cpu", "validation_slices": 0}
    interpolation.methods.form.set_values(form)
    interpolation.missing.value = "2"
    interpolation.run()
    status = interpolation.status.text()
    assert status.startswith("Done. stylegan filled the result"), status
    provenance = viewer.layers["texture stylegan 1"].metadata["provenance"]
    assert run_dir.name in provenance["model"] and provenance["params"]["projection_steps"] == 2


def test_use_in_slice_interpolation_opens_the_dock_with_the_generator(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    assert widget.handover_button.toolTip()
    widget.generator.value = str(tmp_path / "my-run")
    interpolation = widget.use_in_interpolation()
    assert interpolation is not None and interpolation.method.value == "stylegan"
    assert Path(interpolation.methods.form["generator"].value) == tmp_path / "my-run"
    # a second press reuses the open dock
    assert widget.use_in_interpolation() is interpolation
    assert "Slice interpolation now uses" in widget.status.text()


def test_walk_frames_are_in_the_same_grey_values_as_samples(make_napari_viewer, nothreads):
    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.sample_form.set_values({"count": 2, "seed": 3})
    widget.start("sample")
    widget.walk_form.set_values({"seed_a": 3, "seed_b": 4, "frames": 3})
    widget.start("walk")
    samples, walk = viewer.layers["stylegan samples 1"], viewer.layers["stylegan walk 1"]
    assert walk.data.dtype == samples.data.dtype  # not float 0-0.67 beside uint16 samples
    window = samples.metadata["provenance"]["extra"]["window"]
    assert walk.metadata["provenance"]["extra"]["window"] == window
    assert window["low"] <= walk.data.min() and walk.data.max() <= window["high"]
    assert walk.data.max() > (window["low"] + window["high"]) / 2  # grey values, not [0, 1]
