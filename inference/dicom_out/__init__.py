"""DICOM objects this app writes for PACS: segmentations as DICOM SEG (``seg``), built with highdicom
from a volume, its label map and what produced it. Every object carries the keyed patient hash,
never a patient's name, ID or birth date, and references the source series when the volume was
read from DICOM.

May import ``core`` and ``inference`` (volumes, label maps); the only package that imports
highdicom."""
