"""Slice-interpolation engines (missing slices and z upsampling) and their shared planning."""
