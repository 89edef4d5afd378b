"""A case's AI results and one reader's verdicts as a DICOM SR measurement report (TID 1500,
Comprehensive 3D SR), with highdicom.

One SR per case and reader; the reader is the document's person observer. Without a reader (the
CLI's ``analyze --stow``: the AI's results sent before anyone has read them) the models are the
observer, as devices, and the series description says the results are not reviewed. Each finding, class or
structure of each run is a measurement group (TID 1501, or TID 1411 for a structure that is one
segment of the run's DICOM SEG, which it then references):
- what the AI said: the score with its band (findings and classes), or the volume in mL and the
  longest axial diameter in mm (structures); the model as the group's algorithm identification
  (id, weights sha256 as the version, parameters "trained=yes|no", the bands version);
- an untrained model's results carry a qualitative evaluation "Model weights: untrained
  (meaningless)", and the series description says so;
- the reader's verdict as a qualitative evaluation (agree / disagree / unsure) with its time as
  the item's observation date and time, the reader's own class where they gave one, and the note
  as a comment.

Findings, bands and verdicts are coded in this app's private scheme (99RVW): no standard codes
exist for a model's labels. Only the keyed patient hash goes in.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import ReviewError
from core.results import StructureMeasurement
from core.types import Finding, ModelIdentity
from inference.dicom_out.common import (
    LO,
    MANUFACTURER,
    PRIVATE_SCHEME,
    SECONDARY_CAPTURE,
    SR_SERIES_NUMBER,
    derived_uid,
    patient_and_study,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


class SrExportError(ReviewError):
    """A report that cannot be written (no verdict from the reader, nothing to report)."""


@dataclasses.dataclass(frozen=True)
class ReaderVerdict:
    item: str  # the finding, class or structure judged
    verdict: str  # agree, disagree or unsure
    note: str
    given_at: datetime  # UTC
    reader_label: str | None = None  # the reader's own class, where they gave one


@dataclasses.dataclass(frozen=True)
class ReportedFindings:
    """A classification run: a score and band per finding (chest X-ray) or class (brain MRI)."""

    run_id: int
    model: ModelIdentity
    bands_version: str
    findings: tuple[Finding, ...]
    verdicts: tuple[ReaderVerdict, ...]


@dataclasses.dataclass(frozen=True)
class ReportedStructures:
    """A segmentation run: each structure's measurements; ``seg`` is the run's DICOM SEG (its
    segments referenced by the structures that are one label) when the volume is kept."""

    run_id: int
    model: ModelIdentity
    structures: tuple[StructureMeasurement, ...]
    verdicts: tuple[ReaderVerdict, ...]
    seg: Dataset | None = None  # the run's DICOM SEG
    segment_numbers: dict[int, int] = dataclasses.field(default_factory=dict)  # label value -> SEG segment


@dataclasses.dataclass(frozen=True)
class CaseReport:
    case_id: int
    input_sha256: str
    patient_key: str | None
    study_instance_uid: str  # the source study (DICOM volume), else one derived from the case's input
    reader: str | None  # the name the reader is shown by; None: the AI's results alone, not reviewed
    reader_key: str | None  # their identity key (stable; names the SR's UIDs)
    runs: tuple[ReportedFindings | ReportedStructures, ...]


def _concept(value: str, meaning: str, scheme: str = PRIVATE_SCHEME):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value[:16], scheme_designator=scheme, meaning=meaning[:LO])


def _private_code(text: str):
    """A model's label as a code of this app's scheme: the code value is the label's own short
    form, so a reader of the SR sees the label in both."""
    compact = "".join(ch for ch in text.upper() if ch.isalnum())[:16] or "ITEM"
    return _concept(compact, text)


_VERDICT = ("RVW-VERDICT", "Reader verdict")
_BAND = ("RVW-BAND", "Threshold band")
_READER_CLASS = ("RVW-READERCLASS", "Reader's own class")
_WEIGHTS = ("RVW-WEIGHTS", "Model weights")
_SCORE = ("RVW-SCORE", "AI score")
_COMMENT = ("121106", "Comment", "DCM")
_OBSERVATION_DATETIME = 0x0040A032  # a content item's own time: when the reader gave the verdict


def case_report_sr(report: CaseReport):
    """The SR (a pydicom Dataset) of ``report``.

    Raises:
        SrExportError: the reader gave no verdict on this case.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if report.reader is not None and not any(run.verdicts for run in report.runs):
        raise SrExportError(
            f"{report.reader} has given no verdict on case {report.case_id}, so there is no reader report to write."
        )
    groups: list[Any] = []
    evidence: list[Dataset] = []
    for run in report.runs:
        if isinstance(run, ReportedStructures):
            groups.extend(_structure_groups(run, report))
            if run.seg is not None:
                evidence.append(run.seg)
        else:
            groups.extend(_finding_groups(run, report))
    if report.reader is not None:
        context = hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name=f"{report.reader[: LO - 1]}^"
                ),
            )
        )
        procedure = _concept("RVW-AIREVIEW", "Review of AI results on an imaging study")
    else:
        model = report.runs[0].model
        context = hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=derived_uid("device", model.model_id, model.weights_sha256),
                    name=model.model_id[:LO],
                    manufacturer_name=MANUFACTURER,
                    model_name=model.model_id[:LO],
                ),
            )
        )
        procedure = _concept("RVW-AIRESULTS", "AI results on an imaging study, not reviewed by a reader")
    content = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    untrained = any(not run.model.trained for run in report.runs)
    # Identical content, identical UIDs: the verdicts' latest times name this version of the report
    # (the AI's results alone: the models and weights that made them).
    if report.reader is not None:
        version = max(v.given_at for run in report.runs for v in run.verdicts).isoformat()
    else:
        version = "|".join(f"{run.model.model_id}:{run.model.weights_sha256}" for run in report.runs)
    identity = (str(report.case_id), report.input_sha256, report.reader_key or "ai-only")
    stand_in = not evidence
    if stand_in:  # nothing referenced: a header for the patient and study modules alone
        evidence = [
            patient_and_study(
                SECONDARY_CAPTURE,
                derived_uid("case-image", report.input_sha256),
                report.study_instance_uid,
                derived_uid("case-series", report.input_sha256),
                "OT",
                report.patient_key,
            )
        ]
    if report.reader is not None:
        description = f"AI review SR case {report.case_id} by {report.reader}"[: LO - 24]
    else:
        description = "AI results SR, not reviewed"
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content,
        series_instance_uid=derived_uid("sr-series", *identity),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sr", *identity, version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        record_evidence=not stand_in,
        series_description=description + (" untrained: meaningless" if untrained else ""),
        # This app's private codes, declared as the standard asks (PS3.3 C.12.1.1.4)
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=PRIVATE_SCHEME,
                name="Radiology AI review dashboard: model labels, bands and reader verdicts",
                responsible_organization=MANUFACTURER,
            )
        ],
    )
    log.info(
        "DICOM SR of case %d by %s: %d measurement groups", report.case_id, report.reader or "the AI alone", len(groups)
    )
    return sr


def _algorithm(model: ModelIdentity, bands_version: str | None = None):
    import highdicom as hd

    parameters = ["trained=yes" if model.trained else "trained=no (untrained: meaningless)"]
    if bands_version:
        parameters.append(f"bands={bands_version}")
    return hd.sr.AlgorithmIdentification(
        name=model.model_id[:LO], version=model.weights_sha256[:LO], parameters=parameters
    )


def _tracking(report: CaseReport, run_id: int, item: str):
    import highdicom as hd

    return hd.sr.TrackingIdentifier(
        uid=derived_uid("tracking", report.input_sha256, str(run_id), item),
        identifier=f"run {run_id}: {item}"[:LO],
    )


def _evaluations(model: ModelIdentity, verdict: ReaderVerdict | None, band: str | None = None) -> list:
    import highdicom as hd

    evaluations = []
    if band is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(_concept(*_BAND), _private_code(band)))
    if not model.trained:
        evaluations.append(
            hd.sr.QualitativeEvaluation(_concept(*_WEIGHTS), _concept("RVW-UNTRAINED", "Untrained (meaningless)"))
        )
    if verdict is not None:
        given = hd.sr.QualitativeEvaluation(_concept(*_VERDICT), _private_code(verdict.verdict))
        given[0].add_new(_OBSERVATION_DATETIME, "DT", verdict.given_at.strftime("%Y%m%d%H%M%S"))
        evaluations.append(given)
        if verdict.reader_label:
            evaluations.append(
                hd.sr.QualitativeEvaluation(_concept(*_READER_CLASS), _private_code(verdict.reader_label))
            )
    return evaluations


def _with_note(group, verdict: ReaderVerdict | None):
    """The reader's note as a comment in the group (TEXT, CONTAINS)."""
    if verdict is not None and verdict.note:
        from highdicom.sr import CodedConcept, RelationshipTypeValues, TextContentItem

        item = TextContentItem(
            name=CodedConcept(value=_COMMENT[0], meaning=_COMMENT[1], scheme_designator=_COMMENT[2]),
            value=verdict.note,
            relationship_type=RelationshipTypeValues.CONTAINS,
        )
        item.add_new(_OBSERVATION_DATETIME, "DT", verdict.given_at.strftime("%Y%m%d%H%M%S"))
        group[0].ContentSequence.append(item)
    return group


def _finding_groups(run: ReportedFindings, report: CaseReport) -> list:
    import highdicom as hd

    verdicts = {v.item: v for v in run.verdicts}
    unitless = _concept("1", "no units", "UCUM")
    groups = []
    for finding in run.findings:
        verdict = verdicts.get(finding.label)
        score = hd.sr.Measurement(name=_concept(*_SCORE), value=round(float(finding.score), 6), unit=unitless)
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(report, run.run_id, finding.label),
            finding_type=_private_code(finding.label),
            algorithm_id=_algorithm(run.model, run.bands_version),
            measurements=[score],
            qualitative_evaluations=_evaluations(run.model, verdict, finding.band.value),
        )
        groups.append(_with_note(group, verdict))
    return groups


def _structure_groups(run: ReportedStructures, report: CaseReport) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    verdicts = {v.item: v for v in run.verdicts}
    segments = run.segment_numbers
    groups = []
    for structure in run.structures:
        verdict = verdicts.get(structure.name)
        measurements = [
            hd.sr.Measurement(
                name=codes.SCT.Volume, value=round(structure.volume_ml, 4), unit=_concept("ml", "milliliter", "UCUM")
            ),
            hd.sr.Measurement(
                name=_concept("RVW-AXIALDIAM", "Longest axial diameter"),
                value=round(structure.max_axial_extent_mm, 2),
                unit=_concept("mm", "millimeter", "UCUM"),
            ),
        ]
        common = dict(
            tracking_identifier=_tracking(report, run.run_id, structure.name),
            finding_type=_private_code(structure.name),
            algorithm_id=None if run.model.model_id == "uploaded-mask" else _algorithm(run.model),
            measurements=measurements,
            qualitative_evaluations=_evaluations(run.model, verdict),
        )
        segment = segments.get(structure.values[0]) if len(structure.values) == 1 else None
        if run.seg is not None and segment is not None:
            seg = run.seg
            reference = hd.sr.ReferencedSegment(
                sop_class_uid=_SEG_SOP_CLASS,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=segment,
                source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
            )
            group: Any = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                referenced_segment=reference, **common
            )
        else:  # a structure made of several labels (BraTS whole tumour), or no SEG kept
            group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
        groups.append(_with_note(group, verdict))
    return groups
