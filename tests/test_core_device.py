import pytest

from napari_scigen.core.device import DeviceUnavailableError, resolve_device


def test_cpu_is_always_available():
    assert resolve_device("cpu") == "cpu"


def test_auto_picks_a_working_device():
    assert resolve_device("auto") in {"cpu", "cuda", "mps"}


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cuda_without_gpu_says_why():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeviceUnavailableError, match="device 'cuda' requested"):
        resolve_device("cuda")
