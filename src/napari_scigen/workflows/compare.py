"""Compare generative engines on one volume: the evaluation protocol of Sordo et al. as one run.

Sordo et al. (J. Imaging 2025) compared DCGAN, StyleGAN, Stable unCLIP, LEDITS++,
InstructPix2Pix, ControlNet and DiffEdit on microCT slices with SSIM, LPIPS, FID and
CLIPScore (mean ± std over the generated images, FID over the set) and figure grids
(their Figs. 20-22), and found those scores miss scientific fidelity. This workflow runs
any set of registered engines on ``n_slices`` real slices of the user's volume and
scores each engine's outputs against those slices with the same metrics plus the
domain metrics the paper calls for: porosity, two-point correlation S2 and pore surface
errors. Engines run through :mod:`napari_scigen.api` only:

* ``inpaint`` / ``edit`` engines regenerate (or edit towards ``edit_prompt``) a mask on
  each chosen slice (default: a centred square of ``mask_size`` of the side);
* ``generate`` engines make a new slice from each chosen one (ControlNet, unCLIP);
* ``interpolate`` engines rebuild the chosen slices after they were blanked;
* ``sample`` engines (StyleGAN, DCGAN) draw ``n_slices`` unpaired samples; with
  ``train_steps`` DCGAN (and any sampler named in ``train_params``) is first trained on
  the volume itself.

Paired scores compare each output with its slice (sample engines: with the i-th chosen
slice, centre-cropped to the sample size; they are unpaired by nature, as in the paper).
Morphology of samples is compared as sets instead (:mod:`napari_scigen.metrics.realism`:
mean porosity and specific surface, the distance of the mean S2 curves), and ``psd``, the
distance between the pore-size distributions of the two sets, is reported for every engine.
Engines whose weights or packages are missing are listed as skipped with the reason, and
so are metrics whose weights are missing (GMSD stands in for LPIPS offline, as in
``validate``). :func:`~napari_scigen.workflows.compare_report.write_compare_report`
writes the table, the figure and the Markdown/CSV/JSON.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import ModelNotAvailableError
from ..core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ..core.provenance import make_provenance, to_jsonable
from ..core.result import EngineResult
from ..core.validation import InvalidInputError, check_image, check_mask
from .validate import parse_names

#: Tasks whose engines ``compare`` can run, in the order they are compared.
COMPARE_TASKS = ("inpaint", "edit", "generate", "interpolate", "sample")
#: Scores of the table (LPIPS, FID/KID and CLIPScore need weights; the rest do not).
COMPARE_METRICS = (
    "ssim",
    "psnr",
    "lpips",
    "gmsd",
    "fid",
    "kid",
    "clipscore",
    "porosity",
    "s2",
    "surface",
    "psd",
)
#: Direction of each score, for the report.
HIGHER_IS_BETTER = {"ssim": True, "psnr": True, "clipscore": True}
#: Default edit instruction / concept of the edit engines.
DEFAULT_EDIT_PROMPT = "larger pores"
#: Fields naming a sample engine's trained generator.
GENERATOR_FIELDS = ("generator",)
#: Fields naming how many slices a sample engine draws.
COUNT_FIELDS = ("count",)


def compare_engines() -> tuple[str, ...]:
    """Every engine ``compare`` can run, as ``"task/name"``."""
    from ..core.params import fields_of
    from ..engines.registry import engines

    def comparable(engine) -> bool:  # sample engines must draw a number of slices, not walk
        names = {s.name for s in fields_of(engine.params_class)}
        return engine.task != "sample" or bool(names & set(COUNT_FIELDS))

    return tuple(
        f"{e.task}/{e.name}" for task in COMPARE_TASKS for e in engines(task) if comparable(e)
    )


def resolve_engines(names: str | Sequence[str]) -> tuple[str, ...]:
    """``"task/name"`` keys from ``"all"``, full keys, or bare names that are unique.

    Raises
    ------
    InvalidInputError
        Naming the valid choices, or the tasks an ambiguous bare name belongs to.
    """
    known = compare_engines()
    items = names.split(",") if isinstance(names, str) else list(names)
    keys: list[str] = []
    for item in (str(n).strip().lower() for n in items if str(n).strip()):
        if item == "all":
            keys.extend(known)
            continue
        if "/" not in item:
            matches = [key for key in known if key.split("/")[1] == item]
            if len(matches) > 1:
                raise InvalidInputError(
                    f"engine {item!r} is ambiguous: give one of {', '.join(matches)}"
                )
            item = matches[0] if matches else item
        keys.append(item)
    return parse_names(list(dict.fromkeys(keys)), known, "engines")


def choose_slices(depth: int, count: int, slices: Sequence[int] | None = None) -> list[int]:
    """The compared slices: given, or ``count`` evenly spaced interior slices."""
    if slices is not None:
        chosen = sorted({int(z) for z in slices})
        bad = [z for z in chosen if not 0 <= z < depth]
        if bad or not chosen:
            raise InvalidInputError(f"slices {bad or chosen} are not in 0..{depth - 1}")
        return chosen
    if depth < 3:
        raise InvalidInputError(f"compare needs a volume of at least 3 slices, got {depth}")
    count = max(2, min(int(count), depth - 2))
    return sorted({int(round(z)) for z in np.linspace(1, depth - 2, count)})


def default_mask(shape: tuple[int, ...], slices: Sequence[int], size: float) -> np.ndarray:
    """A centred square covering ``size`` of the shorter side on each chosen slice."""
    mask = np.zeros(shape, dtype=bool)
    side = max(8, int(round(min(shape[-2:]) * float(size))))
    top, left = (shape[-2] - side) // 2, (shape[-1] - side) // 2
    mask[list(slices), top : top + side, left : left + side] = True
    return mask


def _engine_params(key: str, given: Mapping[str, Any], settings: dict[str, Any]):
    """The params of ``key``: the user's, then the run's device, seed, prompts and offline flag."""
    from ..core.params import fields_of, make_params
    from ..engines.registry import get_engine

    task, name = key.split("/")
    cls = get_engine(task, name).params_class
    user = dict(given.get(key) or given.get(name) or {})
    declared = {spec.name: spec for spec in fields_of(cls)}
    fill = {
        "device": settings["device"],
        "seed": settings["seed"],
        "local_files_only": not settings["allow_downloads"],
    }
    values = {k: v for k, v in fill.items() if k in declared and k not in user}
    if "prompt" in declared and "prompt" not in user:
        if task == "edit" and not declared["prompt"].default:
            values["prompt"] = settings["edit_prompt"]  # the instruction / concept of an edit
        elif declared["prompt"].default:
            values["prompt"] = settings["prompt"]  # a generating engine's description of the data
    return make_params(cls, {**values, **user})


def _generator_field(params) -> str | None:
    return next((f for f in GENERATOR_FIELDS if hasattr(params, f)), None)


def _train_sampler(volume, name, params, settings, train_params, cancel, progress):
    """Train ``train/<name>`` on the volume (resuming in the work folder); returns its folder."""
    from .. import api
    from ..core.params import fields_of, make_params
    from ..engines.registry import get_engine

    run_dir = Path(settings["work_dir"]) / f"{name}-run"
    cls = get_engine("train", name).params_class
    declared = {spec.name for spec in fields_of(cls)}
    fill = {
        "train_steps": settings["train_steps"],
        "device": settings["device"],
        "seed": settings["seed"],
    }
    given = dict(train_params.get(name) or {})
    values = {k: v for k, v in fill.items() if k in declared and k not in given}
    checked = make_params(cls, {**values, **given})
    job = api.train_job(volume, out_dir=str(run_dir), method=name, params=checked, cancel=cancel)
    yield from relay_progress(job, progress)
    return run_dir


def _run_engine(key, volume, mask, chosen, params, settings, train_params, cancel, progress):
    """Outputs of one engine for the chosen slices: ``(n, Y', X')`` in the volume's dtype."""
    from .. import api
    from ..core.params import fields_of
    from ..engines.registry import get_engine

    task, name = key.split("/")
    if task == "sample":
        field = _generator_field(params)
        wanted = get_engine(task, name).needs_weights or name in train_params
        if field and getattr(params, field) is None and settings["train_steps"] > 0 and wanted:
            run_dir = yield from _train_sampler(
                volume, name, params, settings, train_params, cancel, progress
            )
            params = params.replace(**{field: str(run_dir)})
        declared = {spec.name for spec in fields_of(type(params))}
        count = next((f for f in COUNT_FIELDS if f in declared), None)
        overrides = {count: len(chosen)} if count else {}
        job = api.sample_job(method=name, params=params.replace(**overrides), cancel=cancel)
        result = yield from relay_progress(job, progress)
        return np.asarray(result.data)[: len(chosen)], params
    if task == "interpolate":
        observed = np.array(volume, copy=True)
        observed[chosen] = 0  # no engine may see the slices it rebuilds
        job = api.interpolate_job(
            observed, method=name, missing=chosen, params=params, cancel=cancel
        )
    elif task == "generate":
        job = api.generate_job(volume, method=name, params=params, slices=chosen, cancel=cancel)
    elif task == "inpaint":
        job = api.inpaint_job(
            volume, mask, method=name, params=params, slices=chosen, cancel=cancel
        )
    else:
        job = api.edit_job(volume, mask, method=name, params=params, slices=chosen, cancel=cancel)
    result = yield from relay_progress(job, progress)
    data = np.asarray(result.data)
    if task == "generate":
        return data[0], params  # variant 0 of (variant, slice, Y, X)
    if data.ndim == volume.ndim + 1:
        data = data[0]  # variant 0 of (variant, *volume shape)
    return data[chosen], params


def _matched(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop both stacks to their common slice size (for unpaired samples)."""
    height = min(real.shape[-2], generated.shape[-2])
    width = min(real.shape[-1], generated.shape[-1])

    def crop(stack):
        top, left = (stack.shape[-2] - height) // 2, (stack.shape[-1] - width) // 2
        return stack[..., top : top + height, left : left + width]

    return crop(real), crop(generated)


def _in_dtype(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``generated`` on the real data's dtype and scale (percentile windows matched)."""
    if generated.dtype == real.dtype:
        return generated
    from ..core.stack import percentile_window

    unit = percentile_window(generated, 0.5, 99.5).to_unit(generated)
    return percentile_window(real, 0.5, 99.5).from_unit(unit)


def _stats(values) -> dict[str, Any]:
    array = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    mean = float(array.mean()) if array.size else float("nan")
    std = float(array.std(ddof=1)) if array.size > 1 else (0.0 if array.size else float("nan"))
    return {"mean": mean, "std": std, "n": int(array.size), "per_slice": [float(v) for v in values]}


def _relative(reference: float, generated: float) -> float:
    return float((generated - reference) / reference) if reference else float("nan")


def _realism_rows(key, real, generated, threshold, metrics, unpaired) -> list[dict]:
    """Set-level morphology rows (:func:`~napari_scigen.metrics.realism.realism`).

    ``psd`` for every engine; porosity, surface and S2 too for unpaired samples.
    """
    from ..metrics.realism import realism

    scores = realism(real, generated, threshold)
    n = int(len(generated))
    counts = f"{len(real)} real vs {n} generated slices"
    values = {
        "psd": (
            scores["pore_size"]["distance"],
            f"pore-size distribution distance (1-Wasserstein, px; area-weighted d50 "
            f"{scores['pore_size']['real_d50']:.3g} real vs "
            f"{scores['pore_size']['generated_d50']:.3g} generated), {counts}",
        )
    }
    if unpaired:
        values["porosity"] = (
            scores["porosity"]["relative_error"],
            f"signed relative error of the mean pore fraction, {counts}",
        )
        values["surface"] = (
            scores["specific_surface"]["relative_error"],
            f"signed relative error of the mean pore specific surface, {counts}",
        )
        values["s2"] = (
            scores["s2"]["distance"],
            f"RMS difference of the mean pore S2(r), r <= {scores['s2']['r_max']} px, {counts}",
        )
    return [
        {
            "engine": key,
            "metric": metric,
            "mean": float(value),
            "std": float("nan"),
            "n": n,
            "per_slice": [],
            "note": note,
        }
        for metric, (value, note) in values.items()
        if metric in metrics
    ]


def _score(key, real, generated, metrics, context, cancel) -> list[dict]:
    """The table rows of one engine (mean ± std over slices; FID/KID over the set)."""
    from ..metrics.gradient import gmsd
    from ..metrics.morphology import specific_surface_area, two_point_correlation
    from ..metrics.pixel import psnr, ssim

    rows = []

    def add(metric, stats, note=""):
        rows.append({"engine": key, "metric": metric, **stats, "note": note})

    real_c, gen_c = _matched(real, generated)
    window = context["window"]
    if "ssim" in metrics:
        add("ssim", _stats(ssim(real_c, gen_c, data_range=window).values))
    if "psnr" in metrics:
        add("psnr", _stats(psnr(real_c, gen_c, data_range=window).values), "dB, per slice")
    if "gmsd" in metrics:
        add("gmsd", _stats(gmsd(real_c, gen_c, data_range=window).values))
    if "lpips" in metrics:
        from ..metrics.perceptual import lpips_distance

        check_cancelled(cancel)
        scores = lpips_distance(real_c, gen_c, net=context["lpips_net"], device=context["device"])
        add("lpips", _stats(scores.values))
    threshold = context["threshold"]
    real_pores, gen_pores = real_c <= threshold, gen_c <= threshold
    # samples are unpaired: their morphology is compared as a set (metrics.realism)
    unpaired = key.startswith("sample/")
    if unpaired or "psd" in metrics:
        rows += _realism_rows(key, real, generated, threshold, metrics, unpaired)
    if "porosity" in metrics and not unpaired:
        errors = [
            _relative(float(r.mean()), float(g.mean()))
            for r, g in zip(real_pores, gen_pores, strict=True)
        ]
        add("porosity", _stats(errors), "signed relative error of the pore fraction")
    if "surface" in metrics and not unpaired:
        errors = [
            _relative(specific_surface_area(r), specific_surface_area(g))
            for r, g in zip(real_pores, gen_pores, strict=True)
        ]
        add("surface", _stats(errors), "signed relative error of the pore specific surface")
    if "s2" in metrics and not unpaired:
        r_max = max(1, min(32, min(real_c.shape[-2:]) // 4))
        rmse = []
        for r, g in zip(real_pores, gen_pores, strict=True):
            curve_r = two_point_correlation(r, r_max)[1]
            curve_g = two_point_correlation(g, r_max)[1]
            rmse.append(float(np.sqrt(np.mean((curve_r - curve_g) ** 2))))
        add("s2", _stats(rmse), f"RMS difference of the pore S2(r), r <= {r_max} px")
    if {"fid", "kid"} & set(metrics):
        from ..metrics.distribution import distribution_metrics

        wanted = [m for m in ("fid", "kid") if m in metrics]
        result = distribution_metrics(
            real,
            generated,
            metrics=wanted,
            device=context["device"],
            window=window,
            kid_subset_size=min(len(real), len(generated)),
            cancel=cancel,
        )
        note = f"over the set of {len(real)} real and {len(generated)} generated slices"
        if "fid" in wanted:
            add(
                "fid",
                {"mean": result["fid"], "std": float("nan"), "n": len(generated), "per_slice": []},
                note,
            )
        if "kid" in wanted:
            add(
                "kid",
                {
                    "mean": result["kid_mean"],
                    "std": result["kid_std"],
                    "n": len(generated),
                    "per_slice": [],
                },
                note,
            )
    if "clipscore" in metrics:
        from ..metrics.clipscore import clip_score
        from ..metrics.weights import DEFAULT_CLIP_MODEL

        text = context["edit_prompt"] if key.startswith("edit/") else context["prompt"]
        result = clip_score(
            generated,
            text,
            model=context["clip_model"] or DEFAULT_CLIP_MODEL,
            window=window,
            device=context["device"],
            cancel=cancel,
        )
        add("clipscore", _stats(result.values), f"against {text!r}")
    return rows


def _unavailable_metrics(
    metrics, lpips_net: str, clip_model: str | None, allow_downloads: bool
) -> dict[str, str]:
    """Metrics whose weights are missing here, with the first line of the reason."""
    skipped: dict[str, str] = {}
    if "lpips" in metrics:
        from ..metrics.perceptual import backbone_file

        try:
            backbone_file(lpips_net)
        except ModelNotAvailableError as error:
            skipped["lpips"] = str(error).splitlines()[0] + " (GMSD stands in for it)"
    if {"fid", "kid"} & set(metrics):
        from ..metrics.distribution import fid_inception_file

        try:
            fid_inception_file()
        except ModelNotAvailableError as error:
            for name in ("fid", "kid"):
                if name in metrics:
                    skipped[name] = str(error).splitlines()[0]
    if "clipscore" in metrics:
        from ..engines.sd.hub import locate_model
        from ..metrics.weights import DEFAULT_CLIP_MODEL

        try:  # looked up without loading (and, offline, without any network request)
            locate_model(
                clip_model or DEFAULT_CLIP_MODEL,
                what="CLIP",
                index_file="config.json",
                local_files_only=not allow_downloads,
            )
        except ModelNotAvailableError as error:
            skipped["clipscore"] = str(error).splitlines()[0]
    return skipped


def run_compare(
    volume,
    *,
    engines: str | Sequence[str] = "all",
    n_slices: int = 4,
    slices: Sequence[int] | None = None,
    mask=None,
    mask_size: float = 0.35,
    prompt: str | None = None,
    edit_prompt: str = DEFAULT_EDIT_PROMPT,
    metrics: str | Sequence[str] = COMPARE_METRICS,
    engine_params: Mapping[str, Any] | None = None,
    train_params: Mapping[str, Any] | None = None,
    train_steps: int = 0,
    work_dir: str | Path | None = None,
    device: str = "auto",
    allow_downloads: bool = False,
    lpips_net: str = "alex",
    clip_model: str | None = None,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Run ``engines`` on slices of ``volume`` and score them (see the module notes).

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` volume, at least 3 slices.
    engines : str or sequence of str
        ``"all"`` or ``"task/name"`` keys (bare names when unique), e.g.
        ``"inpaint/biharmonic,edit/diffedit,sample/dcgan"``; see :func:`compare_engines`.
    n_slices : int
        How many evenly spaced interior slices to use (ignored with ``slices``).
    slices : sequence of int, optional
        The slices to use.
    mask : numpy.ndarray, optional
        Mask of the inpaint/edit engines (volume-shaped or one 2D mask); default
        :func:`default_mask` with ``mask_size``.
    prompt : str, optional
        Description of the data: prompt of the generate engines and CLIPScore text
        (default the SD engines' rock prompt).
    edit_prompt : str
        What the edit engines edit towards (their empty prompt fields get it) and their
        CLIPScore text.
    metrics : str or sequence of str
        From :data:`COMPARE_METRICS`.
    engine_params : mapping, optional
        ``{"task/name" or name: params dataclass or dict}``, e.g.
        ``{"edit/diffedit": {"steps": 20}}``; they override the run's settings.
    train_params : mapping, optional
        ``{name: dict}`` for the training of sample engines (``train_steps > 0``).
    train_steps : int
        Train each sample engine that has no generator of its own (DCGAN), and those
        named in ``train_params`` (e.g. StyleGAN instead of its embedded rock generator),
        on the volume for this many steps first (unless a generator is given).
    work_dir : path, optional
        Where those runs go (default a temporary folder, removed afterwards).
    device : str
        For every engine and metric that declares a device.
    allow_downloads : bool
        Let engines download missing weights (default: offline, missing = skipped).
    lpips_net, clip_model : str
        LPIPS backbone and CLIP model of the scores.
    seed : int
        Seed of every engine that declares one.
    cancel : CancelToken, optional

    Returns
    -------
    EngineResult
        ``data``: the real chosen slices; ``images``: ``"<task/name>"`` stacks of each
        engine's outputs; ``provenance["table"]``: rows ``{"engine", "metric", "mean",
        "std", "n", "per_slice", "note"}``; ``provenance["extra"]``: ``slices``, ``mask``
        fraction, ``skipped_engines``, ``skipped_metrics``, ``seconds``, ``engine_params``.
    """
    import tempfile

    from ..engines.sd.params import DEFAULT_ROCK_PROMPT
    from ..metrics.morphology import otsu_threshold
    from ..metrics.pixel import scoring_window

    array = check_image(volume, name="volume", ndim=(3,))
    keys = resolve_engines(engines)
    chosen_metrics = parse_names(metrics, COMPARE_METRICS, "metrics")
    chosen = choose_slices(array.shape[0], n_slices, slices)
    mask_bool = (
        default_mask(array.shape, chosen, mask_size)
        if mask is None
        else check_mask(mask, array.shape)
    )
    if mask_bool.ndim == 2:
        mask_bool = np.broadcast_to(mask_bool, array.shape)
    temporary = tempfile.TemporaryDirectory(prefix="scigen-compare-") if work_dir is None else None
    settings = {
        "device": device,
        "seed": int(seed),
        "allow_downloads": bool(allow_downloads),
        "prompt": prompt or DEFAULT_ROCK_PROMPT,
        "edit_prompt": edit_prompt,
        "train_steps": int(train_steps),
        "work_dir": str(work_dir) if work_dir is not None else temporary.name,
    }
    given = dict(engine_params or {})
    real = array[chosen].copy()
    scoring = scoring_window(array)  # the one default of every front-end (metrics, validate)
    context = {
        "window": scoring.data_range,
        "threshold": otsu_threshold(array),
        "device": device,
        "lpips_net": lpips_net,
        "clip_model": clip_model,
        "prompt": settings["prompt"],
        "edit_prompt": edit_prompt,
    }
    skipped_metrics = _unavailable_metrics(chosen_metrics, lpips_net, clip_model, allow_downloads)
    if len(chosen) < 2:
        for name in ("fid", "kid"):
            if name in chosen_metrics:
                skipped_metrics[name] = "needs at least 2 slices (a set of samples)"
    scored = tuple(m for m in chosen_metrics if m not in skipped_metrics)
    rows: list[dict] = []
    images: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    used_params: dict[str, Any] = {}
    span, total = 100, 100 * len(keys)
    try:
        for index, key in enumerate(keys):
            check_cancelled(cancel)
            base = index * span
            yield Progress(base, total, f"{key}: running on {len(chosen)} slice(s)")

            def progress(event, base=base, key=key):
                return Progress(base + int(80 * event.fraction), total, f"{key}: {event.message}")

            start = time.perf_counter()
            try:
                params = _engine_params(key, given, settings)
                generated, params = yield from _run_engine(
                    key,
                    array,
                    mask_bool,
                    chosen,
                    params,
                    settings,
                    dict(train_params or {}),
                    cancel,
                    progress,
                )
            except (ModelNotAvailableError, ImportError, InvalidInputError) as error:
                skipped[key] = (
                    " ".join(str(error).strip().splitlines()[0].split()) or type(error).__name__
                )
                continue
            seconds[key] = round(time.perf_counter() - start, 3)
            used_params[key] = to_jsonable(params.to_dict())
            generated = _in_dtype(generated, real)
            images[key] = generated
            yield Progress(base + 85, total, f"{key}: scoring")
            rows += _score(key, real, generated, scored, context, cancel)
            yield Progress(base + span, total, f"{key}: done")
    finally:
        if temporary is not None:
            temporary.cleanup()
    provenance = make_provenance(
        "compare",
        {
            "engines": list(keys),
            "metrics": list(chosen_metrics),
            "n_slices": len(chosen),
            "mask_size": mask_size if mask is None else None,
            "prompt": settings["prompt"],
            "edit_prompt": edit_prompt,
            "train_steps": settings["train_steps"],
            "device": device,
            "allow_downloads": allow_downloads,
            "seed": seed,
        },
        source={"shape": list(array.shape), "dtype": array.dtype.name},
        extra={
            "slices": chosen,
            "mask": "given" if mask is not None else f"centred square, {mask_size:g} of the side",
            "mask_fraction": float(mask_bool[chosen].mean()),
            "window": list(context["window"]),
            "scoring_window": scoring.as_dict(),
            "morphology_threshold": float(context["threshold"]),
            "skipped_engines": skipped,
            "skipped_metrics": skipped_metrics,
            "seconds": seconds,
            "engine_params": used_params,
        },
    )
    provenance["table"] = to_jsonable(rows)
    labels = {"mask": mask_bool[chosen].astype(np.uint8)}
    return EngineResult(data=real, provenance=provenance, images=images, labels=labels)
