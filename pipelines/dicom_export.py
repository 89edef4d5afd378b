"""A stored case as DICOM for PACS: one SR (TID 1500) per reader, the DICOM SEG of each
segmentation run whose volume and label map are kept, and (when asked) secondary captures. The
CLI's ``export`` and the case page's download and send-to-PACS buttons all build them here, from
the database and the image store alone."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from core.errors import ReviewError
from core.settings import Settings
from core.types import ModelIdentity
from inference.dicom_out.common import derived_uid
from inference.dicom_out.seg import seg_dataset, segment_numbers
from inference.dicom_out.sr import CaseReport, ReaderVerdict, ReportedFindings, ReportedStructures, case_report_sr
from inference.volume.types import MultiChannelVolume
from pipelines.captures import case_captures
from pipelines.kept_volumes import kept_volume, reopened_segmentation
from pipelines.pacs import endpoint, send
from storage import repository
from storage.image_store import ImageStore
from storage.repository import ClassificationRunRecord, SegmentationRunRecord

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from inference.models.loader import LoadedModel
    from pipelines.analyze import CaseAnalysis

log = logging.getLogger(__name__)


class CaseNotFound(ReviewError):
    """No stored case with that number."""


@dataclass(frozen=True)
class CaseExport:
    """What a case gives PACS: the SRs by reader name, the SEGs by run id, and the secondary
    captures when asked for (pydicom Datasets)."""

    case_id: int
    srs: dict[str, Dataset]
    segs: dict[int, Dataset]
    captures: tuple[Dataset, ...] = ()


def export_case(
    session: Session,
    store: ImageStore | None,
    case_id: int,
    reader: str | None = None,
    *,
    pictures: Settings | None = None,
    loaded: Callable[[str], LoadedModel | None] | None = None,
) -> CaseExport:
    """The DICOM objects of case ``case_id``: the SEG of every segmentation run whose volume is kept,
    an SR for each reader with a verdict (only ``reader``, a name or identity key, when given), and
    with ``pictures`` (the settings: a radiograph's heatmaps need its model) the secondary captures;
    ``loaded`` gives a model already in memory by its id (``captures.case_captures``).

    Raises:
        CaseNotFound: no such case.
        ReviewError: ``reader`` gave no verdict on it.
    """
    runs = repository.runs_for_case(session, case_id)
    if not runs:
        raise CaseNotFound(f"There is no case {case_id} in this database (see the worklist for case numbers).")
    names = repository.reviewer_names(session)
    by_reader: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for verdict in repository.current_verdicts(session, run.run_id):
            by_reader[verdict.reviewer][run.run_id].append(verdict)
    readers = sorted(by_reader, key=lambda key: names.get(key, key))
    if reader is not None:
        chosen = [key for key in readers if reader in (key, names.get(key, key))]
        if not chosen:
            shown = ", ".join(names.get(key, key) for key in readers) or "nobody yet"
            raise ReviewError(f"{reader} has given no verdict on case {case_id}; readers of this case: {shown}.")
        readers = chosen
    segs, numbers, study_uid = _segmentations(store, runs)
    facts = runs[0].facts
    if study_uid is None and store is not None:  # a radiograph read from DICOM: its own study
        kept = store.get_image(facts.input_sha256)
        if kept is not None and kept.facts.dicom_uids:
            study_uid = kept.facts.dicom_uids[0]
    study_uid = study_uid or derived_uid("study", facts.input_sha256)
    srs: dict[str, Dataset] = {}
    for key in readers:
        name = names.get(key, key)
        reported = tuple(_reported(run, by_reader[key].get(run.run_id, []), segs, numbers) for run in runs)
        report = CaseReport(
            case_id=case_id,
            input_sha256=facts.input_sha256,
            patient_key=facts.patient_key,
            study_instance_uid=study_uid,
            reader=name,
            reader_key=key,
            runs=tuple(r for r in reported if r is not None),
        )
        srs[name] = case_report_sr(report)
    captures = tuple(case_captures(runs, store, pictures, study_uid, loaded)) if pictures is not None else ()
    return CaseExport(case_id, srs, segs, captures)


def _segmentations(store: ImageStore | None, runs) -> tuple[dict[int, Dataset], dict[int, dict[int, int]], str | None]:
    """The SEG of each segmentation run whose volume and label map are kept, its segment numbers,
    and the study they lie in (the source study of a DICOM volume)."""
    segs: dict[int, Dataset] = {}
    numbers: dict[int, dict[int, int]] = {}
    study_uid = None
    for run in runs:
        if not isinstance(run, SegmentationRunRecord) or store is None:
            continue
        inputs = kept_volume(store, run.facts.input_sha256)
        segmentation = reopened_segmentation(store, run)
        if inputs is None or segmentation is None:
            log.info("Case %d run %d: volume or label map not kept, reported without a SEG", run.case_id, run.run_id)
            continue
        volume = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
        segs[run.run_id] = seg_dataset(volume, segmentation)
        numbers[run.run_id] = segment_numbers(segmentation.label_map)
        study_uid = str(segs[run.run_id].StudyInstanceUID)
    return segs, numbers, study_uid


def _reported(run, verdicts: list, segs: dict, numbers: dict) -> ReportedFindings | ReportedStructures | None:
    given = tuple(ReaderVerdict(v.item, v.verdict.value, v.note, v.created_at, v.reader_label) for v in verdicts)
    model = ModelIdentity(run.model_id, run.weights_sha256, run.trained, run.device)
    if isinstance(run, ClassificationRunRecord):
        return ReportedFindings(run.run_id, model, run.bands_version, run.findings, given)
    if isinstance(run, SegmentationRunRecord):
        return ReportedStructures(
            run.run_id, model, run.structures, given, segs.get(run.run_id), numbers.get(run.run_id, {})
        )
    return None


def send_reader_results(
    transaction: Callable[[], AbstractContextManager[Session]],
    store: ImageStore | None,
    settings: Settings,
    case_id: int,
    reader: str,
    run_id: int,
    how: str = "by hand",
    loaded: Callable[[str], LoadedModel | None] | None = None,
) -> str:
    """STOW-RS of ``reader``'s SR of the case, with the case's kept SEGs and its pictures
    (secondary captures), to the configured PACS; audited under the reader. Returns what was sent,
    in words. Sending again stores nothing twice (the objects' UIDs derive from their content).

    Raises:
        ReviewError: no PACS is configured, it is down or refuses (PacsUnavailable, PacsRefused),
            or the reader gave no verdict on the case.
    """
    from storage import audit

    target = endpoint(settings)
    with transaction() as session:
        exported = export_case(session, store, case_id, reader=reader, pictures=settings, loaded=loaded)
    sent = send(target, [*exported.srs.values(), *exported.segs.values(), *exported.captures])
    with transaction() as session:
        audit.record_event(
            session,
            "export_made",
            reader,
            case_id=case_id,
            run_id=run_id,
            export=f"DICOM sent to PACS ({how}): {sent.count}",
        )
    parts = ["your SR"]
    if exported.segs:
        parts.append("the SEG" if len(exported.segs) == 1 else f"{len(exported.segs)} SEGs")
    if exported.captures:
        parts.append(f"{len(exported.captures)} picture(s)")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    log.info("Case %d: %s sent to PACS %s (%s)", case_id, listed, target.url, how)
    return f"Sent to PACS: {sent.count} object(s) ({listed})."


def ai_results_sr(analysis: CaseAnalysis) -> Dataset:
    """The AI's findings on one image, before anyone has read them, as an SR whose observer is the
    model (a device): each finding's score and band, the model and its weights, "untrained:
    meaningless" where so, "not reviewed" in the series description. Filed in the image's own
    study when it was DICOM, else in one derived from the image."""
    facts = analysis.facts
    prediction = analysis.prediction
    report = CaseReport(
        case_id=0,
        input_sha256=facts.input_sha256,
        patient_key=facts.patient_key,
        study_instance_uid=facts.dicom_uids[0] if facts.dicom_uids else derived_uid("study", facts.input_sha256),
        reader=None,
        reader_key=None,
        runs=(ReportedFindings(0, prediction.model, prediction.bands_version, prediction.findings, ()),),
    )
    return case_report_sr(report)
