"""The Stable Diffusion engines (DiffEdit, ControlNet) and the machinery they share.

Modules, one job each:

- :mod:`.params`: the parameter declarations (shared base class and both engines');
- :mod:`.hub`: where models come from, offline errors, loading, the model cache;
- :mod:`.canvas`: slices and seeds, intensity window, padding, crops around the mask,
  latent masks, compositing;
- :mod:`.numerics`: grayscale/RGB conversion, batch-invariant numerics, decoding;
- :mod:`.relay`: progress and cancellation around a diffusers call (worker thread);
- :mod:`.control`: ControlNet control images (Canny edges, layers, inpaint condition);
- :mod:`.diffedit`, :mod:`.controlnet` (+ :mod:`.controlnet_pipeline`): the engines.

Nothing here imports torch or diffusers at import time; front-ends reach the engines
through :mod:`napari_scigen.api` (registered in :mod:`napari_scigen.engines.registry`).
"""
