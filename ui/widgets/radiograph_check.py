"""What an image without a header is, asked before the chest X-ray model scores it.

A DICOM radiograph says what it is (its modality; CT, MR and other modalities are refused by the
ingest front door). A PNG or JPEG says nothing: a brain MRI slice saved as a JPEG was scored as a
chest radiograph (12 critical findings) and became the first case of "next unreviewed". So a
PNG or JPEG is scored only once the reader confirms it is a frontal chest radiograph; a refusal
stores nothing and keeps the image out of the worklist. The confirmation is stored with the run
(its audit event), with who gave it.
"""

from __future__ import annotations

import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from ui.session import radiograph_answer_key, radiograph_button_key

CONFIRMED_AS = "a frontal chest radiograph"
YES, NO = "radiograph", "declined"
YES_LABEL = "Yes: a frontal chest radiograph (PA or AP). Analyse it"
NO_LABEL = "No: something else"
PREVIEW_SIDE = 420  # pixels: enough to tell a chest from a head, light to send


def _answer(key: str, value: str) -> None:
    st.session_state[key] = value


def confirmed_as(input_sha256: str, filename: str, data: bytes) -> str | None:
    """What the reader confirmed the upload is (``CONFIRMED_AS``), "" for a DICOM (its header
    says), or None while the model must not run: the question, or the refusal, is on the page."""
    from inference.images.ingest import decode_raster, sniff_format

    fmt = sniff_format(data)
    if fmt not in ("png", "jpeg"):
        return ""  # DICOM (checked by its header), or not an image (the front door says so)
    key = radiograph_answer_key(input_sha256)
    answer = st.session_state.get(key)
    if answer == YES:
        return CONFIRMED_AS
    if answer == NO:
        st.info(
            f"{filename} was not analysed, and nothing was stored: the chest X-ray model reads frontal chest "
            "radiographs only, and scores anything else as if it were one. For a brain MRI or a CT slice use "
            "**Review an MRI or CT**."
        )
        st.button("It is a frontal chest radiograph after all: analyse it", on_click=_answer, args=(key, YES))
        return None
    try:
        pixels = decode_raster(data, filename, fmt, load_settings().max_image_pixels)
    except ReviewError as exc:
        st.error(str(exc))
        return None
    st.warning(
        f"A {fmt.upper()} file carries no record of what it shows. The model reads frontal chest radiographs "
        "only, and would score any other image (an MRI slice, a lateral film, a photograph) as one. "
        "What is this image?"
    )
    import cv2
    import numpy as np

    rows, cols = pixels.shape
    scale = min(1.0, PREVIEW_SIDE / max(rows, cols))
    small = cv2.resize(pixels, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    preview, answers = st.columns([1, 2], vertical_alignment="center")
    preview.image(np.clip(small, 0, 255).astype(np.uint8), caption=f"{filename} · {cols} × {rows} px")
    with answers:
        st.button(YES_LABEL, key=radiograph_button_key(input_sha256, "yes"), on_click=_answer, args=(key, YES))
        st.button(NO_LABEL, key=radiograph_button_key(input_sha256, "no"), on_click=_answer, args=(key, NO))
        st.caption("Your answer is stored with the analysis, under your name.")
    return None
