"""The evaluation engine: rows, maps, missing-weight notes, cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError
from napari_scigen.core.progress import Cancelled, CancelToken, Progress, drain
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.metrics.evaluate import parse_metrics, run_evaluate, table_rows_for_json
from napari_scigen.metrics.pixel import psnr, scoring_window, ssim


@pytest.fixture(autouse=True)
def empty_weight_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    MODEL_CACHE.clear()
    yield tmp_path / "weights"
    MODEL_CACHE.clear()


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    reference = rng.integers(8000, 30000, size=(4, 40, 40), dtype=np.uint16)
    generated = reference.copy()
    generated[:, 10:25, 10:25] = rng.integers(8000, 30000, size=(4, 15, 15), dtype=np.uint16)
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[10:25, 10:25] = 1
    return reference, generated, mask


def _rows(result, metric):
    return [row for row in result.provenance["table"] if row["metric"] == metric]


def test_evaluate_reports_ssim_psnr_rows_and_the_ssim_map(pair):
    reference, generated, _ = pair
    events: list[Progress] = []
    result = drain(run_evaluate(reference, generated), on_progress=events.append)
    (ssim_row,) = _rows(result, "ssim")
    (psnr_row,) = _rows(result, "psnr")
    window = scoring_window(reference).data_range  # the reference's percentile window
    assert ssim_row["value"] == pytest.approx(ssim(reference, generated, data_range=window).value)
    assert psnr_row["value"] == pytest.approx(psnr(reference, generated, data_range=window).value)
    assert ssim_row["region"] == "all" and ssim_row["note"] == ""
    assert result.data.dtype == np.float32 and result.data.shape == reference.shape
    np.testing.assert_array_equal(result.data, result.images["ssim map"])
    assert events[-1].step == events[-1].total


def test_evaluate_reports_gmsd_inside_and_outside_a_mask(pair):
    from napari_scigen.metrics.gradient import gmsd

    reference, generated, mask = pair
    whole = drain(run_evaluate(reference, generated, metrics="gmsd"))
    (row,) = _rows(whole, "gmsd")
    assert row["region"] == "all"
    window = scoring_window(reference).data_range
    assert row["value"] == pytest.approx(gmsd(reference, generated, data_range=window).value)
    result = drain(run_evaluate(reference, generated, metrics="gmsd", mask=mask))
    by_region = {row["region"]: row["value"] for row in _rows(result, "gmsd")}
    assert set(by_region) == {"inside", "outside"}
    # only the masked square was changed: outside it the gradients agree but at its rim
    assert by_region["inside"] > 3 * by_region["outside"] > 0


def test_evaluate_with_mask_reports_inside_and_outside(pair):
    reference, generated, mask = pair
    result = drain(run_evaluate(reference, generated, mask=mask))
    regions = {(row["metric"], row["region"]): row["value"] for row in result.provenance["table"]}
    assert set(regions) == {
        ("ssim", "inside"),
        ("ssim", "outside"),
        ("psnr", "inside"),
        ("psnr", "outside"),
    }
    # only the masked square was changed: far outside is untouched, inside is not
    assert regions[("psnr", "inside")] < regions[("psnr", "outside")]
    assert regions[("ssim", "inside")] < regions[("ssim", "outside")]


def test_missing_lpips_weights_become_a_note_when_other_metrics_run(pair):
    reference, generated, _ = pair
    result = drain(run_evaluate(reference, generated, metrics=("ssim", "lpips")))
    (lpips_row,) = _rows(result, "lpips")
    assert np.isnan(lpips_row["value"])
    assert "alexnet-owt-7be5be79.pth" in lpips_row["note"]
    assert _rows(result, "ssim")[0]["value"] > 0


def test_missing_weights_raise_when_that_metric_is_the_only_one(pair):
    reference, generated, _ = pair
    with pytest.raises(ModelNotAvailableError, match="alexnet-owt-7be5be79.pth"):
        drain(run_evaluate(reference, generated, metrics="lpips"))


def test_lpips_with_a_backbone_file_gives_a_value_and_a_map(pair, empty_weight_dirs):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    torch.save(
        {f"features.{k}": v for k, v in features.items()},
        empty_weight_dirs / "alexnet-owt-7be5be79.pth",
    )
    reference, generated, mask = pair
    result = drain(run_evaluate(reference, generated, metrics="lpips", mask=mask, device="cpu"))
    rows = {row["region"]: row for row in _rows(result, "lpips")}
    assert set(rows) == {"all", "inside", "outside"}
    assert rows["all"]["value"] > 0
    assert rows["inside"]["value"] > rows["outside"]["value"]
    assert rows["all"]["details"]["net"] == "alex"
    assert result.images["lpips map"].shape == reference.shape
    np.testing.assert_array_equal(result.data, result.images["lpips map"])


def test_distribution_metrics_run_with_an_injected_extractor():
    rng = np.random.default_rng(1)
    reference = rng.integers(8000, 30000, size=(8, 24, 24), dtype=np.uint16)
    generated = rng.integers(6000, 26000, size=(7, 24, 24), dtype=np.uint16)

    def moments(images):
        return np.column_stack([images.mean(axis=(1, 2)), images.std(axis=(1, 2))])

    with pytest.warns(UserWarning, match="prefer KID"):
        result = drain(
            run_evaluate(reference, generated, metrics="fid,kid,prdc", feature_extractor=moments)
        )
    names = [row["metric"] for row in result.provenance["table"]]
    assert names == ["fid", "kid", "precision", "recall", "density", "coverage"]
    fid_row = _rows(result, "fid")[0]
    assert fid_row["value"] > 0 and "KID" in fid_row["note"]
    assert fid_row["details"]["n_reference"] == 8 and fid_row["details"]["n_generated"] == 7
    assert "std" in _rows(result, "kid")[0]["details"]


def test_prdc_with_too_few_slices_is_an_input_error(pair):
    reference, generated, _ = pair
    with pytest.raises(InvalidInputError, match="nearest_k"):
        drain(
            run_evaluate(
                reference,
                generated,
                metrics="prdc",
                feature_extractor=lambda images: images.reshape(len(images), -1)[:, :3],
            )
        )


def test_missing_fid_weights_give_nan_rows_for_every_distribution_metric(pair):
    reference, generated, _ = pair
    result = drain(run_evaluate(reference, generated, metrics=("psnr", "fid", "prdc")))
    for name in ("fid", "precision", "recall", "density", "coverage"):
        (row,) = _rows(result, name)
        assert np.isnan(row["value"])
        assert "weights-inception-2015-12-05-6726825d.pth" in row["note"]


def test_morphology_rows_carry_reference_and_relative_error(pair):
    reference, generated, _ = pair
    result = drain(run_evaluate(reference, reference.copy(), metrics="morphology"))
    (porosity_row,) = _rows(result, "porosity")
    assert porosity_row["details"]["relative_error"] == pytest.approx(0.0)
    assert porosity_row["value"] == pytest.approx(porosity_row["details"]["reference"])
    assert _rows(result, "s2_rmse")[0]["value"] == 0.0


def test_clipscore_without_prompt_is_a_note(pair):
    reference, generated, _ = pair
    result = drain(run_evaluate(reference, generated, metrics=("ssim", "clipscore")))
    (row,) = _rows(result, "clipscore")
    assert np.isnan(row["value"]) and "prompt" in row["note"]


def test_paired_metrics_reject_different_shapes(pair):
    reference, generated, _ = pair
    with pytest.raises(InvalidInputError, match="ssim"):
        drain(run_evaluate(reference, generated[:, :30]))


def test_cancel_stops_between_metrics(pair):
    reference, generated, _ = pair
    token = CancelToken()
    generator = run_evaluate(reference, generated, cancel=token)
    next(generator)
    token.cancel()
    with pytest.raises(Cancelled):
        drain(generator)


def test_evaluate_leaves_inputs_unchanged(pair):
    reference, generated, mask = pair
    copies = reference.copy(), generated.copy(), mask.copy()
    drain(run_evaluate(reference, generated, mask=mask, metrics="ssim,psnr,morphology"))
    for original, copy in zip((reference, generated, mask), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_parse_metrics_and_strict_json_rows():
    assert parse_metrics("SSIM, psnr,ssim") == ("ssim", "psnr")
    assert "clipscore" not in parse_metrics("all")
    with pytest.raises(InvalidInputError, match="unknown metric 'msssim'"):
        parse_metrics("msssim")
    rows = table_rows_for_json([{"value": float("nan"), "details": {"x": float("inf")}}])
    assert rows == [{"value": None, "details": {"x": "inf"}}]


# ---------------------------------------------------------------------------------------
# issue 12: each metric succeeds or reports its own row; slices; masked GMSD/morphology
# ---------------------------------------------------------------------------------------


class _CountingFeatures:
    """A cheap feature extractor that counts the images it was asked for."""

    name = "moments"

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        self.images += len(images)
        flat = images.reshape(len(images), -1)
        return np.stack([flat.mean(1), flat.std(1), flat.max(1)], axis=1)


def test_a_failing_prdc_keeps_fid_and_kid_and_features_are_computed_once(pair):
    reference, generated, _ = pair  # 4 slices: too few for PRDC's 5 nearest neighbours
    features = _CountingFeatures()
    result = drain(
        run_evaluate(reference, generated, metrics="fid,kid,prdc", feature_extractor=features)
    )
    assert np.isfinite(_rows(result, "fid")[0]["value"])
    assert np.isfinite(_rows(result, "kid")[0]["value"])
    for name in ("precision", "recall", "density", "coverage"):
        (row,) = _rows(result, name)
        assert np.isnan(row["value"]) and row["note"].startswith("failed: ")
        assert "\n" not in row["note"]
    assert features.images == 2 * len(reference)  # once per stack, shared by the three


def test_a_failing_metric_alone_raises_its_error(pair):
    reference, generated, _ = pair
    flat = np.full_like(reference, 7)
    with pytest.raises(InvalidInputError, match="constant"):
        drain(run_evaluate(flat, flat, metrics="morphology"))
    result = drain(run_evaluate(flat, flat, metrics="ssim,morphology"))
    (row,) = _rows(result, "morphology")
    assert (
        row["note"] == "failed: the image is constant: there is no threshold separating two phases"
    )
    assert _rows(result, "ssim")[0]["value"] == pytest.approx(1.0)


def test_an_unexpected_metric_error_is_named_in_its_row(pair, monkeypatch):
    reference, generated, _ = pair

    def broken(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr("napari_scigen.metrics.evaluate._psnr_rows", broken)
    result = drain(run_evaluate(reference, generated, metrics="ssim,psnr"))
    assert _rows(result, "psnr")[0]["note"] == "failed: KeyError: 'oops'"


def test_slices_score_only_those_slices_and_are_recorded(pair):
    reference, generated, mask = pair
    generated = generated.copy()
    generated[3] = 0  # only slice 3 is ruined
    chosen = drain(run_evaluate(reference, generated, metrics="psnr", slices=[0, 1]))
    every = drain(run_evaluate(reference, generated, metrics="psnr"))
    assert chosen.provenance["params"]["slices"] == [0, 1]
    assert chosen.provenance["source"]["reference"]["shape"] == [2, 40, 40]
    window = scoring_window(reference).data_range  # of the whole reference, not the slices
    expected = psnr(reference[:2], generated[:2], data_range=window).value
    assert _rows(chosen, "psnr")[0]["value"] == pytest.approx(expected)
    assert _rows(every, "psnr")[0]["value"] < expected
    volume_mask = np.broadcast_to(mask, reference.shape).copy()
    masked = drain(run_evaluate(reference, generated, metrics="ssim", mask=volume_mask, slices=[2]))
    assert {row["region"] for row in _rows(masked, "ssim")} == {"inside", "outside"}
    for bad in ([7], [1.5], "1"):
        with pytest.raises(InvalidInputError):
            drain(run_evaluate(reference, generated, slices=bad))


def test_morphology_with_a_mask_reports_inside_and_outside(pair):
    reference, _, mask = pair
    generated = reference.copy()
    volume_mask = np.broadcast_to(mask, reference.shape) != 0
    generated[volume_mask] = reference.max()  # the masked region turns solid
    result = drain(run_evaluate(reference, generated, metrics="morphology", mask=mask))
    porosity = {row["region"]: row for row in _rows(result, "porosity")}
    assert set(porosity) == {"inside", "outside"}
    assert porosity["inside"]["value"] == 0.0 and porosity["inside"]["details"]["reference"] > 0
    assert porosity["outside"]["details"]["relative_error"] == pytest.approx(0.0)
    assert "bounding box" in porosity["inside"]["note"]
