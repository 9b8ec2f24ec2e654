"""The one registry of engines.

Every engine registers once, here (built-in engines, at the bottom of this module) or
through the ``napari_scigen.engines`` entry-point group (third-party packages: the
entry point names a zero-argument function returning an :class:`Engine` or a list of
them). Widget choices, CLI ``--method`` choices, ``validate``/``compare`` methods, the
demo and the docs' engine table all read :func:`engines`.

An engine is a generator function (see :mod:`napari_scigen.core.progress`) with the
call signature of its task (:data:`TASKS`), and a frozen params dataclass deriving from
:class:`~napari_scigen.core.params.EngineParams`. Both are named as ``"module:attribute"``
strings so that listing engines imports neither torch nor diffusers.

Examples
--------
>>> from napari_scigen.engines.registry import engine_names, get_engine
>>> "linear" in engine_names("interpolate")
True
>>> get_engine("interpolate", "linear").description
'blend of the two nearest kept slices'
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.validation import InvalidInputError

#: Entry-point group through which other packages add engines.
ENTRY_POINT_GROUP = "napari_scigen.engines"


@dataclass(frozen=True)
class Task:
    """A kind of job and the call signature its engines share.

    Attributes
    ----------
    name : str
        ``"interpolate"``, ``"inpaint"``, ...
    signature : str
        How :mod:`napari_scigen.api` calls an engine of this task.
    description : str
        One line for docs and help.
    """

    name: str
    signature: str
    description: str


#: Every task, with the generator signature its engines implement.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "interpolate",
            "run(volume, params, *, missing=None, factor=None, cancel=None)",
            "rebuild missing z-slices, or upsample z by an integer factor",
        ),
        Task(
            "inpaint",
            "run(image, mask, params, *, slices=None, cancel=None)",
            "fill masked pixels; pixels outside the mask are bit-identical",
        ),
        Task(
            "mask",
            "run(image, params, *, slices=None, cancel=None)",
            "derive an editable mask from the data (e.g. DiffEdit's prompt difference)",
        ),
        Task(
            "edit",
            "run(image, mask, params, *, slices=None, cancel=None)",
            "text-guided editing of a masked (or automatically masked) region",
        ),
        Task(
            "generate",
            "run(image, params, *, control=None, slices=None, cancel=None)",
            "synthesize new slices conditioned on real ones",
        ),
        Task(
            "train",
            "run(volume, params, *, out_dir, resume=True, cancel=None)",
            "train a generative model on the slices of a volume",
        ),
        Task(
            "sample",
            "run(params, *, cancel=None)",
            "draw new random slices from a trained generative model",
        ),
    )
}


@dataclass(frozen=True)
class Engine:
    """One registered engine.

    Attributes
    ----------
    task : str
        A key of :data:`TASKS`.
    name : str
        Method name used by every front-end (``--method NAME``, widget choice).
    params : str
        ``"module:Class"`` of its :class:`~napari_scigen.core.params.EngineParams`.
    run : str
        ``"module:function"`` of its generator function.
    description : str
        One line for docs, ``--help`` and widget tooltips.
    extras : tuple of str
        Importable packages it needs beyond the core install (``"torch"``...).
    install_hint : str
        What to install when an extra is missing.
    deterministic : bool
        Same inputs and params give bit-identical outputs (the batch runner relies
        on it to promise chunked == single-process results).
    halo : int
        Context slices on each side a z-chunk needs so that chunked and whole-volume
        runs agree (per-slice engines: 0; interpolation: kept slices).
    chunk_invariant : bool
        A batch job over z-chunks (each reading ``halo`` slices around it) gives the
        single-process result: bit for bit, or, for the learned interpolation (trained
        once, its weights shipped to the chunks), within one grey level where float32
        rounding of differently shaped tiles crosses a half level. ``batch`` warns for
        engines without it.
    needs_weights : bool
        Needs model weights that are not shipped with the package.
    accepts_voxel_size : bool
        Its params have a ``voxel_size`` field (``None`` = isotropic): front-ends fill
        it from the file's or layer's calibration when it is left empty.
    learns_from_input : bool
        Trains a network on the volume it is given (its params have ``train_steps``;
        also with ``train_steps=0``, the intensity window and the network's view along
        z still come from that volume): ``batch`` runs it as one task unless it is
        ``chunk_invariant``.
    outputs_uncertainty : bool
        Returns an ``"uncertainty"`` image (per-voxel spread) while its ``uncertainty``
        parameter is on (``--uncertainty-out``, the docks' uncertainty layer).
    inputs : tuple of str
        Optional keyword inputs it accepts beyond its task's signature (e.g.
        ``("control",)``); :mod:`napari_scigen.api` refuses them for other engines.
    """

    task: str
    name: str
    params: str
    run: str
    description: str
    extras: tuple[str, ...] = ()
    install_hint: str = ""
    deterministic: bool = True
    halo: int = 0
    chunk_invariant: bool = False
    needs_weights: bool = False
    accepts_voxel_size: bool = False
    learns_from_input: bool = False
    outputs_uncertainty: bool = False
    inputs: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """``(task, name)``."""
        return self.task, self.name

    @property
    def params_class(self) -> type:
        """The params dataclass (imported on first use; never imports torch)."""
        return _import(self.params)

    def load(self) -> Callable[..., Any]:
        """Import and return the generator function.

        Raises
        ------
        ImportError
            With what to install, when an extra is missing.
        """
        missing = self.missing_extras()
        if missing:
            hint = self.install_hint or "pip install 'napari-scigen[all]'"
            raise ImportError(
                f"engine {self.task}/{self.name} needs {', '.join(missing)}, which is not "
                f"installed: {hint}"
            )
        return _import(self.run)

    def missing_extras(self) -> list[str]:
        """Extras that are not importable on this machine."""
        return [name for name in self.extras if importlib.util.find_spec(name) is None]


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_REGISTRY: dict[tuple[str, str], Engine] = {}
_LOCK = threading.Lock()
_ENTRY_POINTS_LOADED = False


def register(engine: Engine, *, replace: bool = False) -> Engine:
    """Add an engine to the registry.

    Raises
    ------
    ValueError
        Unknown task, or a name already registered for the task (unless ``replace``).
    """
    if engine.task not in TASKS:
        raise ValueError(f"unknown task {engine.task!r}; tasks: {', '.join(TASKS)}")
    with _LOCK:
        if engine.key in _REGISTRY and not replace:
            raise ValueError(f"engine {engine.task}/{engine.name} is already registered")
        _REGISTRY[engine.key] = engine
    return engine


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            provided = point.load()()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break the registry
            import warnings

            warnings.warn(
                f"napari-scigen engine plugin {point.name!r} failed to load: {error}",
                stacklevel=2,
            )
            continue
        for engine in provided if isinstance(provided, (list, tuple)) else [provided]:
            register(engine, replace=True)


def engines(task: str | None = None) -> list[Engine]:
    """Registered engines (of one task), in registration order."""
    _load_entry_points()
    if task is not None and task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return [e for e in _REGISTRY.values() if task is None or e.task == task]


def engine_names(task: str) -> tuple[str, ...]:
    """Names of the engines of ``task``, in registration order."""
    return tuple(e.name for e in engines(task))


def get_engine(task: str, name: str) -> Engine:
    """The engine ``name`` of ``task``.

    Raises
    ------
    InvalidInputError
        Naming the valid choices.
    """
    for engine in engines(task):
        if engine.name == name:
            return engine
    choices = ", ".join(engine_names(task)) or "none"
    raise InvalidInputError(f"unknown {task} method {name!r}; choose one of {choices}")


# ---------------------------------------------------------------------------------------
# built-in engines: one registration each
# ---------------------------------------------------------------------------------------

_TORCH = ("torch",)
_TORCH_HINT = "pip install torch (see README: torch is a core dependency)"
_SD = ("torch", "diffusers", "transformers")
_SD_HINT = "pip install 'diffusers<1' transformers torch"

for _engine in (
    Engine(
        "interpolate",
        "linear",
        "napari_scigen.engines.interpolation.classical:LinearParams",
        "napari_scigen.engines.interpolation.classical:run_linear",
        "blend of the two nearest kept slices",
        halo=1,
        chunk_invariant=True,
    ),
    Engine(
        "interpolate",
        "nearest",
        "napari_scigen.engines.interpolation.nearest:NearestParams",
        "napari_scigen.engines.interpolation.nearest:run_nearest",
        "copy of the nearer kept slice (the do-nothing baseline)",
        halo=1,
        chunk_invariant=True,
    ),
    Engine(
        "interpolate",
        "flow",
        "napari_scigen.engines.interpolation.classical:FlowParams",
        "napari_scigen.engines.interpolation.classical:run_flow",
        "motion-compensated blend along a TV-L1 optical flow",
        halo=1,
        chunk_invariant=True,
    ),
    Engine(
        "interpolate",
        "stylegan",
        "napari_scigen.engines.stylegan.params:StyleGANInterpolateParams",
        "napari_scigen.engines.stylegan.interpolate:run_interpolate_stylegan",
        "linear base plus the in-between detail of a StyleGAN2 walk between projected kept slices, checked on held-out kept slices (falls back to linear when it loses)",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        # halo 1 is what one gap's blend reads, but the intensity window (kept slices of
        # the whole volume), the self-validation and the projection seeds (global slice
        # indices) come from the volume it is given: a z-chunk gives another result
        halo=1,
    ),
    Engine(
        "interpolate",
        "learned",
        "napari_scigen.engines.learned.params:LearnedInterpolateParams",
        "napari_scigen.engines.interpolation.learned:run_learned",
        "residual U-Net trained on this volume at the gap being filled (kept z-slices and "
        "in-plane rows), checked at that gap on held-out kept slices or their rows (falls "
        "back to linear when it loses)",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        deterministic=False,
        # trained once on the whole volume (batch: before the chunks, weights shipped as
        # safetensors); a chunk reads the tiles' halo (HALO + 3 output rows) and the
        # known neighbours of its edge rows: at most 48 kept slices on each side
        halo=48,
        chunk_invariant=True,
        accepts_voxel_size=True,
        learns_from_input=True,
        outputs_uncertainty=True,
    ),
    Engine(
        "interpolate",
        "auto",
        "napari_scigen.engines.learned.params:AutoInterpolateParams",
        "napari_scigen.engines.interpolation.auto:run_auto",
        "whichever of learned, linear and flow scores best at the gap being filled on held-out "
        "kept slices (or their rows) of this volume",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        deterministic=False,
        halo=1,
        accepts_voxel_size=True,
        learns_from_input=True,
        outputs_uncertainty=True,
    ),
    Engine(
        "inpaint",
        "biharmonic",
        "napari_scigen.engines.inpainting.biharmonic:BiharmonicParams",
        "napari_scigen.engines.inpainting.biharmonic:run_biharmonic",
        "smooth biharmonic continuation of the surrounding pixels, slice by slice",
        chunk_invariant=True,
    ),
    Engine(
        "inpaint",
        "controlnet",
        "napari_scigen.engines.sd.controlnet:ControlNetParams",
        "napari_scigen.engines.sd.controlnet:run_controlnet_inpaint",
        "Stable Diffusion + ControlNet regeneration of the masked region",
        extras=_SD,
        inputs=("control",),
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "inpaint",
        "unclip",
        "napari_scigen.engines.sd.unclip:UnCLIPParams",
        "napari_scigen.engines.sd.unclip:run_unclip_inpaint",
        "Stable unCLIP: the masked region replaced by an image variation of its crop",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "inpaint",
        "learned",
        "napari_scigen.engines.learned.params:LearnedInpaintParams",
        "napari_scigen.engines.inpainting.learned:run_learned_inpaint",
        "residual U-Net trained on this volume's unmasked voxels with masks like yours and "
        "3D context, checked against biharmonic on held-out masks",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        deterministic=False,
        # trained once on the whole volume; a slice's inputs reach Z_WINDOW = 16 slices
        halo=16,
        chunk_invariant=True,
        learns_from_input=True,
        outputs_uncertainty=True,
    ),
    Engine(
        "mask",
        "diffedit",
        "napari_scigen.engines.sd.diffedit:DiffEditParams",
        "napari_scigen.engines.sd.diffedit:run_generate_mask",
        "DiffEdit mask from the difference between source and target prompts",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "edit",
        "diffedit",
        "napari_scigen.engines.sd.diffedit:DiffEditParams",
        "napari_scigen.engines.sd.diffedit:run_diffedit",
        "DiffEdit: invert and re-generate the masked region towards a target prompt",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "edit",
        "instructpix2pix",
        "napari_scigen.engines.sd.instructpix2pix:InstructPix2PixParams",
        "napari_scigen.engines.sd.instructpix2pix:run_instructpix2pix",
        "InstructPix2Pix: edit the masked region (or whole slices) by an instruction",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "edit",
        "ledits",
        "napari_scigen.engines.sd.ledits:LEditsParams",
        "napari_scigen.engines.sd.ledits:run_ledits",
        "LEDITS++: exact inversion, then semantic guidance towards (or away from) a concept",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "generate",
        "controlnet",
        "napari_scigen.engines.sd.controlnet:ControlNetParams",
        "napari_scigen.engines.sd.controlnet:run_controlnet",
        "Stable Diffusion conditioned on the Canny edges (or a layer) of real slices",
        extras=_SD,
        inputs=("control",),
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "generate",
        "unclip",
        "napari_scigen.engines.sd.unclip:UnCLIPParams",
        "napari_scigen.engines.sd.unclip:run_unclip",
        "Stable unCLIP image variations of real slices (CLIP image embedding)",
        extras=_SD,
        install_hint=_SD_HINT,
        deterministic=False,
        needs_weights=True,
    ),
    Engine(
        "train",
        "stylegan",
        "napari_scigen.engines.stylegan.params:StyleGANTrainParams",
        "napari_scigen.engines.stylegan.train:run_train_stylegan",
        "train a StyleGAN2 on random crops of the volume's slices",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        learns_from_input=True,
    ),
    Engine(
        "train",
        "dcgan",
        "napari_scigen.engines.dcgan.params:DCGANTrainParams",
        "napari_scigen.engines.dcgan.train:run_train_dcgan",
        "train a DCGAN (the classical GAN baseline) on random crops of the volume's slices",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        learns_from_input=True,
    ),
    Engine(
        "train",
        "sd-lora",
        "napari_scigen.engines.sd.finetune_params:SDLoRATrainParams",
        "napari_scigen.engines.sd.finetune:run_finetune_sd",
        "LoRA fine-tuning of Stable Diffusion on tiles of the volume (an adapter folder)",
        extras=(*_SD, "peft"),
        install_hint="pip install 'diffusers<1' transformers torch peft",
        needs_weights=True,
        learns_from_input=True,
    ),
    Engine(
        "sample",
        "stylegan",
        "napari_scigen.engines.stylegan.params:StyleGANSampleParams",
        "napari_scigen.engines.stylegan.sample:run_sample_slices",
        "random slices from a StyleGAN2 generator (embedded or own)",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
    ),
    Engine(
        "sample",
        "stylegan-walk",
        "napari_scigen.engines.stylegan.params:StyleGANWalkParams",
        "napari_scigen.engines.stylegan.sample:run_latent_walk",
        "a smooth walk through a StyleGAN2 generator's latent space (one slice per step)",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
    ),
    Engine(
        "sample",
        "dcgan",
        "napari_scigen.engines.dcgan.params:DCGANSampleParams",
        "napari_scigen.engines.dcgan.sample:run_sample_dcgan",
        "random slices from a DCGAN trained on a volume (training method dcgan)",
        extras=_TORCH,
        install_hint=_TORCH_HINT,
        needs_weights=True,
    ),
):
    register(_engine)
del _engine
