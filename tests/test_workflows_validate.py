"""Held-out slice benchmark: scores only held-out slices, reports skipped/failed parts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.core.models import ModelNotAvailableError
from napari_scigen.core.progress import drain
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.interpolation.plan import drop_every, keep_every
from napari_scigen.metrics.pixel import psnr
from napari_scigen.workflows.validate import run_validation
from napari_scigen.workflows.validation_report import write_validation_report


@pytest.fixture(autouse=True)
def no_lpips_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))


@pytest.fixture
def volume():
    """Blobs that drift along z, so interpolation is imperfect but sensible."""
    z, y, x = np.indices((13, 48, 48))
    blobs = np.zeros((13, 48, 48))
    for cy, cx, r in ((14, 14, 7), (30, 34, 9), (36, 12, 5)):
        blobs += ((y - cy - 0.4 * z) ** 2 + (x - cx) ** 2) <= r**2
    noise = np.random.default_rng(0).normal(0, 600, blobs.shape)
    return (26000 - 16000 * np.clip(blobs, 0, 1) + noise).clip(0, 65535).astype(np.uint16)


def _row(result, method, metric):
    (row,) = [
        r for r in result.provenance["table"] if r["method"] == method and r["metric"] == metric
    ]
    return row


def test_validation_scores_only_the_held_out_slices(volume):
    result = drain(run_validation(volume, drop_every=4, methods="linear,flow"))
    held_out = drop_every(volume.shape[0], 4)
    assert result.provenance["extra"]["held_out"] == list(held_out)
    np.testing.assert_array_equal(result.data, volume[list(held_out)])
    rebuilt = api.interpolate(volume, method="linear", missing=held_out)
    window = result.provenance["extra"]["window"]
    expected = psnr(volume[list(held_out)], rebuilt.data[list(held_out)], data_range=window).value
    assert _row(result, "linear", "psnr")["value"] == pytest.approx(expected)
    np.testing.assert_array_equal(result.images["linear rebuilt"], rebuilt.data[list(held_out)])
    for method in ("linear", "flow"):
        for metric in ("psnr", "ssim", "porosity", "surface"):
            assert np.isfinite(_row(result, method, metric)["value"])


def test_default_data_range_is_the_volume_percentile_window_not_the_dtype_span(volume):
    from napari_scigen.core.stack import percentile_window

    result = drain(run_validation(volume, methods="linear", metrics="psnr"))
    expected = percentile_window(volume, 0.5, 99.5)
    low, high = result.provenance["extra"]["window"]
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert high - low < 0.5 * 65535  # the dtype span would flatter the scores
    fixed = drain(run_validation(volume, methods="linear", metrics="psnr", data_range=65535))
    assert fixed.provenance["extra"]["window"] is None
    assert _row(fixed, "linear", "psnr")["value"] > _row(result, "linear", "psnr")["value"]


def test_a_volume_linear_in_z_is_rebuilt_exactly_by_linear_interpolation():
    ramp = np.linspace(1000, 20000, 9)[:, None, None] + np.zeros((9, 40, 40))
    ramp[:, 10:30, 10:30] += 20000  # a bright square, so Otsu finds two phases
    volume = ramp.astype(np.float32)
    result = drain(
        run_validation(volume, drop_every=2, methods="linear", metrics="psnr,ssim,porosity")
    )
    assert _row(result, "linear", "psnr")["value"] == np.inf
    assert _row(result, "linear", "ssim")["value"] == pytest.approx(1.0)
    assert _row(result, "linear", "porosity")["value"] == pytest.approx(0.0)


def test_lpips_without_weights_is_skipped_with_the_reason(volume):
    result = drain(run_validation(volume, methods="linear", metrics="psnr,lpips"))
    skipped = result.provenance["extra"]["skipped_metrics"]
    assert "alexnet-owt-7be5be79.pth" in skipped["lpips"]
    assert [r["metric"] for r in result.provenance["table"]] == ["psnr"]


def test_a_method_that_cannot_run_fails_alone(volume, monkeypatch):
    original = api.interpolate_job

    def fake(*args, method, **kwargs):
        if method == "stylegan":
            raise ModelNotAvailableError("embedded generator missing")
        return original(*args, method=method, **kwargs)

    monkeypatch.setattr(api, "interpolate_job", fake)
    result = drain(run_validation(volume, methods="linear,stylegan", metrics="psnr"))
    assert result.provenance["extra"]["failed_methods"] == {
        "stylegan": "embedded generator missing"
    }
    assert "stylegan rebuilt" not in result.images
    with pytest.raises(ModelNotAvailableError, match="embedded generator missing"):
        drain(run_validation(volume, methods="stylegan", metrics="psnr"))


def test_unknown_method_or_metric_is_rejected(volume):
    with pytest.raises(InvalidInputError, match="unknown methods"):
        drain(run_validation(volume, methods="cubic"))
    with pytest.raises(InvalidInputError, match="unknown metrics"):
        drain(run_validation(volume, metrics="fid"))


def test_report_writes_csv_markdown_figure_and_json(volume, tmp_path):
    result = drain(
        run_validation(
            volume, drop_every=4, methods="linear,flow", metrics="psnr,ssim,lpips,porosity"
        )
    )
    paths = write_validation_report(result, tmp_path / "report")
    assert set(paths) == {"csv", "slices_csv", "markdown", "figure", "json"}
    slice_lines = paths["slices_csv"].read_text().splitlines()
    assert slice_lines[0] == "method,slice,psnr,ssim"
    assert len(slice_lines) == 1 + 2 * 3  # 2 methods x 3 held-out slices
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("method,metric,value")
    assert len(csv_lines) == 1 + 2 * 3
    markdown = paths["markdown"].read_text()
    assert "## linear" in markdown and "## flow" in markdown
    assert "1, 5, 9" in markdown
    assert "miss scientific fidelity" in markdown
    assert "lpips: LPIPS" in markdown  # skipped, with the reason
    assert "substitute" not in markdown  # GMSD not asked for, so not named as one
    assert "0.5-99.5 percentiles of the volume" in markdown
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"held_out"' in paths["json"].read_text()


def test_stylegan_method_runs_through_the_stylegan_engine(tmp_path):
    pytest.importorskip("torch")
    from napari_scigen.engines.stylegan.checkpoint import save_generator
    from stylegan_tiny import textured_volume, tiny_generator

    generator = str(save_generator(tiny_generator(), tmp_path / "g.safetensors"))
    volume = textured_volume(shape=(9, 16, 16), dtype=np.uint16)
    result = drain(
        run_validation(
            volume,
            drop_every=4,
            methods="linear,stylegan",
            metrics="psnr,ssim,porosity",
            device="cpu",
            method_params={"stylegan": {"generator": generator, "projection_steps": 3}},
        )
    )
    assert result.provenance["extra"]["failed_methods"] == {}
    assert result.images["stylegan rebuilt"].shape == (2, 16, 16)
    assert np.isfinite(_row(result, "stylegan", "psnr")["value"])
    assert _row(result, "linear", "psnr")["value"] != _row(result, "stylegan", "psnr")["value"]


def test_gmsd_is_scored_and_named_as_the_lpips_substitute(volume, tmp_path):
    from napari_scigen.metrics.gradient import gmsd

    result = drain(
        run_validation(volume, drop_every=4, methods="linear", metrics="psnr,lpips,gmsd")
    )
    held_out = list(drop_every(volume.shape[0], 4))
    expected = gmsd(
        volume[held_out],
        result.images["linear rebuilt"],
        data_range=result.provenance["extra"]["window"],
    ).value
    assert _row(result, "linear", "gmsd")["value"] == pytest.approx(expected)
    assert _row(result, "linear", "gmsd")["value"] > 0
    markdown = write_validation_report(result, tmp_path / "report")["markdown"].read_text()
    assert "GMSD (lower is better)" in markdown
    assert "offline perceptual substitute" in markdown


def test_held_out_slices_are_blanked_before_any_engine_sees_them(volume, monkeypatch):
    seen = []
    original = api.interpolate_job

    def spy(observed, **kwargs):
        seen.append(observed.copy())
        return original(observed, **kwargs)

    monkeypatch.setattr(api, "interpolate_job", spy)
    result = drain(run_validation(volume, drop_every=4, methods="linear", metrics="psnr"))
    held_out = result.provenance["extra"]["held_out"]
    assert not seen[0][held_out].any()
    kept = [z for z in range(volume.shape[0]) if z not in held_out]
    np.testing.assert_array_equal(seen[0][kept], volume[kept])


def test_keep_every_rebuilds_every_slice_between_the_kept_ones(volume):
    result = drain(run_validation(volume, keep_every=4, methods="linear", metrics="psnr,ssim"))
    assert result.provenance["extra"]["held_out"] == list(keep_every(volume.shape[0], 4))
    assert result.provenance["params"]["geometry"] == "keep-every"
    per_slice = _row(result, "linear", "psnr")["details"]["per_slice"]
    assert len(per_slice) == len(result.provenance["extra"]["held_out"])


def test_noise_ceiling_is_reported_and_above_every_method(volume, tmp_path):
    result = drain(run_validation(volume, drop_every=4, methods="linear", metrics="psnr"))
    ceiling = result.provenance["extra"]["noise_ceiling"]
    window = result.provenance["extra"]["window"]
    assert ceiling["sigma"] == pytest.approx(600, rel=0.25)  # the volume's added noise
    assert ceiling["psnr_db"] == pytest.approx(
        20 * np.log10((window[1] - window[0]) / ceiling["sigma"])
    )
    assert ceiling["psnr_db"] > _row(result, "linear", "psnr")["value"]
    markdown = write_validation_report(result, tmp_path / "r")["markdown"].read_text()
    assert "Noise ceiling" in markdown


def test_device_reaches_engines_that_declare_one(volume, monkeypatch):
    captured = {}
    original = api.interpolate_job

    def spy(observed, *, method, params, **kwargs):
        captured[method] = params
        return original(observed, method=method, params=params, **kwargs)

    monkeypatch.setattr(api, "interpolate_job", spy)
    drain(
        run_validation(
            volume,
            methods="flow",
            metrics="psnr",
            device="cpu",
            method_params={"flow": {"flow_num_iter": 3}},
        )
    )
    assert captured["flow"].flow_num_iter == 3
    with pytest.raises(InvalidInputError, match="methods not run"):
        drain(run_validation(volume, methods="linear", method_params={"flow": {}}))


def test_held_out_slices_still_takes_the_geometry_as_keywords_as_the_benchmarks_call_it():
    from napari_scigen.workflows.settings import ValidateParams
    from napari_scigen.workflows.validate import held_out_slices

    assert held_out_slices(12, keep_every=3) == held_out_slices(12, ValidateParams(keep_every=3))
    assert held_out_slices(12, drop_every=2, offset=1)[0] == (1, 3, 5, 7, 9)  # 11: last, kept
    with pytest.raises(TypeError, match="not both"):
        held_out_slices(12, ValidateParams(), keep_every=3)
