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
from napari_scigen.core.progress import drain  # noqa: E402
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
    widget.steps.value = steps
    widget.resolution.value = TINY_CONFIG_KWARGS["resolution"]
    widget.latent_dim.value = TINY_CONFIG_KWARGS["z_dim"]
    widget.mapping_layers.value = TINY_CONFIG_KWARGS["mapping_layers"]
    widget.channel_base.value = TINY_CONFIG_KWARGS["channel_base"]
    widget.channel_max.value = TINY_CONFIG_KWARGS["channel_max"]
    widget.batch_size.value = 4
    widget.sample_every.value = 2
    widget.checkpoint_every.value = 2
    widget.device.value = "cpu"


def test_stylegan_widget_trains_with_live_previews_then_samples_the_run(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    volume = viewer.add_image(textured_volume(), name="texture")
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
    assert widget.last_result.step == 4
    assert widget.generator.value == str(run_dir)
    assert "Trained 4 steps" in widget.status.text()

    # resume to 6 steps, though the form now asks for another architecture
    widget.steps.value, widget.latent_dim.value = 6, 8
    widget.set_status("")
    job = widget.start("train")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    assert widget.last_result.step == 6

    # Sample now uses the trained run (window of the training volume: uint16)
    widget.n_samples.value, widget.sample_seed.value = 3, 5
    job = widget.start("sample")
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    samples = viewer.layers["stylegan samples 1"]
    assert samples.data.shape == (3, 16, 16) and samples.data.dtype == np.uint16
    assert samples.metadata["provenance"]["model"] == str(run_dir.resolve())
    assert digest(volume.data) == before


def test_stylegan_widget_samples_the_embedded_default(make_napari_viewer, nothreads):
    from napari_scigen.engines.stylegan.sample import run_sample_slices

    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.n_samples.value, widget.sample_seed.value, widget.truncation.value = 2, 9, 0.5
    widget.start("sample")
    assert widget.status.text() == "Done.", widget.status.text()
    assert widget.run_button.text() == "Sample"
    layer = viewer.layers["stylegan samples 1"]
    expected = drain(run_sample_slices(None, 2, 9, 0.5, device="cpu"))
    np.testing.assert_array_equal(layer.data, expected.data)
    assert layer.metadata["provenance"]["model"].startswith("embedded:")


def test_stylegan_widget_latent_walk_adds_a_stack_of_the_requested_frames(
    make_napari_viewer, nothreads
):
    from napari_scigen.engines.stylegan.sample import latent_walk

    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.seed_a.value, widget.seed_b.value, widget.frames.value = 3, 4, 5
    widget.start("walk")
    assert widget.status.text() == "Done.", widget.status.text()
    assert widget.run_button.text() == "Walk"
    layer = viewer.layers["stylegan walk 1"]
    assert layer.data.shape == (5, 64, 64) and layer.data.dtype == np.float32
    np.testing.assert_array_equal(layer.data, latent_walk(None, 3, 4, 5, device="cpu"))
    assert not np.array_equal(layer.data[0], layer.data[-1])
    steps = [
        float(np.abs(b - a).mean()) for a, b in zip(layer.data[:-1], layer.data[1:], strict=True)
    ]
    assert max(steps) < float(np.abs(layer.data[-1] - layer.data[0]).mean())  # smooth walk
    assert layer.metadata["provenance"]["engine"] == "latent-walk-stylegan"


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
widget.steps.value, widget.batch_size.value, widget.device.value = 1, 2, "cpu"
widget.resolution.value = TINY_CONFIG_KWARGS["resolution"]
widget.latent_dim.value = TINY_CONFIG_KWARGS["z_dim"]
widget.mapping_layers.value = TINY_CONFIG_KWARGS["mapping_layers"]
widget.channel_base.value = TINY_CONFIG_KWARGS["channel_base"]
widget.channel_max.value = TINY_CONFIG_KWARGS["channel_max"]
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
