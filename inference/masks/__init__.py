"""Label maps: loading (NIfTI, DICOM SEG), legends and writing. May import ``core`` and
``inference`` outside ``inference.images``."""
