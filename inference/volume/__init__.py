"""MRI and CT volumes: ingest (NIfTI, DICOM series, archives), segmentation runs, measurements
per structure, slicing and windowing for display. May import ``core`` and ``inference``."""
