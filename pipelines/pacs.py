"""The department's PACS over DICOMweb (dicomweb-client): results sent with STOW-RS, studies found
with QIDO-RS, images retrieved with WADO-RS (``studies/UID[/series/UID]`` URLs, as the CLI takes
them wherever it takes a file).

A PACS that is down, refuses the credentials or rejects an object is said in one line a clinician
or IT can act on; nothing is lost on this side (the results stay in the database, and sending again
is safe: each object's UIDs derive from its content, so PACS stores it once)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import InputTooLarge, ReviewError
from core.settings import Settings

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0


class PacsUnavailable(ReviewError):
    """The PACS did not answer (down, unreachable, timed out): nothing was sent."""


class PacsRefused(ReviewError):
    """The PACS answered but refused: credentials, permissions, or the objects themselves."""


@dataclass(frozen=True)
class PacsEndpoint:
    url: str  # the DICOMweb root, e.g. https://pacs.example/dicom-web
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Sent:
    """What the PACS took: SOP instance UIDs, by study."""

    studies: dict[str, list[str]]

    @property
    def count(self) -> int:
        return sum(len(uids) for uids in self.studies.values())


def endpoint(settings: Settings, url: str | None = None) -> PacsEndpoint:
    """The PACS to use: ``url`` when given (the CLI's --stow), else PACS_DICOMWEB_URL.

    Raises:
        ReviewError: no PACS is configured.
    """
    chosen = url or settings.pacs_url
    if not chosen:
        raise ReviewError(
            "No PACS is configured: set PACS_DICOMWEB_URL (and PACS_USERNAME / PACS_PASSWORD where the PACS "
            "asks for them), or give its DICOMweb URL."
        )
    return PacsEndpoint(chosen.rstrip("/"), settings.pacs_username, settings.pacs_password)


# What PACS files a study's objects under. The app keeps only the keyed patient hash; an object sent
# into a study the PACS already holds takes these from the PACS's own record of that study, so it
# is filed with its images under the right patient (nothing here is stored or shown by the app).
_FILED_UNDER = (
    ("00100020", "PatientID"),
    ("00100010", "PatientName"),
    ("00100030", "PatientBirthDate"),
    ("00100040", "PatientSex"),
    ("00080050", "AccessionNumber"),
    ("00200010", "StudyID"),
    ("00080020", "StudyDate"),
    ("00080030", "StudyTime"),
    ("00080090", "ReferringPhysicianName"),
)


def send(target: PacsEndpoint, datasets: Sequence[Dataset]) -> Sent:
    """STOW-RS ``datasets`` to the PACS, one request per study. Objects of a study the PACS already
    holds are sent filed under that study's patient as the PACS records it (the app's own copies
    keep only the keyed hash); objects of a study new to it go as they are.

    Raises:
        PacsUnavailable: the PACS did not answer; nothing was sent.
        PacsRefused: it answered with an error (the message says which).
    """
    by_study: dict[str, list[Dataset]] = {}
    for dataset in datasets:
        by_study.setdefault(str(dataset.StudyInstanceUID), []).append(dataset)
    client = _client(target)
    stored: dict[str, list[str]] = {}
    for study, items in by_study.items():
        items = _filed_under_the_pacs_patient(target, client, study, items)
        answer = _call(
            target,
            "store the results",
            lambda items=items, study=study: client.store_instances(items, study_instance_uid=study),
        )
        failed = list(answer.get("FailedSOPSequence") or [])
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsRefused(
                f"The PACS at {target.url} refused {len(failed)} of {len(items)} object(s) of study {study} "
                f"(failure reason {', '.join(reasons)}); the others were stored. Ask the PACS administrator, "
                "then send again: what was stored is not duplicated."
            )
        stored[study] = [str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence") or []]
        log.info("Sent %d object(s) of study %s to %s", len(stored[study]), study, target.url)
    return Sent(stored)


@dataclass(frozen=True)
class DicomWebResource:
    """A study, or one series of it, on a PACS: what a ``.../studies/UID[/series/UID]`` URL names."""

    endpoint: PacsEndpoint
    study_uid: str
    series_uid: str | None = None


_RESOURCE = re.compile(r"^(?P<root>https?://.+?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?/?$")


def is_dicomweb_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def resource(url: str, settings: Settings) -> DicomWebResource:
    """The study (or series) a DICOMweb URL names, with the configured credentials.

    Raises:
        ReviewError: the URL does not name a study or a series.
    """
    found = _RESOURCE.match(url.strip())
    if found is None:
        raise ReviewError(
            f"{url} is not a DICOMweb study or series URL: give .../studies/STUDY_UID or "
            ".../studies/STUDY_UID/series/SERIES_UID under the PACS's DICOMweb root."
        )
    return DicomWebResource(endpoint(settings, found["root"]), found["study"], found["series"])


def retrieve(where: DicomWebResource, max_bytes: int) -> dict[str, list[tuple[str, bytes]]]:
    """The instances of the study or series (WADO-RS), as Part 10 files by series UID, named by
    their SOP instance UID; retrieval stops past ``max_bytes``.

    Raises:
        PacsUnavailable, PacsRefused: as for ``send``.
        InputTooLarge: the study or series is larger than ``max_bytes``.
        ReviewError: the PACS has no such study or series, or it holds no instance.
    """
    from inference.dicom_out.common import part10_bytes

    client = _client(where.endpoint)
    what = f"series {where.series_uid}" if where.series_uid else f"study {where.study_uid}"

    def instances():
        if where.series_uid:
            return client.iter_series(where.study_uid, where.series_uid)
        return client.iter_study(where.study_uid)

    by_series: dict[str, list[tuple[str, bytes]]] = {}
    total = 0
    stream = _call(where.endpoint, f"retrieve {what}", instances)
    while True:
        dataset = _call(where.endpoint, f"retrieve {what}", lambda: next(stream, None))
        if dataset is None:
            break
        data = part10_bytes(dataset)
        total += len(data)
        if total > max_bytes:
            raise InputTooLarge(
                f"The {what} on {where.endpoint.url} is larger than the {max_bytes // 1_000_000} MB limit; "
                "open one series of it, or raise MAX_VOLUME_UPLOAD_MB."
            )
        uid = str(dataset.get("SOPInstanceUID", f"instance-{total}"))
        by_series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((f"{uid}.dcm", data))
    if not by_series:
        raise ReviewError(f"The PACS at {where.endpoint.url} holds no instance of {what}.")
    log.info("Retrieved %s from %s: %d series, %d bytes", what, where.endpoint.url, len(by_series), total)
    return by_series


def _filed_under_the_pacs_patient(target: PacsEndpoint, client, study: str, items: list) -> list:
    found = _call(
        target,
        "look up the study",
        lambda: client.search_for_studies(
            search_filters={"StudyInstanceUID": study}, fields=[keyword for _, keyword in _FILED_UNDER]
        ),
    )
    if not found:
        return items
    record = found[0]
    filed = []
    for item in items:
        copy = deepcopy(item)
        for tag, keyword in _FILED_UNDER:
            values = (record.get(tag) or {}).get("Value")
            if not values:
                continue
            value = values[0]
            setattr(copy, keyword, value.get("Alphabetic", "") if isinstance(value, dict) else value)
        filed.append(copy)
    log.info("Study %s is on the PACS: %d object(s) filed under its patient", study, len(filed))
    return filed


@dataclass(frozen=True)
class StudyRow:
    """A study on the PACS as the worklist shows it: no name, ID or birth date (the patient is the
    keyed hash of the PACS's patient ID)."""

    study_uid: str
    date: str  # YYYY-MM-DD, or "" when the PACS gives none
    description: str
    modalities: tuple[str, ...]
    series: int
    instances: int
    patient_key: str | None


def find_studies(
    target: PacsEndpoint, hash_key: bytes, *, modality: str | None = None, since: str | None = None, limit: int = 200
) -> list[StudyRow]:
    """Studies on the PACS (QIDO-RS), newest first; ``modality`` (CR, DX, CT, MR...) and ``since``
    (YYYYMMDD) narrow them.

    Raises:
        PacsUnavailable, PacsRefused: as for ``send``.
    """
    from core.deid import patient_key

    filters = {}
    if modality:
        filters["ModalitiesInStudy"] = modality
    if since:
        filters["StudyDate"] = f"{since}-"
    fields = ["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
    client = _client(target)
    found = _call(
        target,
        "list its studies",
        lambda: client.search_for_studies(search_filters=filters, fields=fields, limit=limit),
    )
    rows = []
    for item in found:
        date = _value(item, "00080020")
        rows.append(
            StudyRow(
                study_uid=_value(item, "0020000D"),
                date=f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else "",
                description=_value(item, "00081030"),
                modalities=tuple(str(m) for m in (item.get("00080061") or {}).get("Value") or []),
                series=int(_value(item, "00201206") or 0),
                instances=int(_value(item, "00201208") or 0),
                patient_key=patient_key(_value(item, "00100020") or None, hash_key),
            )
        )
    return sorted(rows, key=lambda row: row.date, reverse=True)


# What is never read as an image: reports, segmentations, key objects, presentation states, RT objects.
NOT_IMAGES = frozenset({"SR", "SEG", "KO", "PR", "DOC", "RTSTRUCT", "RTPLAN", "REG"})


def image_series(series: dict[str, list[tuple[str, bytes]]]) -> dict[str, list[tuple[str, bytes]]]:
    """The series of a retrieved study that are images to read: not reports, segmentations or other
    non-images (by the Modality of each series' first file), and never this app's own results sent
    back earlier (its pictures are images, but of the AI's output, by their Manufacturer)."""
    import io

    import pydicom

    from inference.dicom_out.common import MANUFACTURER

    kept = {}
    for uid, files in series.items():
        try:
            header = pydicom.dcmread(
                io.BytesIO(files[0][1]), stop_before_pixels=True, specific_tags=["Modality", "Manufacturer"]
            )
        except Exception:  # noqa: BLE001 - pydicom raises many types for damaged files; the reader says more later
            kept[uid] = files
            continue
        modality = str(header.get("Modality", "") or "").upper()
        if modality not in NOT_IMAGES and str(header.get("Manufacturer", "") or "") != MANUFACTURER:
            kept[uid] = files
    return kept


def series_of_study(target: PacsEndpoint, study_uid: str) -> list[dict[str, str]]:
    """The study's series as the PACS lists them (QIDO-RS): UID, modality, description."""
    client = _client(target)
    found = _call(target, "list the study's series", lambda: client.search_for_series(study_instance_uid=study_uid))
    return [
        {
            "series_uid": _value(item, "0020000E"),
            "modality": _value(item, "00080060"),
            "description": _value(item, "0008103E"),
        }
        for item in found
    ]


def _value(item: dict, tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def _client(target: PacsEndpoint):
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if target.username:
        session.auth = (target.username, target.password or "")
    client = DICOMwebClient(url=target.url, session=session, timeout=TIMEOUT_S)
    # A short back-off (0.25 s, 0.5 s): the library's default retries for 30 s, which a reader
    # waiting on "Send to PACS" reads as a hang; sending again later is always safe.
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
    return client


def _call(target: PacsEndpoint, what: str, call):
    import requests

    try:
        return call()
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 404:
            raise ReviewError(
                f"The PACS at {target.url} has nothing at that address (HTTP 404) when asked to {what}: check "
                "the study and series UIDs."
            ) from None
        if status in (401, 403):
            raise PacsRefused(
                f"The PACS at {target.url} refused the credentials (HTTP {status}) when asked to {what}: check "
                "PACS_USERNAME and PACS_PASSWORD. Nothing was sent."
            ) from None
        raise PacsRefused(
            f"The PACS at {target.url} answered HTTP {status} when asked to {what}; nothing was sent. "
            "Check the DICOMweb URL (it ends in the DICOMweb root, e.g. /dicom-web)."
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        reason = type(exc).__name__.replace("Error", " error").lower()
        raise PacsUnavailable(
            f"The PACS at {target.url} did not answer ({reason}) when asked to {what}; nothing was sent. The "
            "results stay here: send them again when the PACS is back."
        ) from None
