"""Distribution metrics over sets of slices: FID, KID and precision/recall/density/coverage.

The samples are the slices of each stack (``(N, Y, X)``): the two stacks need not
have the same number of slices or the same slice size. Every slice is mapped to
``[0, 1]`` with one shared window (by default the 0.5-99.5 percentiles of the
reference stack; pass ``window=(low, high)`` to fix it), and a feature extractor
turns the slices into vectors.

Feature extractor
-----------------
Any callable ``images -> features`` taking a float32 array ``(N, Y, X)`` with values
in ``[0, 1]`` and returning ``(N, D)`` features can be passed. The default,
:class:`InceptionFeatureExtractor`, is the FID Inception-v3 (the TensorFlow
``2015-12-05`` graph used by the original FID code) returning the 2048-d pool
features: slices are resized to 299x299 (bilinear, ``align_corners=False``),
replicated to three channels and scaled to ``[-1, 1]``, the input convention those
weights were trained with (not torchvision's ImageNet mean/std). The network is our
own torchvision-based build with the TensorFlow pooling of the FID graph (average
pools that ignore padding; max pool in the last block), so it loads either
``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity) or
``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid); see
:mod:`napari_scigen.metrics.weights` for where they are looked for. Values follow
the pytorch-fid conventions; they are not bit-identical to TensorFlow FID (which
resizes differently).

Small samples
-------------
FID is biased upwards for small sample sets (Binkowski et al. 2018, Chong & Forsyth
2020); with fewer than :data:`FID_RECOMMENDED_SAMPLES` slices a
:class:`SmallSampleWarning` is emitted. KID is unbiased and the better choice for
one microCT volume (hundreds of slices).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import MODEL_CACHE, ModelNotAvailableError
from ..core.stack import Window, percentile_window
from ..core.validation import InvalidInputError, check_image
from .weights import FID_INCEPTION_FILES, fid_inception_instructions, find_weight_file, search_dirs

#: Below this many samples FID is noticeably biased; a SmallSampleWarning is emitted.
FID_RECOMMENDED_SAMPLES = 2048

#: Distribution metrics computed by :func:`distribution_metrics`.
DISTRIBUTION_METRICS = ("fid", "kid", "prdc")

FeatureExtractor = Callable[[np.ndarray], np.ndarray]


class SmallSampleWarning(UserWarning):
    """A distribution metric was computed from fewer samples than it needs to be reliable."""


# ---------------------------------------------------------------------------------------
# Statistics on features
# ---------------------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and (unbiased, ``N - 1``) covariance matrix of ``(N, D)`` features."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise InvalidInputError(
            f"need at least 2 feature vectors of shape (N, D), got {array.shape}"
        )
    return array.mean(axis=0), np.cov(array, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians (the FID formula).

    ``d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``. The matrix
    square root uses :func:`scipy.linalg.sqrtm`; if it is not finite (near-singular
    product) ``eps`` is added to both diagonals, and a negligible imaginary part from
    round-off is dropped, as pytorch-fid does.

    Parameters
    ----------
    mu1, mu2 : numpy.ndarray
        Mean vectors ``(D,)``.
    sigma1, sigma2 : numpy.ndarray
        Covariance matrices ``(D, D)``.
    eps : float
        Diagonal offset used when the product is singular.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the square root has a significant imaginary component.
    """
    from scipy import linalg

    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, dtype=np.float64)),
        np.atleast_1d(np.asarray(mu2, dtype=np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if (
        mu1.shape != mu2.shape
        or sigma1.shape != sigma2.shape
        or sigma1.shape != (mu1.size, mu1.size)
    ):
        raise InvalidInputError(
            f"inconsistent shapes: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = float(np.max(np.abs(covmean.imag)))
            raise ValueError(f"matrix square root has an imaginary component of {largest:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)``."""
    mu1, sigma1 = feature_statistics(features_a)
    mu2, sigma2 = feature_statistics(features_b)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
):
    """``(gamma <x, y> + coef0) ** degree`` with ``gamma = 1 / D`` by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018).

    The unbiased estimate of the squared MMD with the polynomial kernel
    ``(<x, y> / D + 1) ** 3``, averaged over random subsets drawn without replacement.

    Parameters
    ----------
    features_a, features_b : numpy.ndarray
        ``(N, D)`` and ``(M, D)`` features.
    subsets : int
        Number of random subsets.
    subset_size : int
        Samples per subset (reduced to ``min(N, M)`` when larger).
    degree, gamma, coef0 : int, float, float
        Polynomial kernel parameters (``gamma=None`` means ``1 / D``).
    seed : int
        Seed of the subset draws.

    Returns
    -------
    tuple of float
        ``(mean, std)`` over subsets (population standard deviation).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidInputError(
            f"feature sets must be (N, D) with the same D, got {a.shape} and {b.shape}"
        )
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise InvalidInputError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for index in range(subsets):
        x = a[rng.choice(a.shape[0], size, replace=False)]
        y = b[rng.choice(b.shape[0], size, replace=False)]
        k_xx = polynomial_kernel(x, x, degree=degree, gamma=gamma, coef0=coef0)
        k_yy = polynomial_kernel(y, y, degree=degree, gamma=gamma, coef0=coef0)
        k_xy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        values[index] = within - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(x, y, metric="euclidean")


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each sample to its k-th nearest other sample."""
    distances = _pairwise_distances(features, features)
    # column 0 of the sorted row is the sample itself (distance 0)
    return np.partition(distances, k, axis=1)[:, k]


def precision_recall_density_coverage(
    real_features: np.ndarray, fake_features: np.ndarray, *, nearest_k: int = 5
) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al., ICML 2020).

    Each sample's neighbourhood is the ball reaching its ``nearest_k``-th nearest
    neighbour in its own set (the sample itself not counted).

    * precision: fraction of fake samples inside at least one real ball;
    * recall: fraction of real samples inside at least one fake ball;
    * density: mean number of real balls containing a fake sample, divided by ``k``;
    * coverage: fraction of real balls containing at least one fake sample.

    "Inside" means a distance strictly smaller than the radius.

    Parameters
    ----------
    real_features, fake_features : numpy.ndarray
        ``(N, D)`` and ``(M, D)`` features.
    nearest_k : int
        Neighbourhood size ``k`` (each set needs more than ``k`` samples).

    Returns
    -------
    dict
        ``{"precision", "recall", "density", "coverage"}`` as floats.
    """
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    if min(real.shape[0], fake.shape[0]) <= nearest_k:
        raise InvalidInputError(
            f"PRDC with nearest_k={nearest_k} needs more than {nearest_k} samples per set, "
            f"got {real.shape[0]} and {fake.shape[0]}"
        )
    real_radii = _kth_neighbour_radii(real, nearest_k)
    fake_radii = _kth_neighbour_radii(fake, nearest_k)
    real_fake = _pairwise_distances(real, fake)  # (N, M)
    inside_real = real_fake < real_radii[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((real_fake < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / nearest_k),
        "coverage": float((real_fake.min(axis=1) < real_radii).mean()),
    }


# ---------------------------------------------------------------------------------------
# The FID Inception-v3
# ---------------------------------------------------------------------------------------


def _fid_inception_blocks():
    """Inception blocks with the pooling of the TensorFlow FID graph.

    TensorFlow's average pooling ignores the zero padding (``count_include_pad=False``)
    and the last ``Mixed_7c`` block max-pools its pool branch. Parameters are those of
    torchvision's blocks, so torchvision-named state dicts load unchanged.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.models import inception as tv

    def average_pool(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    def max_pool(x):
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)

    class FIDInceptionA(tv.InceptionA):
        def _forward(self, x):
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(average_pool(x))]

    class FIDInceptionC(tv.InceptionC):
        def _forward(self, x):
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            branch7x7dbl = x
            for layer in (
                self.branch7x7dbl_1,
                self.branch7x7dbl_2,
                self.branch7x7dbl_3,
                self.branch7x7dbl_4,
                self.branch7x7dbl_5,
            ):
                branch7x7dbl = layer(branch7x7dbl)
            return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(average_pool(x))]

    class FIDInceptionE(tv.InceptionE):
        pool = staticmethod(average_pool)

        def _forward(self, x):
            branch3x3 = self.branch3x3_1(x)
            branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
            branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            branch3x3dbl = torch.cat(
                [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1
            )
            return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))]

    class FIDInceptionEMaxPool(FIDInceptionE):
        pool = staticmethod(max_pool)

    return tv, FIDInceptionA, FIDInceptionC, FIDInceptionE, FIDInceptionEMaxPool


def build_fid_inception():
    """The FID Inception-v3 network with uninitialised (random) parameters.

    Returns
    -------
    torch.nn.Module
        torchvision ``Inception3`` with 1008 classes, no auxiliary head, and the FID
        pooling blocks; load a weight file with :func:`load_fid_inception_weights`.
    """
    tv, block_a, block_c, block_e, block_e_max = _fid_inception_blocks()
    model = tv.Inception3(
        num_classes=1008,
        aux_logits=False,
        transform_input=False,
        init_weights=False,
        inception_blocks=[
            tv.BasicConv2d,
            block_a,
            tv.InceptionB,
            block_c,
            tv.InceptionD,
            block_e,
            tv.InceptionAux,
        ],
    )
    model.Mixed_7c = block_e_max(2048)
    return model.eval().requires_grad_(False)


def fid_inception_file() -> Path:
    """The FID Inception weight file on this machine.

    Raises
    ------
    ModelNotAvailableError
        Naming the accepted file names and where to place them.
    """
    found = find_weight_file(*FID_INCEPTION_FILES)
    if found is None:
        looked = ", ".join(str(d) for d in search_dirs())
        raise ModelNotAvailableError(
            f"FID/KID/PRDC need the FID Inception-v3 weights ({' or '.join(FID_INCEPTION_FILES)}), "
            f"which are not on this machine (looked in: {looked}). napari-scigen never downloads "
            f"them itself.\n{fid_inception_instructions()}"
        )
    return found


def load_fid_inception_weights(model, path: str | Path) -> None:
    """Load an FID Inception weight file into :func:`build_fid_inception`'s model.

    Raises
    ------
    ModelNotAvailableError
        If the file does not hold the FID Inception parameters.
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ModelNotAvailableError(f"{path} is not a state dict of the FID Inception-v3")
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise ModelNotAvailableError(
            f"{path} is not the FID Inception-v3 weight file: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong_shape[:3]}; "
            f"use one of {', '.join(FID_INCEPTION_FILES)}"
        )
    model.load_state_dict(state, strict=False)


class InceptionFeatureExtractor:
    """2048-d pool features of the FID Inception-v3 (callable ``images -> features``).

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    batch_size : int
        Images per forward pass.
    weights : str or Path, optional
        Weight file; default: looked up by :func:`fid_inception_file`.
    random_weights : bool
        Use uninitialised weights (benchmarks and tests only: not FID).
    """

    def __init__(
        self,
        *,
        device: str = "auto",
        batch_size: int = 32,
        weights: str | Path | None = None,
        random_weights: bool = False,
    ) -> None:
        from ..core.device import resolve_device

        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        if random_weights:
            self.weights = None
        else:
            self.weights = Path(weights) if weights is not None else fid_inception_file()
            if not self.weights.is_file():
                raise ModelNotAvailableError(
                    f"FID Inception weight file {self.weights} does not exist"
                )

    @property
    def name(self) -> str:
        """Description recorded with the results."""
        return f"inception-v3-fid ({self.weights.name if self.weights else 'random weights'})"

    def _model(self):
        def load():
            import torch

            model = build_fid_inception()
            if self.weights is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    for module in model.modules():
                        if isinstance(module, torch.nn.Conv2d):
                            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if self.weights is not None:
                load_fid_inception_weights(model, self.weights)
            return model.to(self.device)

        key = ("fid-inception", str(self.weights), self.device)
        return MODEL_CACHE.get(key, load)

    def features(self, batch):
        """Pool features of a ``(B, 1, H, W)`` tensor in ``[0, 1]`` (torch in, torch out)."""
        import torch
        import torch.nn.functional as F

        model = self._model()
        x = F.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
        x = (2.0 * x - 1.0).expand(-1, 3, -1, -1)
        for layer in (
            model.Conv2d_1a_3x3,
            model.Conv2d_2a_3x3,
            model.Conv2d_2b_3x3,
            model.maxpool1,
            model.Conv2d_3b_1x1,
            model.Conv2d_4a_3x3,
            model.maxpool2,
            model.Mixed_5b,
            model.Mixed_5c,
            model.Mixed_5d,
            model.Mixed_6a,
            model.Mixed_6b,
            model.Mixed_6c,
            model.Mixed_6d,
            model.Mixed_6e,
            model.Mixed_7a,
            model.Mixed_7b,
            model.Mixed_7c,
            model.avgpool,
        ):
            x = layer(x)
        return torch.flatten(x, 1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features ``(N, 2048)`` of float images ``(N, H, W)`` in ``[0, 1]``."""
        import torch

        images = np.asarray(images, dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], self.batch_size):
                batch = torch.from_numpy(images[start : start + self.batch_size])[:, None].to(
                    self.device
                )
                out.append(self.features(batch).float().cpu().numpy())
        return np.concatenate(out, axis=0).astype(np.float64)


# ---------------------------------------------------------------------------------------
# Slices -> metrics
# ---------------------------------------------------------------------------------------


def _as_stack(data, name: str) -> np.ndarray:
    array = check_image(data, name=name, ndim=(3,))
    if array.shape[0] < 2:
        raise InvalidInputError(
            f"{name} must hold at least 2 slices (samples), got {array.shape[0]}"
        )
    return array


def shared_window(reference: np.ndarray, window=None) -> Window:
    """The window both stacks are mapped to ``[0, 1]`` with (default: reference 0.5-99.5 %)."""
    if window is None:
        return percentile_window(reference)
    if isinstance(window, Window):
        return window
    low, high = (float(v) for v in window)
    if high <= low:
        raise InvalidInputError(f"window (low, high) must satisfy low < high, got {(low, high)}")
    return Window(low, high, np.asarray(reference).dtype.name, "given")


def extract_features(
    stack: np.ndarray,
    window: Window,
    feature_extractor: FeatureExtractor,
    *,
    chunk: int = 64,
    cancel=None,
) -> np.ndarray:
    """Features of every slice of ``stack`` (windowed to ``[0, 1]`` chunk by chunk)."""
    from ..core.progress import check_cancelled

    parts = []
    for start in range(0, stack.shape[0], chunk):
        check_cancelled(cancel)
        parts.append(np.asarray(feature_extractor(window.to_unit(stack[start : start + chunk]))))
    features = np.concatenate(parts, axis=0)
    if features.ndim != 2 or features.shape[0] != stack.shape[0]:
        raise InvalidInputError(
            f"the feature extractor returned shape {features.shape} for {stack.shape[0]} images; expected (N, D)"
        )
    return features


def distribution_metrics(
    reference,
    generated,
    *,
    metrics: Sequence[str] = DISTRIBUTION_METRICS,
    feature_extractor: FeatureExtractor | None = None,
    window=None,
    device: str = "auto",
    batch_size: int = 32,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    nearest_k: int = 5,
    seed: int = 0,
    cancel=None,
) -> dict[str, Any]:
    """FID, KID and PRDC between the slices of two stacks.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        Stacks ``(N, Y, X)`` and ``(M, Y', X')`` of the same dtype; each slice is one
        sample.
    metrics : sequence of {"fid", "kid", "prdc"}
        What to compute.
    feature_extractor : callable, optional
        ``images (N, H, W) float32 in [0, 1] -> features (N, D)``; default the FID
        Inception-v3 (:class:`InceptionFeatureExtractor`).
    window : Window, (low, high) or None
        Shared intensity window; default the reference's 0.5-99.5 percentiles.
    device, batch_size : str, int
        For the default extractor.
    kid_subsets, kid_subset_size : int
        KID subset sampling (see :func:`kid`).
    nearest_k : int
        Neighbourhood size for PRDC.
    seed : int
        Seed for KID subsets.
    cancel : CancelToken, optional
        Checked between chunks.

    Returns
    -------
    dict
        Requested values (``fid``, ``kid_mean``, ``kid_std``, ``precision``,
        ``recall``, ``density``, ``coverage``) plus ``n_reference``,
        ``n_generated``, ``feature_extractor``, ``feature_dim``, ``window`` and
        ``warnings`` (messages also emitted as :class:`SmallSampleWarning`).

    Raises
    ------
    ModelNotAvailableError
        If the default extractor's weight file is missing.
    """
    unknown = [m for m in metrics if m not in DISTRIBUTION_METRICS]
    if unknown:
        raise InvalidInputError(
            f"unknown distribution metric(s) {unknown}; choose from {DISTRIBUTION_METRICS}"
        )
    ref = _as_stack(reference, "reference")
    gen = _as_stack(generated, "generated")
    if ref.dtype != gen.dtype:
        raise InvalidInputError(
            f"reference dtype {ref.dtype} and generated dtype {gen.dtype} differ; convert the generated "
            "slices to the reference's dtype and scale so one window fits both"
        )
    chosen_window = shared_window(ref, window)
    extractor = feature_extractor or InceptionFeatureExtractor(device=device, batch_size=batch_size)
    name = getattr(extractor, "name", getattr(extractor, "__name__", type(extractor).__name__))
    features_ref = extract_features(ref, chosen_window, extractor, cancel=cancel)
    features_gen = extract_features(gen, chosen_window, extractor, cancel=cancel)
    result: dict[str, Any] = {
        "n_reference": int(ref.shape[0]),
        "n_generated": int(gen.shape[0]),
        "feature_extractor": str(name),
        "feature_dim": int(features_ref.shape[1]),
        "window": chosen_window.as_dict(),
        "warnings": [],
    }
    smallest = min(ref.shape[0], gen.shape[0])
    if "fid" in metrics:
        if smallest < FID_RECOMMENDED_SAMPLES:
            message = (
                f"FID from {smallest} samples (< {FID_RECOMMENDED_SAMPLES}) is biased upwards and "
                "not comparable across sample sizes; prefer KID for single volumes"
            )
            warnings.warn(message, SmallSampleWarning, stacklevel=2)
            result["warnings"].append(message)
        result["fid"] = fid_from_features(features_ref, features_gen)
    if "kid" in metrics:
        if smallest < kid_subset_size:
            result["kid_subset_size"] = smallest
        mean, std = kid(
            features_ref, features_gen, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
        )
        result["kid_mean"], result["kid_std"] = mean, std
    if "prdc" in metrics:
        result.update(
            precision_recall_density_coverage(features_ref, features_gen, nearest_k=nearest_k)
        )
    return result
