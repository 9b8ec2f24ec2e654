"""DCGAN baseline (Radford et al. 2016): the classical GAN of Sordo et al. (J. Imaging 2025).

Our own implementation for grayscale microCT slices, trained on the user's volume
with the shared training infrastructure (:mod:`napari_scigen.engines._training`: slice
crops and augmentation, safetensors + JSON checkpoints, ``weights_only`` loads, resume,
the step loop). Importing this package imports no
torch: ``params`` holds the declarations, ``networks`` / ``train`` / ``sample`` the rest.
The engines are registered as ``train/dcgan`` and ``sample/dcgan`` and reached through
:mod:`napari_scigen.api` (``api.train(volume, out_dir=..., method="dcgan")``,
``api.sample(method="dcgan", generator=RUN_DIR)``).
"""
