"""Studies on the department's PACS (QIDO-RS), opened for review (WADO-RS) in the same pages and
through the same readers as an upload. The list shows no name, ID or birth date: the patient is
the keyed hash of the PACS's patient ID."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from pipelines.pacs import NOT_IMAGES, DicomWebResource, StudyRow, endpoint, find_studies, image_series, retrieve
from ui.resources import patient_hash_key
from ui.session import CT_TASK, MASK_TASK, PACS_ERROR, PACS_OPENED, PACS_TABLE, PACS_TO_PAGE, VOLUME_TASK

log = logging.getLogger(__name__)

MODALITIES = ("Any", "CR", "DX", "CT", "MR")
RADIOGRAPHS = {"CR", "DX"}
# Objects without pixels to review: a study of these alone (results sent back, a report) is not opened.
REVIEW_PAGE, VOLUME_PAGE = "pages/review.py", "pages/volumes.py"


@dataclass(frozen=True)
class RetrievedFile:
    """A file retrieved from PACS, as the review pages take an upload: name, bytes, an id."""

    name: str
    data: bytes
    file_id: str

    def getvalue(self) -> bytes:
        return self.data

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class OpenedStudy:
    kind: str  # "radiograph" or "volume"
    files: tuple[RetrievedFile, ...]
    study: StudyRow

    @property
    def caption(self) -> str:
        what = " · ".join(x for x in (self.study.date, self.study.description, "/".join(self.study.modalities)) if x)
        return f"Opened from PACS: {what} (study …{self.study.study_uid[-12:]})"


@st.cache_data(ttl=60, show_spinner="Asking the PACS for its studies…")
def _studies(url: str, modality: str | None, since: str | None) -> list[StudyRow]:
    return find_studies(endpoint(load_settings(), url), patient_hash_key(), modality=modality, since=since)


def pacs_worklist() -> None:
    settings = load_settings()
    if not settings.pacs_url:
        st.info(
            "No PACS is configured. IT sets PACS_DICOMWEB_URL (the PACS's DICOMweb root) and, where it asks for "
            "them, PACS_USERNAME and PACS_PASSWORD; studies then appear here to open for review."
        )
        return
    left, middle, right = st.columns([1, 1, 2])
    modality = left.selectbox("Modality", MODALITIES, key="pacs::modality")
    since = middle.date_input("Studies since", value=None, key="pacs::since", format="YYYY-MM-DD")
    if right.button("Refresh the list", key="pacs::refresh"):
        _studies.clear()
    try:
        rows = _studies(
            settings.pacs_url, None if modality == "Any" else modality, since.strftime("%Y%m%d") if since else None
        )
    except ReviewError as exc:
        st.error(str(exc))
        return
    said = st.session_state.pop(PACS_ERROR, None)
    if said:
        st.error(said)
    if not rows:
        st.info("The PACS lists no study for these filters.")
        return
    picked = st.dataframe(
        pd.DataFrame(
            [
                {
                    "study date": r.date,
                    "description": r.description,
                    "modalities": "/".join(r.modalities),
                    "series": r.series,
                    "images": r.instances,
                    "patient key": r.patient_key or "",
                }
                for r in rows
            ]
        ),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=PACS_TABLE,
    )
    chosen = picked.selection.rows if picked is not None else []
    if not chosen:
        st.caption("Click a study's row to open it for review.")
        return
    row = rows[chosen[0]]
    if st.button("Open this study for review", type="primary", key="pacs::open", on_click=_open, args=(row,)):
        target = st.session_state.pop(PACS_TO_PAGE, None)
        if target:
            st.switch_page(target)


def _open(row: StudyRow) -> None:
    """Retrieves the study (WADO-RS) and hands it to the page that reviews it."""
    settings = load_settings()
    try:
        if row.modalities and set(row.modalities) <= NOT_IMAGES:
            raise ReviewError(
                f"This study holds no images ({'/'.join(row.modalities)}), so there is nothing to review in it. "
                "Open the study of the images themselves."
            )
        series = retrieve(
            DicomWebResource(endpoint(settings), row.study_uid), max_bytes=settings.max_volume_upload_mb * 1_000_000
        )
        study = opening(row, series)
    except ReviewError as exc:
        st.session_state[PACS_ERROR] = str(exc)
        return
    st.session_state[PACS_OPENED] = study
    if study.kind == "radiograph":
        st.session_state[PACS_TO_PAGE] = REVIEW_PAGE
    else:
        st.session_state[VOLUME_TASK] = CT_TASK if "CT" in row.modalities else MASK_TASK
        st.session_state[PACS_TO_PAGE] = VOLUME_PAGE
    log.info("Opened a PACS study for review: %d series retrieved", len(series))


def opening(row: StudyRow, series: dict[str, list[tuple[str, bytes]]]) -> OpenedStudy:
    """What to review of a retrieved study: its first radiograph (CR, DX), else its largest series
    of images as a volume (a localiser, a SEG or an SR is a handful of files, and never the volume).

    Raises:
        ReviewError: the study holds no image series.
    """
    files = {
        uid: tuple(RetrievedFile(name, data, hashlib.sha256(data).hexdigest()) for name, data in items)
        for uid, items in image_series(series).items()
    }
    if not files:
        raise ReviewError("This study holds no images (only reports or segmentations): nothing to review in it.")
    if RADIOGRAPHS & set(row.modalities):
        return OpenedStudy("radiograph", (next(iter(files.values()))[0],), row)
    return OpenedStudy("volume", max(files.values(), key=len), row)


def opened(kind: str) -> OpenedStudy | None:
    """The study opened from PACS for this kind of page, with its caption and a way to close it."""
    study = st.session_state.get(PACS_OPENED)
    if not isinstance(study, OpenedStudy) or study.kind != kind:
        return None
    left, right = st.columns([4, 1])
    left.caption(study.caption)
    if right.button("Close this study", key=f"pacs::close::{kind}"):
        st.session_state.pop(PACS_OPENED, None)
        st.rerun()
    return study
