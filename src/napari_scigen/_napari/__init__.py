"""napari glue: reader, writer, sample data and layer tuples."""
