"""What an image without a header is, asked before a model scores it (a chest radiograph for the
chest X-ray model, a brain MRI slice for the brain MRI classifiers: ``ImageQuestion``).

A DICOM radiograph says what it is (its modality; CT, MR and other modalities are refused by the
ingest front door). A PNG or JPEG says nothing: a brain MRI slice saved as a JPEG was scored as a
chest radiograph (12 critical findings) and became the first case of "next unreviewed". So a
PNG or JPEG is scored only once the reader confirms it is a frontal chest radiograph; a refusal
stores nothing and keeps the image out of the worklist. The confirmation is stored with the run
(its audit event), with who gave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from ui.session import radiograph_answer_key, radiograph_button_key
from ui.text import md_escape
from ui.widgets.cam_viewer import reading_columns, whole_image

CONFIRMED_AS = "a frontal chest radiograph"
YES, NO = "radiograph", "declined"
YES_LABEL = "Yes: a frontal chest radiograph (PA or AP). Analyse it"
NO_LABEL = "No: something else"
PREVIEW_SIDE = 420  # pixels: enough to tell a chest from a head, light to send


@dataclass(frozen=True)
class ImageQuestion:
    kind: str  # part of the answer's session key ("" for the chest radiograph)
    confirmed_as: str  # stored with the run
    yes_label: str
    model_reads: str  # "The model reads frontal chest radiographs only"
    elsewhere: str  # where other images go, after a no
    one: str  # one such image, for "check that this is ..." ("a frontal chest radiograph")


CHEST_RADIOGRAPH = ImageQuestion(
    kind="",
    confirmed_as=CONFIRMED_AS,
    yes_label=YES_LABEL,
    model_reads="The model reads frontal chest radiographs only",
    one="a frontal chest radiograph",
    elsewhere="For a brain MRI or a CT slice use **Review an MRI or CT**.",
)
BRAIN_MRI_SLICE = ImageQuestion(
    kind="brain-mri",
    confirmed_as="a brain MRI slice",
    yes_label="Yes: a brain MRI slice. Classify it",
    model_reads="The brain MRI classifiers read 2D brain MRI slices only",
    one="a 2D brain MRI slice",
    elsewhere="For a chest radiograph use **Review a chest X-ray**.",
)


def _answer(key: str, value: str) -> None:
    st.session_state[key] = value


def confirmed_as(
    input_sha256: str, filename: str, data: bytes, question: ImageQuestion = CHEST_RADIOGRAPH, head: Any = st
) -> str | None:
    """What the reader confirmed the upload is (``question.confirmed_as``), "" for a DICOM (its
    header says), or None while the model must not run: the question, or the refusal, is on the
    page. A refusal or an unreadable file is said in ``head``; the question is drawn below it in
    the reading layout (``reading_columns``): the whole image in the viewer where its heatmap will
    be, the question beside it."""
    from inference.images.ingest import sniff_format

    fmt = sniff_format(data)
    if fmt not in ("png", "jpeg"):
        return ""  # DICOM (checked by its header), or not an image (the front door says so)
    key = radiograph_answer_key(input_sha256, question.kind)
    answer = st.session_state.get(key)
    if answer == YES:
        return question.confirmed_as
    if answer == NO:
        head.info(
            f"{filename} was not analysed, and nothing was stored: {question.model_reads[0].lower()}"
            f"{question.model_reads[1:]}, and scores anything else as if it were one. {question.elsewhere}"
        )
        head.button(f"It is {question.confirmed_as} after all: analyse it", on_click=_answer, args=(key, YES))
        return None
    # In a container of its own, as the reading part is (a fragment's container): the same place.
    with st.container():
        view_col, side_col = reading_columns()
        with view_col:
            try:
                shape = whole_image(input_sha256, filename, data) or _preview(data, filename, fmt)
            except ReviewError as exc:
                st.error(str(exc))
                return None
            st.caption(f"{md_escape(filename)} · {shape[1]} × {shape[0]} px")
        with side_col:
            st.warning(
                f"A {fmt.upper()} file carries no record of what it shows. {question.model_reads}, and would score "
                "any other image (another body part or sequence, a photograph) as one. What is this image?"
            )
            yes_key = radiograph_button_key(input_sha256, "yes", question.kind)
            st.button(question.yes_label, key=yes_key, on_click=_answer, args=(key, YES))
            no_key = radiograph_button_key(input_sha256, "no", question.kind)
            st.button(NO_LABEL, key=no_key, on_click=_answer, args=(key, NO))
            st.caption("Your answer is stored with the analysis, under your name.")
    return None


def _preview(data: bytes, filename: str, fmt: str) -> tuple[int, int]:
    """The server-rendered view's picture of what is asked about, small (enough to tell a chest
    from a head); the image's (rows, columns)."""
    import cv2
    import numpy as np

    from inference.images.ingest import decode_raster

    pixels = decode_raster(data, filename, fmt, load_settings().max_image_pixels)
    rows, cols = pixels.shape
    scale = min(1.0, PREVIEW_SIDE / max(rows, cols))
    small = cv2.resize(pixels, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    st.image(np.clip(small, 0, 255).astype(np.uint8), width=PREVIEW_SIDE)
    return rows, cols
