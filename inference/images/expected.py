"""What kind of 2D image a model reads, so that the front door can refuse the others in one sentence.

A DICOM says what it is (its Modality); a PNG or JPEG does not, so it is accepted and the page
asks the reader what it shows where that matters. Built from a model's registry entry by the
caller (``pipelines.classify.expected_image``); this package does not know the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

MODALITY_NAMES = {
    "CR": "a computed radiograph",
    "DX": "a digital radiograph",
    "CT": "a CT image",
    "MR": "an MR image",
    "US": "an ultrasound image",
    "NM": "a nuclear medicine image",
    "PT": "a PET image",
    "MG": "a mammogram",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "SEG": "a segmentation object",
    "SR": "a structured report",
    "RTPLAN": "a radiotherapy plan",
}


@dataclass(frozen=True)
class ExpectedImage:
    modalities: frozenset[str]  # the DICOM Modality values the model reads
    what: str  # "a chest radiograph", for messages
    reader: str  # the model, for messages ("The chest X-ray model")
    elsewhere: str  # where other images go, one short sentence
    noun: str = "images"  # what it reads, in the plural ("radiographs")
    body_parts: frozenset[str] = frozenset()  # BodyPartExamined values that raise no note

    def refusal(self, filename: str, modality: str) -> str:
        found = MODALITY_NAMES.get(modality, f"a {modality} image")
        if modality in {"CR", "DX"}:
            found = "a radiograph"
        codes = " or ".join(sorted(self.modalities))
        return (
            f"{filename} is {found} (Modality {modality}), not {self.what}. {self.reader} reads {codes} "
            f"{self.noun} only; {self.elsewhere}"
        )


CHEST_RADIOGRAPH = ExpectedImage(
    modalities=frozenset({"CR", "DX"}),
    what="a chest radiograph",
    reader="The chest X-ray model",
    elsewhere="review CT and MR images on the MRI/CT page.",
    noun="radiographs",
    body_parts=frozenset({"CHEST", "THORAX", "LUNG"}),
)

# An image a model has already accepted, decoded again for display or the image store.
ANY_READABLE = ExpectedImage(
    modalities=frozenset({"CR", "DX", "MR", "CT"}),
    what="a radiograph, MR or CT image",
    reader="The viewer",
    elsewhere="other images are not shown here.",
)
