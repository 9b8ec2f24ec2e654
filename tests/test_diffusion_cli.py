"""``napari-scigen diffedit`` and ``napari-scigen controlnet`` with tiny offline models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.models import missing_hub_model_message  # noqa: E402
from tiny_sd import TINY_RESOLUTION, tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(3000, 60000, (3, 64, 64)).astype(np.uint16)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[:, 20:40, 20:44] = 1
    write_volume(tmp_path / "in.tif", volume, voxel_size=(2.0, 1.5, 1.5))
    write_volume(tmp_path / "mask.tif", mask, kind="labels")
    return tmp_path, volume, mask.astype(bool)


def _tiny_options(models, steps="2"):
    return ["--model", str(models.sd), "--steps", steps, "--resolution", str(TINY_RESOLUTION),
            "--context", "8", "--device", "cpu", "-q"]  # fmt: skip


def test_cli_registration_imports_no_torch():
    code = (
        "import argparse, sys; from napari_scigen._cli import diffusion; "
        "diffusion.register(argparse.ArgumentParser().add_subparsers()); "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_cli_diffedit_writes_edited_volume_with_provenance(models, files):
    folder, volume, mask = files
    out = folder / "out.tif"
    code = main(
        ["diffedit", str(folder / "in.tif"), "--mask", str(folder / "mask.tif"),
         "--prompt", "a pore", "--source-prompt", "rock", "--slices", "1:3", "--seed", "5",
         "--strength", "1.0", "--batch-size", "2", "-o", str(out), *_tiny_options(models)]
    )  # fmt: skip
    assert code == 0
    written = read_volume(out)
    data = np.asarray(written.data)
    assert data.dtype == np.uint16 and data.shape == volume.shape
    np.testing.assert_array_equal(data[0], volume[0])  # not selected
    np.testing.assert_array_equal(data[~mask], volume[~mask])
    assert (data[1:][mask[1:]] != volume[1:][mask[1:]]).any()
    assert written.voxel_size == pytest.approx((2.0, 1.5, 1.5))
    assert written.provenance["engine"] == "diffedit"
    assert written.provenance["extra"]["seeds"] == {"1": 6, "2": 7}
    assert written.provenance["source"]["file"] == str(folder / "in.tif")


def test_cli_controlnet_writes_one_file_per_variant(models, files):
    folder, volume, _ = files
    out = folder / "gen.tif"
    code = main(
        ["controlnet", str(folder / "in.tif"), "--prompt", "rock", "--count", "2",
         "--slices", "0, 2", "--controlnet-model", str(models.controlnet), "--scheduler", "ddim",
         "-o", str(out), *_tiny_options(models)]
    )  # fmt: skip
    assert code == 0
    assert not out.exists()
    first = read_volume(folder / "gen_v0.tif")
    second = read_volume(folder / "gen_v1.tif")
    assert first.shape == (2, 64, 64) and first.dtype == np.uint16
    assert not np.array_equal(np.asarray(first.data), np.asarray(second.data))
    assert first.provenance["variant"] == 0 and second.provenance["variant"] == 1


def test_cli_controlnet_masked_mode_keeps_outside_pixels(models, files):
    folder, volume, mask = files
    out = folder / "inpainted.tif"
    code = main(
        ["controlnet", str(folder / "in.tif"), "--prompt", "rock", "--mask",
         str(folder / "mask.tif"), "--inpaint-controlnet-model", str(models.controlnet),
         "--scheduler", "ddim", "-o", str(out), *_tiny_options(models)]
    )  # fmt: skip
    assert code == 0
    data = np.asarray(read_volume(out).data)
    np.testing.assert_array_equal(data[~mask], volume[~mask])


def test_cli_offline_missing_model_reports_one_error_and_writes_nothing(
    files, tmp_path, monkeypatch, capsys
):
    folder, _, _ = files
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = folder / "never.tif"
    code = main(
        ["diffedit", str(folder / "in.tif"), "--mask", str(folder / "mask.tif"),
         "--prompt", "a pore", "--model", "someone/absent-sd-model", "--device", "cpu",
         "-o", str(out)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("napari-scigen diffedit")]
    assert err.strip().endswith(line)  # one line, the last
    expected = " ".join(
        missing_hub_model_message("someone/absent-sd-model", "Stable Diffusion").split()
    )
    assert line == f"napari-scigen diffedit: error: {expected}"
    for what_and_where in (
        "hf download someone/absent-sd-model",
        "models--someone--absent-sd-model",
    ):
        assert what_and_where in line
    assert str(tmp_path / "empty_hf") in line  # the cache folder to copy it into
    assert not out.exists()
    assert not (tmp_path / "empty_hf").exists()


def test_cli_refuses_existing_output_and_bad_slices(models, files, capsys):
    folder, _, _ = files
    existing = folder / "mask.tif"
    before = existing.read_bytes()
    code = main(
        ["diffedit", str(folder / "in.tif"), "--auto-mask", "--prompt", "x",
         "-o", str(existing), *_tiny_options(models)]
    )  # fmt: skip
    assert code == 2 and existing.read_bytes() == before
    code = main(
        ["diffedit", str(folder / "in.tif"), "--auto-mask", "--prompt", "x", "--slices", "7:9",
         "-o", str(folder / "x.tif"), *_tiny_options(models)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--slices '7:9'" in err and "0 <= START < STOP <= 3" in err
    assert not (folder / "x.tif").exists()
    code = main(
        ["diffedit", str(folder / "in.tif"), "--auto-mask", "-o", str(folder / "x.tif"),
         *_tiny_options(models)]
    )  # fmt: skip
    assert code == 2 and "--prompt is required" in capsys.readouterr().err
    code = main(
        ["controlnet", str(folder / "in.tif"), "--count", "0", "-o", str(folder / "x.tif"),
         *_tiny_options(models)]
    )  # fmt: skip
    assert code == 2 and "--count must be >= 1" in capsys.readouterr().err
    assert not (folder / "x.tif").exists()


def test_cli_controlnet_masked_canny_control_and_widget_only_flags(models, files):
    folder, volume, mask = files
    out = folder / "canny.tif"
    code = main(
        ["controlnet", str(folder / "in.tif"), "--prompt", "rock", "--mask",
         str(folder / "mask.tif"), "--masked-control", "canny", "--controlnet-model",
         str(models.controlnet), "--control-start", "0.25", "--canny-use-quantiles",
         "--canny-low", "0.8", "--canny-high", "0.9", "--slices", "all", "--scheduler", "ddim",
         "-o", str(out), *_tiny_options(models)]
    )  # fmt: skip
    assert code == 0
    written = read_volume(out)
    data = np.asarray(written.data)
    np.testing.assert_array_equal(data[~mask], volume[~mask])
    assert (data[mask] != volume[mask]).any()
    assert written.provenance["extra"]["control_source"] == "canny"
    params = written.provenance["params"]
    assert params["control_start"] == 0.25 and params["canny_use_quantiles"] is True
    assert written.provenance["task"] == "inpaint" and written.provenance["method"] == "controlnet"
