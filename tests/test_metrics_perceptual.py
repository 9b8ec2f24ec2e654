"""LPIPS pipeline: verified against the lpips package's own forward with a random
backbone (no download), and the offline behaviour when the backbone file is missing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lpips = pytest.importorskip("lpips")

from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.metrics.perceptual import (  # noqa: E402
    load_lpips,
    lpips_distance,
    lpips_version,
)


@pytest.fixture(autouse=True)
def one_thread_and_no_weights(tmp_path, monkeypatch):
    """One torch thread, empty weight folders, and no possible download."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))

    def no_download(*args, **kwargs):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    reference = rng.integers(5000, 40000, size=(3, 48, 40), dtype=np.uint16)
    generated = np.clip(
        reference.astype(np.int64) + rng.integers(-3000, 3000, reference.shape), 0, 65535
    )
    return reference, generated.astype(np.uint16)


def _by_hand(volume: np.ndarray) -> torch.Tensor:
    """uint16 -> [-1, 1] with the dtype window, replicated to 3 channels."""
    unit = volume.astype(np.float64) / 65535.0
    return torch.from_numpy((unit * 2 - 1).astype(np.float32))[:, None].repeat(1, 3, 1, 1)


def test_lpips_equals_lpips_package_forward_on_the_same_tensors(pair):
    reference, generated = pair
    result = lpips_distance(
        reference, generated, device="cpu", pretrained_backbone=False, batch_size=2
    )
    model = load_lpips("alex", pretrained_backbone=False, device="cpu")
    with torch.no_grad():
        expected = model(_by_hand(reference), _by_hand(generated)).flatten().numpy()
    np.testing.assert_allclose(result.values, expected, rtol=1e-5, atol=1e-7)
    assert result.value == pytest.approx(float(expected.mean()), rel=1e-5)


def test_lpips_spatial_map_equals_lpips_spatial_forward(pair):
    reference, generated = pair
    result = lpips_distance(
        reference, generated, device="cpu", pretrained_backbone=False, spatial=True
    )
    model = load_lpips("alex", pretrained_backbone=False, device="cpu")
    spatial = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, spatial=True, verbose=False)
    spatial.load_state_dict(model.state_dict())
    spatial.eval()
    with torch.no_grad():
        expected = spatial(_by_hand(reference), _by_hand(generated))[:, 0].numpy()
    assert result.map.shape == reference.shape
    assert result.map.dtype == np.float32
    np.testing.assert_allclose(result.map, expected, rtol=1e-4, atol=1e-6)


def test_lpips_uses_the_linear_layers_shipped_with_lpips(pair):
    model = load_lpips("alex", pretrained_backbone=False, device="cpu")
    import os

    shipped = torch.load(
        os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
        map_location="cpu",
        weights_only=True,
    )
    torch.testing.assert_close(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])


def test_lpips_is_zero_for_identical_slices_and_independent_of_batch_size(pair):
    reference, generated = pair
    same = lpips_distance(reference, reference.copy(), device="cpu", pretrained_backbone=False)
    assert max(same.values) == pytest.approx(0.0, abs=1e-7)
    one = lpips_distance(
        reference, generated, device="cpu", pretrained_backbone=False, batch_size=1
    )
    three = lpips_distance(
        reference, generated, device="cpu", pretrained_backbone=False, batch_size=3
    )
    np.testing.assert_allclose(one.values, three.values, rtol=1e-5)


def test_lpips_window_is_shared_and_recorded(pair):
    reference, generated = pair
    default = lpips_distance(reference, generated, device="cpu", pretrained_backbone=False)
    narrow = lpips_distance(
        reference, generated, window=(5000, 40000), device="cpu", pretrained_backbone=False
    )
    assert default.window == (0.0, 65535.0)
    assert narrow.window == (5000.0, 40000.0)
    assert narrow.value != pytest.approx(default.value)


def test_lpips_result_records_net_and_package_version(pair):
    reference, generated = pair
    result = lpips_distance(reference[0], generated[0], device="cpu", pretrained_backbone=False)
    record = result.as_dict()
    assert record["net"] == "alex"
    assert record["lpips_version"] == lpips_version() != "not installed"
    assert record["pretrained_backbone"] is False
    assert len(result.values) == 1


def test_missing_backbone_raises_before_any_download_naming_the_file(pair, tmp_path):
    reference, generated = pair
    with pytest.raises(ModelNotAvailableError) as error:
        lpips_distance(reference, generated, device="cpu")
    message = str(error.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message
    assert "http" not in message


def test_missing_vgg_backbone_names_the_vgg_file(pair):
    reference, generated = pair
    with pytest.raises(ModelNotAvailableError, match="vgg16-397923af.pth"):
        lpips_distance(reference, generated, net="vgg", device="cpu")


def test_backbone_file_in_weights_dir_is_loaded_into_the_lpips_slices(tmp_path):
    import torchvision

    torch.manual_seed(3)
    features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(state, weights / "alexnet-owt-7be5be79.pth")
    MODEL_CACHE.clear()
    model = load_lpips("alex", device="cpu")
    torch.testing.assert_close(model.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(model.net.slice5._modules["10"].bias, state["features.10.bias"])
    MODEL_CACHE.clear()


def test_slices_smaller_than_the_backbone_accepts_are_rejected():
    tiny = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(InvalidInputError, match="at least 32"):
        lpips_distance(tiny, tiny, device="cpu", pretrained_backbone=False)


def test_unknown_net_is_rejected():
    image = np.zeros((40, 40), np.uint8)
    with pytest.raises(InvalidInputError, match="unknown LPIPS net"):
        lpips_distance(image, image, net="squeeze", device="cpu", pretrained_backbone=False)
