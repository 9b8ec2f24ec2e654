"""``info`` subcommand: what a file holds and what this installation can do."""

from __future__ import annotations

import argparse
import json

from .common import add_series_argument


def register(subparsers) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="describe a volume file, or this installation",
        description="Without a path: versions, compute devices and model caches. With a path: "
        "shape, dtype, voxel size, intensity range and provenance of a TIFF stack or folder.",
    )
    parser.add_argument("path", nargs="?", help="TIFF stack or folder of slices")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_series_argument(parser)
    parser.set_defaults(func=run_info_command)


def describe_installation() -> dict:
    """Versions, devices and cache locations, without loading any model."""
    from ..core.models import hf_hub_cache, torch_hub_checkpoints, weights_dir
    from ..core.provenance import software_versions

    info: dict = {"software": software_versions()}
    try:
        import torch

        info["devices"] = {
            "cuda": torch.cuda.is_available(),
            "cuda_devices": [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ],
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        }
    except ImportError:
        info["devices"] = {"torch": "not installed"}
    info["caches"] = {
        "weights": str(weights_dir()),
        "huggingface": str(hf_hub_cache()),
        "torch_hub_checkpoints": str(torch_hub_checkpoints()),
    }
    return info


#: ``info`` reads volumes above this size lazily, and samples the intensity range of one
#: slice only when that slice is at most this size (a header may declare anything).
INFO_READ_BYTES = 256 * 1024**2


def describe_volume(path: str, series: int | None = None) -> dict:
    """Shape, dtype, voxel size and provenance of a file (reads one slice for lazy files).

    Volumes larger than :data:`INFO_READ_BYTES` are opened lazily and only their first
    slice is read, and only when that slice is no larger either: describing a file never
    reads more than that, whatever its header declares.
    """
    import math

    import numpy as np

    from ..core.io import read_volume

    volume = read_volume(path, series=series, lazy_threshold_bytes=INFO_READ_BYTES)
    notes = list(volume.metadata.get("notes", []))
    shape = volume.data.shape
    slice_bytes = math.prod(shape[1:] if len(shape) > 2 else shape) * volume.dtype.itemsize
    key = "intensity_range" + (" (first slice)" if volume.lazy else "")
    value_range = None
    if not volume.lazy or slice_bytes <= INFO_READ_BYTES:
        sample = np.asarray(volume.data[0] if volume.lazy else volume.data)
        value_range = [float(sample.min()), float(sample.max())]
    else:
        notes.append(f"intensity range not read: one slice holds {slice_bytes:,} bytes")
    return {
        "path": str(path),
        "shape": list(shape),
        "dtype": str(volume.data.dtype),
        "voxel_size": list(volume.voxel_size),
        "unit": volume.unit,
        "lazy": volume.lazy,
        key: value_range,
        "kind": volume.kind,
        "notes": notes,
        "provenance": volume.provenance,
    }


def run_info_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen info``."""
    from ..core.provenance import strict_jsonable

    info = describe_volume(args.path, args.series) if args.path else describe_installation()
    info = strict_jsonable(info)
    if args.json:
        print(json.dumps(info, indent=2, allow_nan=False))
    else:
        for key, value in info.items():
            text = json.dumps(value, allow_nan=False) if isinstance(value, (dict, list)) else value
            print(f"{key}: {text}")
    return 0
