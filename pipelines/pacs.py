"""The department's PACS over DICOMweb (dicomweb-client): results sent with STOW-RS, studies found
with QIDO-RS.

A PACS that is down, refuses the credentials or rejects an object is said in one line a clinician
or IT can act on; nothing is lost on this side (the results stay in the database, and sending again
is safe: each object's UIDs derive from its content, so PACS stores it once)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import ReviewError
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


def send(target: PacsEndpoint, datasets: Sequence[Dataset]) -> Sent:
    """STOW-RS ``datasets`` to the PACS, one request per study.

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
