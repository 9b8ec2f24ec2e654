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
"""

from __future__ import annotations

import importlib.util
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
    """One weight file or model the package knows about."""

    key: str
    used_by: str
    files: tuple[str, ...]
    present: bool
    location: str | None
    looked_in: tuple[str, ...]
    how_to_get: str

    def as_dict(self) -> dict:
        """JSON-friendly description."""
        return {
            "key": self.key,
            "used_by": self.used_by,
            "files": list(self.files),
            "status": "present" if self.present else "missing",
            "present": self.present,
            "location": self.location,
            "looked_in": list(self.looked_in),
            "how_to_get": self.how_to_get,
        }


def _file_entry(key: str, used_by: str, files: tuple[str, ...], how_to_get: str) -> WeightEntry:
    found = find_weight_file(*files)
    return WeightEntry(
        key=key,
        used_by=used_by,
        files=files,
        present=found is not None,
        location=str(found) if found is not None else None,
        looked_in=tuple(str(d) for d in search_dirs()),
        how_to_get=how_to_get,
    )


def lpips_linear_weights(net: str) -> Path | None:
    """The LPIPS linear-layer file shipped with the ``lpips`` package (``None`` if absent)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    return path if path.is_file() else None


def clip_model_entry(model: str = DEFAULT_CLIP_MODEL) -> WeightEntry:
    """Whether the CLIP model is a local directory or in the Hugging Face cache."""
    local = Path(model).expanduser()
    cache_folder = hf_hub_cache() / f"models--{model.replace('/', '--')}"
    if local.is_dir():
        location: str | None = str(local)
    elif cache_folder.is_dir():
        location = str(cache_folder)
    else:
        location = None
    return WeightEntry(
        key="clip",
        used_by="CLIPScore",
        files=(model,),
        present=location is not None,
        location=location,
        looked_in=(str(hf_hub_cache()),),
        how_to_get=f"huggingface-cli download {model} on a machine with internet, then copy the "
        f"cache folder models--{model.replace('/', '--')} into {hf_hub_cache()}, "
        "or pass a local directory saved with save_pretrained().",
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
        (``"present"``, ``"missing"`` or ``"embedded"``), ``present``, ``location``,
        ``looked_in`` and ``how_to_get``.
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
        rows.append(
            {
                "key": f"lpips-{net}-linear",
                "used_by": f"LPIPS (net={net!r})",
                "files": [f"lpips/weights/v0.1/{net}.pth"],
                "status": "present" if linear else "missing",
                "present": linear is not None,
                "location": str(linear) if linear else None,
                "looked_in": ["the installed lpips package"],
                "how_to_get": "pip install lpips (the package ships these files)",
            }
        )
    rows.append(
        _file_entry(
            "fid-inception", "FID / KID / PRDC", FID_INCEPTION_FILES, fid_inception_instructions()
        ).as_dict()
    )
    rows.append(clip_model_entry(clip_model).as_dict())
    stylegan = embedded_stylegan_files()
    rows.append(
        {
            "key": "stylegan-embedded",
            "used_by": "StyleGAN slice interpolation (default generator)",
            "files": [p.name for p in stylegan] or ["stylegan_rock64.safetensors"],
            "status": "embedded" if stylegan else "missing",
            "present": bool(stylegan),
            "location": str(stylegan[0]) if stylegan else None,
            "looked_in": ["the installed napari_scigen package (data/)"],
            "how_to_get": "ships with napari-scigen (napari_scigen/data/stylegan_rock64.safetensors); "
            "reinstall the package if it is missing, or train your own generator",
        }
    )
    return rows
