"""The review vocabulary shared end to end: the database stores these values, screens show them.

``str`` enums, so a value compares equal to the string stored in the database and serialises to it.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """A reviewer's judgement of one AI finding or structure."""

    AGREE = "agree"
    DISAGREE = "disagree"
    UNSURE = "unsure"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Band(str, Enum):
    """Where a calibrated score falls against a finding's low / high / critical thresholds."""

    NEGATIVE = "negative"
    INDETERMINATE = "indeterminate"
    POSITIVE = "positive"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Band.NEGATIVE: 0, Band.INDETERMINATE: 1, Band.POSITIVE: 2, Band.CRITICAL: 3}


class RunKind(str, Enum):
    """What produced a stored run: a classifier over one image, a segmentation network over a
    volume, or a mask a user uploaded from another tool."""

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"
    UPLOADED_MASK = "uploaded-mask"


class Task(str, Enum):
    """What a registered model does."""

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"


class Modality(str, Enum):
    """The imaging a registered model reads (DICOM modality codes where one exists)."""

    CHEST_XRAY = "cxr"
    MR = "MR"
    CT = "CT"


class StudyPhase(str, Enum):
    """A read in a reader study: the first with the AI hidden, the second with it shown (the reader
    may revise), or the reference an adjudicator (an admin) records for the case."""

    UNAIDED = "unaided"
    AIDED = "aided"
    REFERENCE = "reference"


class Presence(str, Enum):
    """A reader's own call on a finding in a reader study, made without reference to the AI."""

    PRESENT = "present"
    ABSENT = "absent"
    UNSURE = "unsure"


def ai_call(band: Band) -> Presence | None:
    """What a band says of a finding, in a reader's words: positive or critical is present,
    negative absent; indeterminate says nothing."""
    if band in (Band.POSITIVE, Band.CRITICAL):
        return Presence.PRESENT
    if band is Band.NEGATIVE:
        return Presence.ABSENT
    return None
