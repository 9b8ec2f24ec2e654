"""Qt-free core: I/O, validation, progress/cancel, provenance, device selection."""
