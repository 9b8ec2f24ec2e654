"""Deprecated: moved to :mod:`napari_scigen.engines._training.augment` (goes in the next release).

``from napari_scigen.engines.stylegan.augment import diff_augment`` still works, with a
``DeprecationWarning``.
"""

from __future__ import annotations

from .._training import moved_from

__getattr__ = moved_from(__name__, augment="DIFF_AUGMENT_POLICY diff_augment random_dihedral")
