"""Inpainting engines: fill masked pixels, keep every other pixel bit-identical."""
