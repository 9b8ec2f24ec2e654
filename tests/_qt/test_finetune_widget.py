"""The fine-tuning dock widget trains an adapter through api.train_job(method="sd-lora")."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from napari_scigen._qt._finetune_widget import PREVIEW_LAYER, FinetuneWidget  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.engines.sd.adapters import ADAPTER_WEIGHTS  # noqa: E402
from tiny_sd import tiny_models  # noqa: E402


def test_finetune_widget_trains_an_adapter_and_shows_its_preview(
    make_napari_viewer, monkeypatch, tmp_path_factory, tmp_path
):
    torch.set_num_threads(1)
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    sd = tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd")).sd
    viewer = make_napari_viewer()
    viewer.add_image(make_rock_volume((4, 64, 64), seed=2).volume, name="rock")
    widget = FinetuneWidget(viewer)
    widget.volume_picker.value = "rock"
    widget.out_dir.value = str(tmp_path / "adapter")
    widget.fields.set_values(
        {
            "model": str(sd),
            "train_steps": 3,
            "resolution": 64,
            "rank": 2,
            "device": "cpu",
            "preview_steps": 2,
        }
    )
    for field, control in widget.fields.widgets.items():
        assert control.tooltip and "CLI: --" in control.tooltip, field
    widget.run()
    assert widget.last_error is None, widget.last_error
    assert (tmp_path / "adapter" / ADAPTER_WEIGHTS).is_file()
    assert viewer.layers[PREVIEW_LAYER].data.shape == (64, 64)
    assert "Trained 3 steps" in widget.status.text() and "Held-out loss" in widget.status.text()
    provenance = widget.last_result.provenance
    assert (provenance["task"], provenance["method"]) == ("train", "sd-lora")


def test_finetune_widget_needs_a_volume_and_a_folder(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = FinetuneWidget(viewer)
    assert widget.run() is None and "choose a volume" in widget.status.text()
    viewer.add_image(make_rock_volume((4, 64, 64), seed=2).volume, name="rock")
    widget.volume_picker.value = "rock"
    assert widget.run() is None and "adapter folder" in widget.status.text()
