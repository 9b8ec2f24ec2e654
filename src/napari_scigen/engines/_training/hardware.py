"""Where a training run ran, recorded in every checkpoint's metadata."""

from __future__ import annotations

import os
import platform
from typing import Any


def hardware_description(device: str) -> dict[str, Any]:
    """Where training ran: CPU model/cores/threads or the GPU name.

    Parameters
    ----------
    device : str
        The resolved torch device (``"cpu"``, ``"cuda:0"``...).

    Returns
    -------
    dict
        ``device``, ``machine``, ``processor``, ``cpu_count``, ``torch_threads`` and,
        when known, ``cpu_model`` and ``gpu``.
    """
    import torch

    info: dict[str, Any] = {
        "device": device,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    model = cpu_model()
    if model:
        info["cpu_model"] = model
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def cpu_model() -> str | None:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``None``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
