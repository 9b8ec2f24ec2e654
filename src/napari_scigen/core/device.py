"""Compute-device selection with clear errors (torch is imported lazily)."""

from __future__ import annotations

from .validation import InvalidInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailableError(InvalidInputError, RuntimeError):
    """The requested compute device is not available on this machine.

    A user error like any bad input (the CLI exits with status 2; it was an "unexpected
    error" before), and still a ``RuntimeError``. The device to use instead is named as a
    keyword (``device='cpu'``) and listed in ``options`` (see
    :mod:`napari_scigen.core.validation`).
    """


def resolve_device(name: str = "auto") -> str:
    """Turn a device request into a concrete torch device string.

    Parameters
    ----------
    name : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.

    Returns
    -------
    str
        A device string torch accepts.

    Raises
    ------
    DeviceUnavailableError
        If the requested device cannot be used here, with the reason.
    ValueError
        If ``name`` is not a known device.
    """
    import torch

    request = (name or "auto").strip().lower()
    base = request.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if base == "cpu":
        return "cpu"
    if base == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda
            why = (
                "this torch build has no CUDA support (CPU-only wheel)"
                if built is None
                else f"torch was built for CUDA {built} but no CUDA GPU/driver is visible"
            )
            raise DeviceUnavailableError(
                f"device 'cuda' requested but {why}; use device='cpu'", options=["device"]
            )
        if ":" in request:
            index = int(request.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise DeviceUnavailableError(
                    f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
                )
        return request
    if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(
            "device 'mps' requested but Apple MPS is not available here; use 'cpu'"
        )
    return "mps"


def default_dtype_for(device: str):
    """fp16 on CUDA, fp32 elsewhere (CPU fp16 is slow and lossy)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32
