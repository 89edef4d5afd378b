"""Typed ORM tables: one table of runs of every kind (``core.vocabulary.RunKind``), their results
(findings, structures, region explanations), one table of verdicts on items of any run, case
notes and the audit trail. Enum columns store the enum's value, and a CHECK constraint keeps them
to it. Runs and results never change after insert; verdicts and case notes are append-only (a
change is a new row that supersedes the previous one): the database refuses UPDATE and DELETE on
all of them (``APPEND_ONLY_TABLES``)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.vocabulary import Band, RunKind, StudyPhase, Verdict


def utcnow() -> datetime:
    return datetime.now(UTC)


def _values(vocabulary: type[Enum]) -> str:
    """An enum's values as an SQL list, for the CHECK constraints that keep the database to them."""
    return ", ".join(f"'{member.value}'" for member in vocabulary)


class Base(DeclarativeBase):
    pass


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    source_format: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    view_position: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(32))
    patient_key: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="case", order_by="Run.id")


# A classification has bands, thresholds and a CAM method and no label map; a segmentation or an
# uploaded mask has a label map with its parameters, labels and grid, and no bands.
KIND_COLUMNS_RULE = (
    "(kind = 'classification' AND bands_version IS NOT NULL AND thresholds_json IS NOT NULL"
    " AND cam_method IS NOT NULL AND label_map_sha256 IS NULL)"
    " OR (kind <> 'classification' AND bands_version IS NULL AND label_map_sha256 IS NOT NULL"
    " AND params_json IS NOT NULL AND labels_json IS NOT NULL AND spacing_json IS NOT NULL"
    " AND shape_json IS NOT NULL)"
)


class Run(Base):
    """One run of any kind, as the reviewer saw it: what made it (model, weights, device) from which
    input, and the settings of its kind: bands and thresholds for a classification, the label map
    and its parameters for a segmentation or an uploaded mask. Never changed after insert (a new
    model, weights, bands or label map is a new run). The table keeps the name it had when it held
    only X-ray runs, so their ids, and everything that points at them, stayed as they were."""

    __tablename__ = "analysis_runs"
    __table_args__ = (
        UniqueConstraint("case_id", "model_id", "weights_sha256", "bands_version", name="uq_run_identity"),
        UniqueConstraint("case_id", "model_id", "weights_sha256", "label_map_sha256", name="uq_segmentation_identity"),
        CheckConstraint(f"kind IN ({_values(RunKind)})", name="ck_run_kind"),
        CheckConstraint(KIND_COLUMNS_RULE, name="ck_run_kind_columns"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    input_sha256: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    trained: Mapped[bool] = mapped_column(Boolean)
    # Classification only.
    bands_version: Mapped[str | None] = mapped_column(String(32))
    thresholds_json: Mapped[str | None] = mapped_column(Text)
    cam_method: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(16))
    timing_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Columns from here on were added by revision 0005, in this order (PostgreSQL appends them).
    kind: Mapped[str] = mapped_column(String(16))  # a core.vocabulary.RunKind value
    # Segmentation and uploaded mask only.
    label_map_sha256: Mapped[str | None] = mapped_column(String(64))
    params_json: Mapped[str | None] = mapped_column(Text)  # {name: text}: roi, overlap, threshold...
    labels_json: Mapped[str | None] = mapped_column(Text)  # [{value, name, color}], ascending value
    spacing_json: Mapped[str | None] = mapped_column(Text)  # [x, y, z] mm
    shape_json: Mapped[str | None] = mapped_column(Text)  # [x, y, z] voxels

    case: Mapped[Case] = relationship(back_populates="runs")
    findings: Mapped[list[RunFinding]] = relationship(order_by="RunFinding.position", cascade="all")
    structures: Mapped[list[RunStructure]] = relationship(order_by="RunStructure.position", cascade="all")


class RunFinding(Base):
    __tablename__ = "run_findings"
    __table_args__ = (
        UniqueConstraint("run_id", "label", name="uq_run_finding"),
        CheckConstraint(f"band IN ({_values(Band)})", name="ck_run_finding_band"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))  # a core.vocabulary.Band value


class VerdictEntry(Base):
    """A reviewer's verdict on one item of a run: a finding of a classification, a structure of a
    segmentation. Append-only: a change is a new row superseding the reviewer's previous one."""

    __tablename__ = "verdicts"
    __table_args__ = (CheckConstraint(f"verdict IN ({_values(Verdict)})", name="ck_verdict_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    item: Mapped[str] = mapped_column(String(64))  # the finding's label or the structure's name
    verdict: Mapped[str] = mapped_column(String(16))  # a core.vocabulary.Verdict value
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(80))
    cam_method: Mapped[str | None] = mapped_column(String(32))  # the heatmap on screen (findings only)
    # Each row is superseded at most once, so an item's history is a single chain per reviewer.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The reader's own class on a disagreement with a classifier of exclusive classes ("it is a meningioma").
    reader_label: Mapped[str | None] = mapped_column(String(64))


class CaseNote(Base):
    __tablename__ = "case_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    note: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(80))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("case_notes.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegionExplanationRow(Base):
    """A region SHAP explanation of every finding of a run, kept with the run it explains."""

    __tablename__ = "region_explanations"
    __table_args__ = (UniqueConstraint("run_id", "method", "regions_source", name="uq_run_explanation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    regions_source: Mapped[str] = mapped_column(String(80))
    masking: Mapped[str] = mapped_column(Text)
    region_names_json: Mapped[str] = mapped_column(Text)
    values_json: Mapped[str] = mapped_column(Text)  # {finding: [value per region]}
    base_values_json: Mapped[str] = mapped_column(Text)  # {finding: score with every region hidden}
    scores_json: Mapped[str] = mapped_column(Text)  # {finding: score with nothing hidden}
    evaluations: Mapped[int] = mapped_column(Integer)
    max_err: Mapped[float] = mapped_column(Float)
    timing_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Who did what to which case, when. Never changed or removed."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("analysis_runs.id"))
    detail_json: Mapped[str] = mapped_column(Text, default="{}")


class RunStructure(Base):
    """One measured structure of a segmentation or uploaded-mask run (the union of its label values)."""

    __tablename__ = "run_structures"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_run_structure"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    values_json: Mapped[str] = mapped_column(Text)  # [label value, ...]
    voxels: Mapped[int] = mapped_column(Integer)
    volume_ml: Mapped[float] = mapped_column(Float)
    axial_first: Mapped[int | None] = mapped_column(Integer)
    axial_last: Mapped[int | None] = mapped_column(Integer)
    max_axial_extent_mm: Mapped[float] = mapped_column(Float)


class ReviewerIdentity(Base):
    """How to show a signed-in identity key: the provider's verified e-mail or name, kept up to date.
    Verdicts store the key (issuer and subject), never this name."""

    __tablename__ = "reviewers"

    identity: Mapped[str] = mapped_column(String(80), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    verified_email: Mapped[str | None] = mapped_column(String(320))
    issuer: Mapped[str] = mapped_column(String(1000))
    subject: Mapped[str] = mapped_column(String(1000))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReaderStudy(Base):
    """A reader study: a set of one model's classification runs whose findings readers call first
    with the AI hidden, then with it shown. ``closed_at`` is the one value set after insert (once,
    when an admin closes it: its cases are then read as any other)."""

    __tablename__ = "reader_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    model_id: Mapped[str] = mapped_column(String(64))
    findings_json: Mapped[str] = mapped_column(Text)  # [finding label, ...]: what the readers call
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReaderStudyCase(Base):
    __tablename__ = "reader_study_cases"
    __table_args__ = (UniqueConstraint("study_id", "run_id", name="uq_study_case"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)


class StudyRead(Base):
    """One reader's read of one case of a study in one phase: their call on each of the study's
    findings and when they started and finished it. Each is written once: a first read cannot be
    redone once the AI has been seen."""

    __tablename__ = "study_reads"
    __table_args__ = (
        UniqueConstraint("study_id", "run_id", "reviewer", "phase", name="uq_study_read"),
        CheckConstraint(f"phase IN ({_values(StudyPhase)})", name="ck_study_read_phase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"))
    reviewer: Mapped[str] = mapped_column(String(80))
    phase: Mapped[str] = mapped_column(String(16))  # a core.vocabulary.StudyPhase value
    answers_json: Mapped[str] = mapped_column(Text)  # {finding: Presence value}
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunFeatures(Base):
    """A classification run's image as its model's last feature layer sees it: the embedding
    (float32, unit length) and each patch's features (float16, the grid row by row). Vectors, never
    pixels; comparable only between runs of the same model and weights."""

    __tablename__ = "run_features"
    # Each model's vectors in the order stored: an index loads the ones it has not seen yet.
    __table_args__ = (Index("ix_run_features_model", "model_id", "weights_sha256", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), unique=True)
    model_id: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    grid_rows: Mapped[int] = mapped_column(Integer)
    grid_cols: Mapped[int] = mapped_column(Integer)
    patches: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


APPEND_ONLY_TABLES = (
    "analysis_runs",
    "run_findings",
    "run_structures",
    "verdicts",
    "case_notes",
    "region_explanations",
    "audit_events",
    "reader_study_cases",
    "study_reads",
    "run_features",
)
