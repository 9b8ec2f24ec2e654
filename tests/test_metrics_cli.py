"""``napari-scigen metrics``, ``weights`` and ``validate`` on small TIFF files."""

from __future__ import annotations

import json

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.metrics.pixel import psnr, scoring_window, ssim  # noqa: E402


@pytest.fixture(autouse=True)
def empty_weight_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture
def tiffs(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.integers(8000, 30000, size=(6, 40, 40), dtype=np.uint16)
    generated = reference.copy()
    generated[:, 10:20, 10:20] = rng.integers(8000, 30000, size=(6, 10, 10), dtype=np.uint16)
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[10:20, 10:20] = 1
    paths = {name: tmp_path / f"{name}.tif" for name in ("reference", "generated", "mask")}
    tifffile.imwrite(paths["reference"], reference, photometric="minisblack")
    tifffile.imwrite(paths["generated"], generated, photometric="minisblack")
    tifffile.imwrite(paths["mask"], mask, photometric="minisblack")
    return paths, reference, generated


def test_metrics_prints_a_table_and_writes_json_and_csv(tiffs, tmp_path, capsys):
    paths, reference, generated = tiffs
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    code = main(
        [
            "metrics",
            str(paths["reference"]),
            str(paths["generated"]),
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
            "-q",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ssim" in printed and "psnr" in printed
    record = json.loads(out_json.read_text())
    values = {row["metric"]: row["value"] for row in record["table"]}
    window = scoring_window(reference).data_range  # the default of every front-end
    assert values["ssim"] == pytest.approx(ssim(reference, generated, data_range=window).value)
    assert values["psnr"] == pytest.approx(psnr(reference, generated, data_range=window).value)
    assert "scale of SSIM/PSNR/GMSD: window: reference 0.5-99.5 percentiles" in printed
    assert record["source"]["reference"]["file"] == str(paths["reference"])
    assert out_csv.read_text().splitlines()[0] == "metric,value,region,details,note"


def test_metrics_with_mask_and_window_reports_both_regions(tiffs, capsys):
    paths, reference, generated = tiffs
    code = main(
        [
            "metrics",
            str(paths["reference"]),
            str(paths["generated"]),
            "--mask",
            str(paths["mask"]),
            "--data-range",
            "8000,30000",
            "--metrics",
            "psnr",
            "-q",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    inside = next(line for line in lines if line.startswith("psnr") and "inside" in line)
    mask = tifffile.imread(paths["mask"])
    expected = psnr(reference, generated, data_range=(8000, 30000), mask=mask, region="inside")
    assert f"{expected.value:.6g}" in inside
    assert any("outside" in line and "inf" in line for line in lines)


def test_metrics_with_only_unavailable_lpips_exits_2_naming_the_file(tiffs, capsys):
    paths, _, _ = tiffs
    code = main(
        ["metrics", str(paths["reference"]), str(paths["generated"]), "--metrics", "lpips", "-q"]
    )
    assert code == 2
    assert "alexnet-owt-7be5be79.pth" in capsys.readouterr().err


def test_metrics_rejects_an_unknown_metric(tiffs, capsys):
    paths, _, _ = tiffs
    code = main(
        ["metrics", str(paths["reference"]), str(paths["generated"]), "--metrics", "msssim"]
    )
    assert code == 2
    assert "unknown metric" in capsys.readouterr().err


def test_weights_lists_missing_files_and_where_to_put_them(tmp_path, capsys):
    out_json = tmp_path / "w.json"
    assert main(["weights", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "alexnet-owt-7be5be79.pth" in printed
    assert "weights-inception-2015-12-05-6726825d.pth" in printed
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in printed
    report = {entry["key"]: entry for entry in json.loads(out_json.read_text())}
    assert report["lpips-alex-backbone"]["status"] == "missing"
    assert report["lpips-alex-linear"]["status"] == "present"  # shipped inside lpips


def test_weights_finds_a_file_placed_in_the_weights_dir_and_verifies_it(tmp_path, capsys):
    import torch

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"w": torch.zeros(2)}, weights / "pt_inception-2015-12-05-6726825d.pth")
    (weights / "vgg16-397923af.pth").write_bytes(b"placeholder")
    assert main(["weights"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    inception = next(line for line in lines if "fid-inception" in line)
    assert "present" in inception
    at = next(i for i, line in enumerate(lines) if "lpips-vgg-backbone" in line)
    assert "damaged" in lines[at]
    assert "vgg16-397923af.pth: not a PyTorch weights file" in lines[at + 1]
    assert "1 damaged" in lines[-1]


def test_validate_writes_the_report_for_linear_and_flow(tmp_path, capsys):
    z, y, x = np.indices((9, 40, 40))
    blobs = ((y - 20 - 0.5 * z) ** 2 + (x - 20) ** 2) <= 64
    volume = np.where(blobs, 9000, 25000).astype(np.uint16)
    source = tmp_path / "volume.tif"
    tifffile.imwrite(source, volume, photometric="minisblack")
    out = tmp_path / "report"
    args = [
        "validate",
        str(source),
        "--drop-every",
        "4",
        "--methods",
        "linear,flow",
        "-o",
        str(out),
        "-q",
    ]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "linear" in printed.out and "flow" in printed.out
    assert "skipped lpips" in printed.err
    assert "gmsd" in printed.out
    for name in (
        "validation.csv",
        "validation_slices.csv",
        "validation.md",
        "validation.png",
        "validation.json",
    ):
        assert (out / name).is_file()
    assert main(args) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_validate_passes_typed_engine_flags_to_the_methods_that_declare_them(tmp_path, monkeypatch):
    from napari_scigen import api

    seen = {}
    original = api.interpolate_job

    def spy(volume, *, method, params, **kwargs):
        seen[method] = params
        return original(volume, method=method, params=params, **kwargs)

    monkeypatch.setattr(api, "interpolate_job", spy)
    volume = np.random.default_rng(0).integers(0, 255, (9, 32, 32), dtype=np.uint8)
    source = tmp_path / "volume.tif"
    tifffile.imwrite(source, volume, photometric="minisblack")
    args = ["validate", str(source), "--methods", "linear,flow", "--metrics", "psnr", "-q"]
    assert main([*args, "--flow-num-iter", "7", "-o", str(tmp_path / "r")]) == 0
    assert seen["flow"].flow_num_iter == 7
    assert seen["linear"].to_dict() == {}
    assert main([*args, "--flow-num-iter", "0", "-o", str(tmp_path / "r2")]) == 2
    only_linear = ["validate", str(source), "--methods", "linear", "-q", "-o", str(tmp_path / "r3")]
    assert main([*only_linear, "--flow-num-iter", "3"]) == 2  # no chosen method takes it


def test_validate_keep_every_scores_every_rebuilt_slice(tmp_path, capsys):
    volume = np.random.default_rng(1).integers(0, 255, (9, 32, 32), dtype=np.uint8)
    source = tmp_path / "volume.tif"
    tifffile.imwrite(source, volume, photometric="minisblack")
    out = tmp_path / "r"
    args = ["validate", str(source), "--keep-every", "4", "--methods", "linear"]
    assert main([*args, "--metrics", "psnr", "-q", "-o", str(out)]) == 0
    assert "noise ceiling" in capsys.readouterr().out
    rows = (out / "validation_slices.csv").read_text().splitlines()
    assert rows[0] == "method,slice,psnr"
    assert [r.split(",")[1] for r in rows[1:7]] == ["1", "2", "3", "5", "6", "7"]
