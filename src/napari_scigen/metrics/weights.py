"""The weight files the metrics (and the embedded StyleGAN) use, and where they are looked for.

Nothing here downloads anything. Files are looked for, in order, in

1. :func:`napari_scigen.core.models.weights_dir` (``$NAPARI_SCIGEN_WEIGHTS`` or
   ``~/.cache/napari-scigen``), the one cache directory of napari-scigen, and
2. :func:`napari_scigen.core.models.torch_hub_checkpoints`
   (``$TORCH_HOME/hub/checkpoints``), where torchvision, lpips, pytorch-fid and
   torch-fidelity put the files they download, so an existing download is reused.

Accepted file names
-------------------
* LPIPS AlexNet backbone: ``alexnet-owt-7be5be79.pth`` (torchvision ImageNet weights).
* LPIPS VGG-16 backbone: ``vgg16-397923af.pth`` (torchvision ImageNet weights).
* LPIPS linear layers: shipped inside the ``lpips`` package (``lpips/weights/v0.1``).
* FID Inception-v3 (the TensorFlow 2015-12-05 graph ported to PyTorch), either of
  ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's file) or
  ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's file). Both hold the same
  parameters with torchvision's layer names and 1008 classes; they are loaded into
  our own FID Inception (see :mod:`napari_scigen.metrics.distribution`). The
  torchvision ImageNet Inception (``inception_v3_google-*.pth``) is a different
  network and is *not* accepted: FID values computed with it are not comparable.
* CLIP: a Hugging Face model id (default ``openai/clip-vit-base-patch32``) in the
  Hugging Face cache, or a local directory saved with ``save_pretrained``.
* StyleGAN: the default generator embedded in the package (``napari_scigen/data``).

Verification
------------
A file is reported present only when it looks sound (:func:`verify_weight_file`): not
empty; a PyTorch file has a zip (or legacy pickle) header and a readable zip
directory; a safetensors file has a readable header whose tensors fit in the file;
a torchvision file whose name ends in ``-<hex>.pth`` has a SHA-256 starting with
those digits (the torch hub convention). Otherwise its status is ``"damaged"`` with
the reason. Nothing is loaded or unpickled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..core.models import hf_hub_cache, torch_hub_checkpoints, weights_dir

LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}

#: torchvision model builder and weight enum member that download each backbone file.
LPIPS_BACKBONE_SOURCES = {
    "alex": ("alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
    "vgg": ("vgg16", "VGG16_Weights.IMAGENET1K_V1"),
}

#: FID Inception weight files accepted, in order of preference.
FID_INCEPTION_FILES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)

#: Default CLIP model for CLIPScore.
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


#: Files whose names carry the leading hex digits of their SHA-256 (torch hub convention).
HASHED_FILES = frozenset(LPIPS_BACKBONE_FILES.values())
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")
#: A safetensors header larger than this is not a header (the file is something else).
_MAX_SAFETENSORS_HEADER = 100 * 1024**2


def _safetensors_problem(path: Path, size: int) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "too short for a safetensors file"
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return "not a safetensors file (its header length is impossible)"
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            return "not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "not a safetensors file (its header is not a table of tensors)"
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and offsets[1] <= data_bytes):
            return f"truncated or damaged (tensor {name!r} lies beyond the end of the file)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return "truncated or damaged (its zip directory cannot be read)"
        return None
    if head[:1] == b"\x80":  # legacy torch.save (pickle protocol 2+)
        return None
    return "not a PyTorch weights file (unknown header)"


def _hash_problem(path: Path) -> str | None:
    match = _HASH_IN_NAME.search(path.name)
    if match is None or path.name not in HASHED_FILES:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        return (
            f"damaged or incomplete download (its SHA-256 does not start with {match.group(1)} "
            "as its name says)"
        )
    return None


def verify_weight_file(path: str | Path) -> str | None:
    """What is wrong with a weight file, or ``None`` when it looks sound (see module notes).

    Reads headers (and, for files named with a hash, the whole file to hash it); never
    unpickles or loads anything.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        if path.suffix == ".safetensors":
            return _safetensors_problem(path, size)
        if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
            return _torch_file_problem(path) or _hash_problem(path)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    return None


def search_dirs() -> tuple[Path, ...]:
    """Directories searched for weight files, in order."""
    return (weights_dir(), torch_hub_checkpoints())


def find_weight_file(*names: str) -> Path | None:
    """The first existing file among ``names`` in :func:`search_dirs`, or ``None``."""
    for directory in search_dirs():
        for name in names:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def lpips_backbone_instructions(net: str) -> str:
    """How to obtain the LPIPS backbone file for ``net`` on an offline machine."""
    file_name = LPIPS_BACKBONE_FILES[net]
    builder, weights = LPIPS_BACKBONE_SOURCES[net]
    return (
        f"On a machine with internet run\n"
        f"    python -c \"import torchvision; torchvision.models.{builder}(weights='{weights.split('.')[1]}')\"\n"
        f"which saves {file_name} into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/) "
        f"there; copy {file_name} into {torch_hub_checkpoints()} or {weights_dir()} here "
        f"(set NAPARI_SCIGEN_WEIGHTS to use another folder)."
    )


def fid_inception_instructions() -> str:
    """How to obtain the FID Inception weights on an offline machine."""
    first, second = FID_INCEPTION_FILES
    return (
        "On a machine with internet, either\n"
        "    pip install torch-fidelity\n"
        '    python -c "from torch_fidelity.feature_extractor_inceptionv3 import '
        "FeatureExtractorInceptionV3 as F; F('inception-v3-compat', ['2048'])\"\n"
        f"(saves {first}) or\n"
        "    pip install pytorch-fid\n"
        '    python -c "from pytorch_fid.inception import fid_inception_v3; fid_inception_v3()"\n'
        f"(saves {second}), both into $TORCH_HOME/hub/checkpoints/ (default "
        f"~/.cache/torch/hub/checkpoints/); copy that file into {weights_dir()} or "
        f"{torch_hub_checkpoints()} here (set NAPARI_SCIGEN_WEIGHTS to use another folder). "
        "The torchvision ImageNet Inception weights are a different network and are not accepted."
    )


@dataclass(frozen=True)
class WeightEntry:
    """One weight file or model the package knows about.

    ``present`` is true only for a file that passed :func:`verify_weight_file`;
    a file that was found but failed has ``location`` set and ``problem`` saying why.
    """

    key: str
    used_by: str
    files: tuple[str, ...]
    present: bool
    location: str | None
    looked_in: tuple[str, ...]
    how_to_get: str
    problem: str | None = None

    def as_dict(self) -> dict:
        """JSON-friendly description."""
        status = "present" if self.present else ("damaged" if self.problem else "missing")
        return {
            "key": self.key,
            "used_by": self.used_by,
            "files": list(self.files),
            "status": status,
            "present": self.present,
            "location": self.location,
            "looked_in": list(self.looked_in),
            "how_to_get": self.how_to_get,
            "problem": self.problem,
        }


def _file_entry(key: str, used_by: str, files: tuple[str, ...], how_to_get: str) -> WeightEntry:
    found = find_weight_file(*files)
    problem = verify_weight_file(found) if found is not None else None
    return WeightEntry(
        key=key,
        used_by=used_by,
        files=files,
        present=found is not None and problem is None,
        location=str(found) if found is not None else None,
        looked_in=tuple(str(d) for d in search_dirs()),
        how_to_get=how_to_get,
        problem=problem,
    )


def lpips_linear_weights(net: str) -> Path | None:
    """The LPIPS linear-layer file shipped with the ``lpips`` package (``None`` if absent)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    return path if path.is_file() else None


def _model_folder_problem(folder: Path) -> str | None:
    """Why a CLIP model folder (``save_pretrained`` or a hub snapshot) is unusable, or None."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if "config.json" not in names:
        return f"{folder} has no config.json"
    weights = sorted(n for n in names if n.endswith((".safetensors", ".bin")))
    if not weights:
        return f"{folder} has no weights file (model.safetensors)"
    problems = [verify_weight_file(folder / name) for name in weights]
    if all(problems):
        return f"{folder / weights[0]}: {problems[0]}"
    return None


def clip_model_entry(model: str = DEFAULT_CLIP_MODEL) -> WeightEntry:
    """Whether the CLIP model is a complete local directory or in the Hugging Face cache."""
    local = Path(model).expanduser()
    cache_folder = hf_hub_cache() / f"models--{model.replace('/', '--')}"
    problem = None
    if local.is_dir():
        location: str | None = str(local)
        problem = _model_folder_problem(local)
    elif cache_folder.is_dir():
        location = str(cache_folder)
        snapshots = sorted((cache_folder / "snapshots").glob("*/"))
        problems = [_model_folder_problem(snapshot) for snapshot in snapshots]
        if not snapshots:
            problem = f"{cache_folder} holds no snapshot"
        elif all(problems):
            problem = problems[0]
    else:
        location = None
    return WeightEntry(
        key="clip",
        used_by="CLIPScore",
        files=(model,),
        present=location is not None and problem is None,
        location=location,
        looked_in=(str(hf_hub_cache()),),
        how_to_get=f"huggingface-cli download {model} on a machine with internet, then copy the "
        f"cache folder models--{model.replace('/', '--')} into {hf_hub_cache()}, "
        "or pass a local directory saved with save_pretrained().",
        problem=problem,
    )


def embedded_stylegan_files() -> tuple[Path, ...]:
    """StyleGAN generator files embedded in the package data folder."""
    spec = importlib.util.find_spec("napari_scigen")
    if spec is None or spec.origin is None:
        return ()
    data = Path(spec.origin).parent / "data"
    if not data.is_dir():
        return ()
    return tuple(
        sorted(
            p for p in data.glob("*.safetensors") if p.is_file() and "stylegan" in p.name.lower()
        )
    )


def weights_report(clip_model: str = DEFAULT_CLIP_MODEL) -> list[dict]:
    """Every weight file the package knows, with its status and where to put it.

    Parameters
    ----------
    clip_model : str
        The CLIP model id or directory to check.

    Returns
    -------
    list of dict
        One dict per entry with keys ``key``, ``used_by``, ``files``, ``status``
        (``"present"``, ``"missing"``, ``"damaged"`` or ``"embedded"``), ``present``, ``location``,
        ``looked_in``, ``how_to_get`` and ``problem`` (why a found file is
        ``"damaged"``, else ``None``).
    """
    entries = [
        _file_entry(
            f"lpips-{net}-backbone",
            f"LPIPS (net={net!r})",
            (file_name,),
            lpips_backbone_instructions(net),
        )
        for net, file_name in LPIPS_BACKBONE_FILES.items()
    ]
    rows = [entry.as_dict() for entry in entries]
    for net in LPIPS_BACKBONE_FILES:
        linear = lpips_linear_weights(net)
        problem = verify_weight_file(linear) if linear else None
        rows.append(
            WeightEntry(
                key=f"lpips-{net}-linear",
                used_by=f"LPIPS (net={net!r})",
                files=(f"lpips/weights/v0.1/{net}.pth",),
                present=linear is not None and problem is None,
                location=str(linear) if linear else None,
                looked_in=("the installed lpips package",),
                how_to_get="pip install lpips (the package ships these files); reinstall it "
                "if a file is damaged",
                problem=problem,
            ).as_dict()
        )
    rows.append(
        _file_entry(
            "fid-inception", "FID / KID / PRDC", FID_INCEPTION_FILES, fid_inception_instructions()
        ).as_dict()
    )
    rows.append(clip_model_entry(clip_model).as_dict())
    stylegan = embedded_stylegan_files()
    problem = verify_weight_file(stylegan[0]) if stylegan else None
    row = WeightEntry(
        key="stylegan-embedded",
        used_by="StyleGAN slice interpolation (default generator)",
        files=tuple(p.name for p in stylegan) or ("stylegan_rock64.safetensors",),
        present=bool(stylegan) and problem is None,
        location=str(stylegan[0]) if stylegan else None,
        looked_in=("the installed napari_scigen package (data/)",),
        how_to_get="ships with napari-scigen (napari_scigen/data/stylegan_rock64.safetensors); "
        "reinstall the package if it is missing or damaged, or train your own generator",
        problem=problem,
    ).as_dict()
    if row["present"]:
        row["status"] = "embedded"
    rows.append(row)
    return rows
