"""``napari-scigen train-stylegan``, ``sample-stylegan`` and ``export-stylegan``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from stylegan_tiny import TINY_CONFIG_KWARGS, textured_volume  # noqa: E402

TINY_ARGS = [
    "--resolution", str(TINY_CONFIG_KWARGS["resolution"]),
    "--z-dim", str(TINY_CONFIG_KWARGS["z_dim"]),
    "--w-dim", str(TINY_CONFIG_KWARGS["w_dim"]),
    "--mapping-layers", str(TINY_CONFIG_KWARGS["mapping_layers"]),
    "--channel-base", str(TINY_CONFIG_KWARGS["channel_base"]),
    "--channel-max", str(TINY_CONFIG_KWARGS["channel_max"]),
    "--batch-size", "4",
    "--device", "cpu",
    "-q",
]  # fmt: skip


def test_train_resume_export_and_sample_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "vol.tif"
    volume = textured_volume(shape=(4, 20, 20))
    write_volume(source, volume, voxel_size=(1.0, 1.0, 1.0))
    run_dir = tmp_path / "run"
    assert (
        main(["train-stylegan", str(source), "-o", str(run_dir), "--steps", "2", *TINY_ARGS]) == 0
    )
    exported = tmp_path / "g.safetensors"
    code = main(
        [
            "train-stylegan",
            str(source),
            "-o",
            str(run_dir),
            "--steps",
            "3",
            "--export",
            str(exported),
            *TINY_ARGS,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and exported.is_file()

    samples = tmp_path / "samples.tif"
    assert (
        main(
            ["sample-stylegan", "--checkpoint", str(exported), "-n", "3", "-o", str(samples), "-q"]
        )
        == 0
    )
    read = read_volume(samples)
    assert read.data.shape == (3, 16, 16) and read.data.dtype == np.uint16
    assert read.provenance["engine"] == "sample-stylegan"

    again = tmp_path / "again.safetensors"
    assert main(["export-stylegan", str(run_dir), "-o", str(again)]) == 0
    assert again.with_suffix(".json").is_file()


def test_train_with_bad_axes_is_a_user_error(tmp_path, capsys):
    source = tmp_path / "vol.tif"
    write_volume(source, textured_volume(shape=(2, 20, 20)))
    code = main(
        ["train-stylegan", str(source), "-o", str(tmp_path / "r"), "--axes", "zq", *TINY_ARGS]
    )
    assert code == 2
    assert "--axes" in capsys.readouterr().err


def test_sample_refuses_to_overwrite_without_flag(tmp_path, capsys):
    target = tmp_path / "exists.tif"
    target.write_bytes(b"x")
    assert main(["sample-stylegan", "-n", "1", "-o", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_importing_the_engine_package_and_cli_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_scigen.engines.stylegan, napari_scigen._cli.stylegan;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
