"""The napari-scigen command line: foundation commands, errors without tracebacks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_scigen.cli import main
from napari_scigen.core.io import read_volume, write_volume


@pytest.fixture
def volume_file(tmp_path):
    rng = np.random.default_rng(0)
    z = np.linspace(0, 1, 10)[:, None, None]
    data = (1000 + 20000 * z + rng.integers(0, 50, (10, 32, 40))).astype(np.uint16)
    path = tmp_path / "scan.tif"
    write_volume(path, data, voxel_size=(4.0, 2.0, 2.0))
    return path, data


def test_interpolate_command_rebuilds_missing_slices_and_keeps_voxel_size(
    volume_file, tmp_path, capsys
):
    path, data = volume_file
    out = tmp_path / "rebuilt.tif"
    assert (
        main(
            [
                "interpolate",
                str(path),
                "--missing",
                "3,5-6",
                "--method",
                "linear",
                "-o",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    result = read_volume(out)
    kept = [z for z in range(10) if z not in (3, 5, 6)]
    assert np.array_equal(result.data[kept], data[kept])
    assert result.voxel_size == pytest.approx((4.0, 2.0, 2.0))
    assert result.provenance["engine"] == "interpolate-linear"
    assert result.provenance["source"]["file"] == str(path)
    assert "wrote" in capsys.readouterr().out


def test_interpolate_factor_divides_z_voxel_size(volume_file, tmp_path):
    path, _ = volume_file
    out = tmp_path / "up.tif"
    assert main(["interpolate", str(path), "--factor", "2", "-o", str(out), "-q"]) == 0
    result = read_volume(out)
    assert result.data.shape[0] == 19
    assert result.voxel_size[0] == pytest.approx(2.0)


def test_inpaint_command_with_wrong_mask_shape_fails_cleanly_and_writes_nothing(
    volume_file, tmp_path, capsys
):
    path, _ = volume_file
    mask = tmp_path / "mask.tif"
    tifffile.imwrite(mask, np.ones((10, 32, 41), np.uint8))
    out = tmp_path / "out.tif"
    assert main(["inpaint", str(path), "--mask", str(mask), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not match the image shape" in err and "Traceback" not in err
    assert not out.exists()


def test_inpaint_command_fills_only_masked_pixels(volume_file, tmp_path):
    path, data = volume_file
    mask = np.zeros(data.shape, np.uint8)
    mask[4, 10:16, 10:20] = 1
    mask_path = tmp_path / "mask.tif"
    write_volume(mask_path, mask, kind="labels")
    out = tmp_path / "filled.tif"
    assert main(["inpaint", str(path), "--mask", str(mask_path), "-o", str(out), "-q"]) == 0
    filled = read_volume(out).data
    assert np.array_equal(filled[mask == 0], data[mask == 0])
    assert filled.dtype == np.uint16


def test_missing_input_file_is_a_one_line_error(tmp_path, capsys):
    assert (
        main(
            [
                "interpolate",
                str(tmp_path / "nope.tif"),
                "--factor",
                "2",
                "-o",
                str(tmp_path / "o.tif"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "nope.tif" in err and "Traceback" not in err


def test_existing_output_is_not_overwritten_without_flag(volume_file, tmp_path, capsys):
    path, _ = volume_file
    out = tmp_path / "exists.tif"
    out.write_bytes(b"keep me")
    assert main(["interpolate", str(path), "--factor", "2", "-o", str(out)]) == 2
    assert out.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err


def test_bad_missing_indices_are_reported(volume_file, tmp_path, capsys):
    path, _ = volume_file
    assert main(["interpolate", str(path), "--missing", "3,99", "-o", str(tmp_path / "o.tif")]) == 2
    assert "outside 0..9" in capsys.readouterr().err


def test_info_describes_file_voxel_size_and_provenance(volume_file, capsys):
    path, _ = volume_file
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [10, 32, 40] and info["dtype"] == "uint16"
    assert info["voxel_size"] == pytest.approx([4.0, 2.0, 2.0])


def test_info_without_path_lists_caches_and_devices(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"software", "devices", "caches"} <= info.keys()


def test_demo_writes_metrics_figure_and_volumes(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--shape", "16,96,96", "--methods", "linear,flow"]
    code = main([*argv, "--inpaint-methods", "biharmonic", "-q"])
    assert code == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    methods = {row["method"] for row in rows if row["task"] == "held-out slices"}
    assert methods == {"linear", "flow"}
    assert all(np.isfinite(float(row["value"])) for row in rows)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["every"] == 4
    for name in (
        "demo.png",
        "rebuilt_linear.tif",
        "rebuilt_flow.tif",
        "inpainted_region.tif",
        "rock.tif",
    ):
        assert (out / name).stat().st_size > 0
    assert "psnr" in capsys.readouterr().out


def test_demo_runs_the_learned_engines_and_learned_inpainting(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--shape", "12,64,64", "--methods", "linear,learned,auto"]
    steps = ["--train-steps", "3", "--inpaint-train-steps", "3", "--crop-size", "32", "-q"]
    assert main([*argv, *steps]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    held_out = {r["method"] for r in rows if r["task"] == "held-out slices"}
    assert held_out == {"linear", "learned", "auto"}
    assert {r["method"] for r in rows if r["task"] == "damaged region"} == {"biharmonic", "learned"}
    assert (out / "inpainted_region_learned.tif").stat().st_size > 0
    provenance = read_volume(out / "rebuilt_learned.tif").provenance
    assert provenance["engine"] == "interpolate-learned"
    assert provenance["params"]["train_steps"] == 3
    assert provenance["extra"]["init"]["init"] == "default"
    if provenance["extra"]["filled_with"] == "learned":
        assert (out / "rebuilt_learned_uncertainty.tif").is_file()
    assert "stylegan" not in json.loads((out / "metrics.json").read_text())["config"]["methods"]


def test_demo_rejects_unknown_method(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--methods", "cubic"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_scripted_example_from_docs_runs_and_scores_both_methods():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "rebuild_missing_slices.py"
    spec = importlib.util.spec_from_file_location("rebuild_missing_slices", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scores = module.main(shape=(16, 96, 96))
    assert set(scores) == {"linear", "flow"}
    assert all(20 < s["psnr"] < 80 and 0 < s["ssim"] <= 1 for s in scores.values())


def test_demo_runs_stylegan_on_the_embedded_generator_with_the_given_steps(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--shape", "9,64,64", "--methods", "linear,stylegan"]
    args += ["--inpaint-methods", "biharmonic"]  # learned inpainting: its own test above
    assert main([*args, "--projection-steps", "2", "-q"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    stylegan_rows = [
        r for r in rows if r["task"] == "held-out slices" and r["method"] == "stylegan"
    ]
    assert {r["metric"] for r in stylegan_rows} >= {"psnr", "ssim"}
    assert all(np.isfinite(float(r["value"])) for r in stylegan_rows)
    provenance = read_volume(out / "rebuilt_stylegan.tif").provenance
    assert provenance["engine"] == "interpolate-stylegan"
    assert provenance["params"]["projection_steps"] == 2


def test_demo_rejects_zero_projection_steps(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--projection-steps", "0"]) == 2
    assert "--projection-steps" in capsys.readouterr().err


def test_progress_printer_logs_every_tenth_when_not_a_terminal():
    import io

    from napari_scigen._cli.common import ProgressPrinter
    from napari_scigen.core.progress import Progress

    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream, interval=1e9)
    for step in range(1, 101):
        printer(Progress(step, 100, f"step {step}"))
    printer(Progress(1, 50, "second stage"))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/100] step 1" and "[100/100] step 100" in lines
    assert 10 <= len(lines) <= 13  # about one line per tenth, not one per event
    assert lines[-1] == "[1/50] second stage"
    quiet = io.StringIO()
    ProgressPrinter(quiet=True, stream=quiet)(Progress(1, 2, "x"))
    assert quiet.getvalue() == ""


def test_debug_shows_the_traceback_before_or_after_the_command(volume_file, tmp_path, monkeypatch):
    path, _ = volume_file

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("napari_scigen.api.interpolate", broken)
    argv = ["interpolate", str(path), "--missing", "3", "-o", str(tmp_path / "o.tif"), "-q"]
    assert main(argv) == 1
    for debug_argv in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(KeyError):
            main(debug_argv)


def test_progress_lines_name_flags_instead_of_api_arguments():
    import io

    from napari_scigen._cli.common import ProgressPrinter
    from napari_scigen.core.progress import Progress

    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream, rename={"resume=False": "--no-resume"})
    printer(Progress(1, 2, "saved sizes do not apply (resume=False starts over)"))
    assert stream.getvalue() == "[1/2] saved sizes do not apply (--no-resume starts over)\n"
