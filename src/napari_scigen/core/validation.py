"""Input checks that fail early with specific messages (and never modify data).

Messages are phrased for every front-end: where one suggests an option, it spells it
as the keyword argument of :mod:`napari_scigen.api` (``overwrite=True``, ``series=N``,
``precision='bfloat16'``), never as a command-line flag, and the error lists the names
it spells in its ``options``. A script sees the message as it is; each front-end
respells those options its own way with :func:`spell_options`: the command line as
its flags (``--overwrite``, ``--series N``, ``--precision bfloat16``), the docks as
their field labels (``'overwrite' ticked``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


def _restore(cls: type, args: tuple, state: dict) -> BaseException:
    """Unpickle an error without calling its ``__init__`` (which may take other arguments)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class OptionsNamed:
    """Mixin of the errors whose message names options as keyword arguments.

    Parameters
    ----------
    *args
        The message (as for any exception).
    options : iterable of str
        The names of the options the message spells ``name=value`` (see the module
        notes); front-ends respell exactly those.

    Attributes
    ----------
    options : tuple of str
    """

    def __init__(self, *args, options: Iterable[str] = ()):
        super().__init__(*args)
        self.options = tuple(options)

    def __reduce__(self):
        # keeps ``options`` (and a subclass's own attributes) across processes (Dask workers)
        return _restore, (type(self), self.args, dict(self.__dict__))


class InvalidInputError(OptionsNamed, ValueError):
    """Input data cannot be processed; the message says why and what to do.

    An option the message suggests is spelled as its keyword argument and named in
    ``options`` (``InvalidInputError("... run again with overwrite=True ...",
    options=["overwrite"])``), so that each front-end shows it its own way.
    """


#: The value of an option as a message spells it: ``True``, ``2``, ``'bfloat16'`` or a
#: placeholder in capitals (``N``, ``RUN_DIR``).
_OPTION_VALUE = r"'[^']*'|\"[^\"]*\"|[\w.:+-]*\w"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or while handling (a front-end that
    rewraps a core error with its message, ``raise CliError(str(error)) from None``)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def option_names(error: BaseException) -> tuple[str, ...]:
    """The options ``error``'s message names: the ``options`` along its chain."""
    names: list[str] = []
    for link in _chain(error):
        names += [n for n in getattr(link, "options", None) or () if n not in names]
    return tuple(names)


def subject_field(error: BaseException) -> str | None:
    """The parameter a message is about (a ``ParameterError``'s ``field``, along the
    chain), which it names first; ``None`` for other errors."""
    message = str(error).strip()
    for link in _chain(error):
        field = getattr(link, "field", None)
        if isinstance(field, str) and field and message.startswith(field + " "):
            return field
    return None


def is_placeholder(value: str) -> bool:
    """Whether an option's value in a message stands for any value (``N``, ``RUN_DIR``)."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_-]*", value)) and value not in ("True", "False")


def spell_options(text: str, options: Iterable[str], spell: Callable[[str, str], str]) -> str:
    """Respell the options named in ``text`` for one front-end.

    Parameters
    ----------
    text : str
        A message spelling options as keyword arguments (``name=value``).
    options : iterable of str
        The option names to respell (an error's ``options``).
    spell : callable
        ``spell(name, value)`` returns the front-end's spelling; ``value`` is the text
        after ``=`` without quotes: ``"True"``, ``"False"``, ``"2"``, ``"bfloat16"`` or
        a placeholder (``"N"``).

    Returns
    -------
    str

    Examples
    --------
    >>> spell_options(
    ...     "out.zarr exists; run again with overwrite=True to replace it",
    ...     ["overwrite"],
    ...     lambda name, value: "--" + name,
    ... )
    'out.zarr exists; run again with --overwrite to replace it'
    """
    for name in options:
        pattern = rf"(?<![\w.]){re.escape(name)}=({_OPTION_VALUE})"
        text = re.sub(pattern, lambda m, name=name: spell(name, m.group(1).strip("'\"")), text)
    return text


def _count_nonfinite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def _nonfinite_error(name: str, bad: int) -> InvalidInputError:
    return InvalidInputError(
        f"{name} contains {bad} NaN/infinite value(s); fill or mask them before running an engine"
    )


def finite_range(
    data, *, name: str = "volume", refuse_nonfinite: bool = True
) -> tuple[float, float]:
    """The lowest and highest finite values of ``data`` (e.g. one slab of a volume read in parts).

    Where a job reads a volume in parts (``batch``), this is its pass over the data: it
    refuses NaN/infinite values with the message of :func:`check_image`, before anything
    is computed, so that a value in a slice the engine replaces anyway (a missing slice)
    is refused as the single-process command refuses it.

    Parameters
    ----------
    data : array-like
        The values.
    name : str
        How to call the data in the message (e.g. ``"volume (slices 0-15)"``).
    refuse_nonfinite : bool
        ``False`` ignores NaN/infinite values instead (inpainting, where masked pixels
        may hold them and are replaced; the engine checks the others).

    Returns
    -------
    tuple of float
        ``(low, high)``; ``(inf, -inf)`` when no value is finite.

    Raises
    ------
    InvalidInputError
        For NaN/infinite values when ``refuse_nonfinite``.
    """
    array = np.asarray(data)
    if not np.issubdtype(array.dtype, np.floating):
        return float(array.min()), float(array.max())
    finite = np.isfinite(array)
    if refuse_nonfinite and not finite.all():
        raise _nonfinite_error(name, int(array.size - np.count_nonzero(finite)))
    low = float(np.min(array, where=finite, initial=np.inf))
    high = float(np.max(array, where=finite, initial=-np.inf))
    return low, high


def check_image(
    data, *, name: str = "image", ndim: tuple[int, ...] = (2, 3), finite: bool = True
) -> np.ndarray:
    """Validate a grayscale slice or volume and return it as a NumPy array view.

    Parameters
    ----------
    data : array-like
        A 2D slice (Y, X) or 3D volume (Z, Y, X).
    name : str
        How to call the data in error messages (e.g. the layer name).
    ndim : tuple of int
        Accepted numbers of dimensions.
    finite : bool
        Refuse NaN/infinite values (default). ``False`` leaves that check to the
        caller, e.g. :func:`check_finite_outside` for inpainting, where masked
        pixels are replaced anyway.

    Returns
    -------
    numpy.ndarray
        ``data`` as an array (no copy when it already is one).

    Raises
    ------
    InvalidInputError
        For RGB/RGBA data, unsupported dimensions or dtypes, empty arrays,
        and floating-point data containing NaN or infinity.
    """
    array = np.asarray(data)
    if array.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {array.shape})")
    if array.ndim >= 3 and array.shape[-1] in (3, 4) and array.shape[-2] > 4:
        raise InvalidInputError(
            f"{name} looks like RGB/RGBA (shape {array.shape}, last axis {array.shape[-1]}); "
            "microCT engines need single-channel grayscale data: convert it first, "
            "e.g. skimage.color.rgb2gray, or pick one channel"
        )
    if array.ndim not in ndim:
        raise InvalidInputError(
            f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {array.shape}"
        )
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(
            f"{name} has unsupported dtype {array.dtype}; use uint8, uint16, int16 or float32"
        )
    if finite:
        bad = _count_nonfinite(array)
        if bad:
            raise _nonfinite_error(name, bad)
    return array


def check_finite_outside(image: np.ndarray, allowed: np.ndarray, *, name: str = "image") -> int:
    """Refuse NaN/infinite pixels of ``image`` except where ``allowed`` is set.

    Parameters
    ----------
    image : numpy.ndarray
        The image, as returned by :func:`check_image` with ``finite=False``.
    allowed : numpy.ndarray
        Boolean array of ``image``'s shape: pixels that will be replaced (the mask of
        an inpainting run), where non-finite values do no harm.

    Returns
    -------
    int
        How many non-finite pixels there are (all inside ``allowed``).

    Raises
    ------
    InvalidInputError
        Counting the non-finite pixels outside ``allowed``.
    """
    total = _count_nonfinite(image)
    if not total:
        return 0
    bad = int(np.count_nonzero(~np.isfinite(image) & ~np.asarray(allowed, dtype=bool)))
    if bad:
        raise InvalidInputError(
            f"{name} contains {bad} NaN/infinite value(s) outside the mask; fill them or add "
            "them to the mask"
        )
    return total


def check_mask(
    mask, image_shape: tuple[int, ...], *, name: str = "mask", allow_empty: bool = False
) -> np.ndarray:
    """Validate a mask against an image and return it as a boolean array.

    Parameters
    ----------
    mask : array-like
        Labels or boolean mask of any integer, bool or float dtype; any non-zero
        value counts as masked. NaN/infinite values are refused (they are neither
        zero nor a label).
    image_shape : tuple of int
        Shape of the image the mask belongs to. A 2D mask is accepted for a 3D
        image only if it matches one slice; it is then broadcast to every slice.
    name : str
        How to call the mask in error messages.
    allow_empty : bool
        Whether an all-zero mask is acceptable.

    Returns
    -------
    numpy.ndarray
        Boolean mask with ``image_shape``.

    Raises
    ------
    InvalidInputError
        On shape mismatch, a non-numeric dtype, NaN/infinite values or (unless
        ``allow_empty``) an empty mask.
    """
    array = np.asarray(mask)
    if array.dtype != bool and not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(
            f"{name} has dtype {array.dtype}; a mask must be bool, integer or float "
            "(non-zero = masked)"
        )
    bad = _count_nonfinite(array)
    if bad:
        raise InvalidInputError(
            f"{name} contains {bad} NaN/infinite value(s); a mask must be 0 (keep) or "
            "non-zero (process) everywhere"
        )
    if array.shape != tuple(image_shape):
        if array.ndim == 2 and len(image_shape) == 3 and array.shape == tuple(image_shape[1:]):
            array = np.broadcast_to(array, image_shape)
        else:
            raise InvalidInputError(
                f"{name} shape {array.shape} does not match the image shape {tuple(image_shape)}; "
                "create the mask from the image (Mask painting widget) so both share one grid"
            )
    boolean = array != 0 if array.dtype != bool else array
    if not allow_empty and not boolean.any():
        raise InvalidInputError(
            f"{name} is empty: paint the region to process (non-zero labels) first"
        )
    return boolean
