"""Learned, volume-adapted engines: networks trained on the user's own volume.

Nothing here needs outside data. A compact residual U-Net (:mod:`.networks`) is trained
on the volume it must fill, at the geometry it must fill:

* slice interpolation (:mod:`.interpolate`): pairs from kept slices with extra kept
  slices blanked (exact supervision when the gaps allow it, e.g. every 4th slice
  missing) and from kept xy slices with rows dropped at the z spacing (valid for
  isotropic voxels; see :mod:`.sampling`), applied to the xz and yz planes and fused;
* inpainting (:mod:`.inpaint`): random masks shaped like the user's on unmasked voxels,
  with the neighbouring slices as context.

Before filling, kept data held out from training scores the network against the
classical engines (:mod:`.selfcheck`), so a learned result is never silently worse than
linear interpolation (or biharmonic inpainting). Parameters are declared in
:mod:`.params` (no torch import); every module that needs torch imports it lazily.
"""
