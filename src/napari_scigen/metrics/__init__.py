"""Image-quality and scientific-fidelity metrics (Qt-free)."""
