"""2D radiographs: decoding (DICOM, PNG, JPEG), preprocessing for the classifier, score bands.
May import ``core`` and ``inference`` outside ``inference.masks``."""
