"""FID, KID and PRDC against independent NumPy/SciPy computations and hand-worked cases;
the FID Inception loading path with a self-made weight file (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.metrics.distribution import (
    SmallSampleWarning,
    distribution_metrics,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid,
    precision_recall_density_coverage,
)


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID via eigen-decompositions: Tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1)))."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def test_fid_of_identical_feature_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(300, 8))
    assert fid_from_features(features, features.copy()) == pytest.approx(0.0, abs=1e-8)


def test_fid_equals_an_eigendecomposition_reference_on_random_features():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(loc=0.5, size=(350, 6)) @ rng.normal(size=(6, 6))
    assert fid_from_features(a, b) == pytest.approx(_reference_fid(a, b), rel=1e-8)


def test_frechet_distance_of_1d_gaussians_matches_the_closed_form():
    # (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2) = (mu1 - mu2)^2 + (sd1 - sd2)^2
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert value == pytest.approx(2.0**2 + (2.0 - 3.0) ** 2)


def test_frechet_distance_handles_singular_covariances_with_few_samples():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))  # rank-4 covariances in 20-d
    value = fid_from_features(a, b)
    assert np.isfinite(value)
    assert value == pytest.approx(_reference_fid(a, b), rel=1e-3, abs=1e-3)


def test_feature_statistics_needs_two_samples():
    with pytest.raises(InvalidInputError, match="at least 2"):
        feature_statistics(np.zeros((1, 4)))


def test_kid_of_hand_computed_tiny_case():
    # k(x, y) = (x y + 1)^3 (D = 1 so gamma = 1). Within a = {0, 1}: k(0,1) = 1.
    # Within b = {2, 3}: k(2,3) = 343. Cross: 1 + 1 + 27 + 64 = 93 -> mean 23.25.
    # Unbiased MMD^2 = 1 + 343 - 2 * 23.25 = 297.5, for every subset (all samples).
    mean, std = kid(np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]]), subsets=4, subset_size=2)
    assert mean == pytest.approx(297.5)
    assert std == pytest.approx(0.0)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    shifted = rng.normal(loc=1.0, size=(400, 16))
    same, _ = kid(a, b, subsets=20, subset_size=200)
    different, _ = kid(a, shifted, subsets=20, subset_size=200)
    assert abs(same) < 0.01
    assert different > 20 * abs(same)


def test_prdc_of_hand_computed_tiny_case():
    # k = 1. Real radii: 0->1, 1->1, 3->2, 6->3. Fake points 0.5, 10, 2.9.
    # precision: 0.5 (in balls of 0 and 1) and 2.9 (ball of 3) -> 2/3.
    # recall: fake radii 0.5->2.4, 10->7.1, 2.9->2.4 cover 0, 1, 3 and 6 (|6-10| < 7.1) -> 1.
    # density: 0.5 is in 2 real balls, 10 in none, 2.9 in 1 -> (2 + 0 + 1) / 3 / k = 1.
    # coverage: real balls of 0, 1, 3 hold a fake sample, 6 (radius 3, nearest fake 3.1) not -> 3/4.
    real = np.array([[0.0], [1.0], [3.0], [6.0]])
    fake = np.array([[0.5], [10.0], [2.9]])
    result = precision_recall_density_coverage(real, fake, nearest_k=1)
    assert result == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "density": 1.0, "coverage": 0.75}
    )


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(InvalidInputError, match="more than 5"):
        precision_recall_density_coverage(np.zeros((5, 2)), np.zeros((9, 2)))


class MomentFeatures:
    """A tiny injected extractor: per-slice moments and a histogram."""

    name = "moments"

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        self.calls.append(images)
        histogram = (
            np.stack([np.histogram(i, bins=6, range=(0, 1))[0] for i in images]) / images[0].size
        )
        return np.column_stack([images.mean(axis=(1, 2)), images.std(axis=(1, 2)), histogram])


def test_distribution_metrics_with_injected_extractor_and_small_sample_warning():
    rng = np.random.default_rng(4)
    reference = rng.integers(1000, 50000, size=(40, 24, 24), dtype=np.uint16)
    extractor = MomentFeatures()
    with pytest.warns(SmallSampleWarning, match="prefer KID"):
        result = distribution_metrics(
            reference, reference.copy(), feature_extractor=extractor, kid_subsets=5, nearest_k=3
        )
    assert result["fid"] == pytest.approx(0.0, abs=1e-8)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    assert result["n_reference"] == result["n_generated"] == 40
    assert result["feature_extractor"] == "moments"
    assert result["feature_dim"] == 8
    assert result["warnings"]
    images = extractor.calls[0]
    assert images.dtype == np.float32 and images.ndim == 3
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_distribution_metrics_detect_a_contrast_change():
    rng = np.random.default_rng(5)
    reference = rng.normal(20000, 3000, size=(60, 16, 16)).clip(0, 65535).astype(np.uint16)
    similar = rng.normal(20000, 3000, size=(50, 16, 16)).clip(0, 65535).astype(np.uint16)
    darker = rng.normal(14000, 3000, size=(50, 16, 16)).clip(0, 65535).astype(np.uint16)
    with pytest.warns(SmallSampleWarning):
        close = distribution_metrics(
            reference, similar, feature_extractor=MomentFeatures(), kid_subsets=5
        )
        far = distribution_metrics(
            reference, darker, feature_extractor=MomentFeatures(), kid_subsets=5
        )
    assert far["fid"] > 10 * close["fid"]
    assert far["kid_mean"] > close["kid_mean"]
    assert far["precision"] < close["precision"]


def test_distribution_metrics_reject_single_slices_and_dtype_mismatch():
    stack = np.zeros((4, 16, 16), np.uint8)
    with pytest.raises(InvalidInputError, match="3 dimensions"):
        distribution_metrics(stack[0], stack, feature_extractor=MomentFeatures())
    with pytest.raises(InvalidInputError, match="dtype"):
        distribution_metrics(stack, stack.astype(np.uint16), feature_extractor=MomentFeatures())


# ----------------------------------------------------------------------- FID Inception


torch = pytest.importorskip("torch")


@pytest.fixture
def weight_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    MODEL_CACHE.clear()
    yield tmp_path / "weights"
    MODEL_CACHE.clear()
    torch.set_num_threads(threads)


def test_missing_fid_weights_raise_naming_accepted_files(weight_dirs):
    from napari_scigen.metrics.distribution import InceptionFeatureExtractor

    with pytest.raises(ModelNotAvailableError) as error:
        InceptionFeatureExtractor(device="cpu")
    message = str(error.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert str(weight_dirs) in message


def test_fid_inception_loads_a_weight_file_by_its_accepted_name(weight_dirs):
    from napari_scigen.metrics.distribution import InceptionFeatureExtractor, build_fid_inception

    torch.manual_seed(0)
    source = build_fid_inception()
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    state = source.state_dict()
    torch.save(state, weight_dirs / "pt_inception-2015-12-05-6726825d.pth")
    extractor = InceptionFeatureExtractor(device="cpu")
    assert "pt_inception" in extractor.name
    features = extractor(np.random.default_rng(0).random((2, 40, 50)).astype(np.float32))
    assert features.shape == (2, 2048)
    assert np.isfinite(features).all()
    loaded = extractor._model()
    torch.testing.assert_close(
        loaded.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"]
    )
    torch.testing.assert_close(
        loaded.Conv2d_1a_3x3.bn.running_var, state["Conv2d_1a_3x3.bn.running_var"]
    )


def test_a_file_with_other_parameters_is_refused(weight_dirs):
    from napari_scigen.metrics.distribution import InceptionFeatureExtractor

    torch.save(
        {"fc.weight": torch.zeros(3, 3)}, weight_dirs / "weights-inception-2015-12-05-6726825d.pth"
    )
    extractor = InceptionFeatureExtractor(device="cpu")
    with pytest.raises(ModelNotAvailableError, match="is not the FID Inception-v3 weight file"):
        extractor(np.zeros((1, 32, 32), np.float32))


def test_fid_blocks_pool_like_tensorflow_ignoring_padding():
    """Same weights: FID InceptionA differs from torchvision's only at border pixels
    (average pooling that excludes the zero padding), and is equal inside."""
    from torchvision.models.inception import InceptionA

    from napari_scigen.metrics.distribution import _fid_inception_blocks

    _, fid_block_a, _, _, _ = _fid_inception_blocks()
    torch.manual_seed(1)
    plain = InceptionA(8, pool_features=4).eval()
    patched = fid_block_a(8, pool_features=4).eval()
    patched.load_state_dict(plain.state_dict())
    x = torch.rand(1, 8, 9, 9) + 0.5
    with torch.no_grad():
        pool_plain = plain(x)[:, -4:]
        pool_patched = patched(x)[:, -4:]
    torch.testing.assert_close(pool_plain[..., 1:-1, 1:-1], pool_patched[..., 1:-1, 1:-1])
    assert not torch.allclose(pool_plain[..., 0, 0], pool_patched[..., 0, 0])
