"""Typed ORM tables. Verdicts and case notes are append-only: a change is a new row that
supersedes the previous one, and the database refuses UPDATE and DELETE on them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


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

    runs: Mapped[list[AnalysisRun]] = relationship(back_populates="case", order_by="AnalysisRun.id")


class AnalysisRun(Base):
    __tablename__ = "analysis_runs"
    __table_args__ = (
        UniqueConstraint("case_id", "model_id", "weights_sha256", "bands_version", name="uq_run_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    input_sha256: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    trained: Mapped[bool] = mapped_column(Boolean)
    bands_version: Mapped[str] = mapped_column(String(32))
    thresholds_json: Mapped[str] = mapped_column(Text)
    cam_method: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(16))
    timing_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="runs")
    findings: Mapped[list[RunFinding]] = relationship(order_by="RunFinding.position", cascade="all")


class RunFinding(Base):
    __tablename__ = "run_findings"
    __table_args__ = (UniqueConstraint("run_id", "label", name="uq_run_finding"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))


class Verdict(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id"), index=True)
    finding_label: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(80))
    cam_method: Mapped[str | None] = mapped_column(String(32))
    # Each row is superseded at most once, so a finding's history is a single chain per reviewer.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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


class SegmentationRun(Base):
    """A 3D segmentation as the reviewer saw it: the label map's hash, what made it and how. Never
    changed after insert (a new model, weights or label map is a new run)."""

    __tablename__ = "segmentation_runs"
    __table_args__ = (
        UniqueConstraint("case_id", "model_id", "weights_sha256", "label_map_sha256", name="uq_segmentation_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    input_sha256: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    trained: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # "model" or "uploaded"
    label_map_sha256: Mapped[str] = mapped_column(String(64))
    params_json: Mapped[str] = mapped_column(Text)  # {name: text}: roi, overlap, threshold...
    labels_json: Mapped[str] = mapped_column(Text)  # [{value, name, color}], ascending value
    spacing_json: Mapped[str] = mapped_column(Text)  # [x, y, z] mm
    shape_json: Mapped[str] = mapped_column(Text)  # [x, y, z] voxels
    device: Mapped[str] = mapped_column(String(16))
    timing_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    case: Mapped[Case] = relationship()
    structures: Mapped[list[RunStructure]] = relationship(order_by="RunStructure.position", cascade="all")


class RunStructure(Base):
    """One measured structure of a segmentation run (the union of its label values)."""

    __tablename__ = "run_structures"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_run_structure"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("segmentation_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    values_json: Mapped[str] = mapped_column(Text)  # [label value, ...]
    voxels: Mapped[int] = mapped_column(Integer)
    volume_ml: Mapped[float] = mapped_column(Float)
    axial_first: Mapped[int | None] = mapped_column(Integer)
    axial_last: Mapped[int | None] = mapped_column(Integer)
    max_axial_extent_mm: Mapped[float] = mapped_column(Float)


class StructureVerdict(Base):
    __tablename__ = "structure_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("segmentation_runs.id"), index=True)
    structure: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(80))
    # As for verdicts: superseded at most once, so one chain per reviewer and structure.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("structure_verdicts.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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


APPEND_ONLY_TABLES = (
    "verdicts",
    "case_notes",
    "region_explanations",
    "audit_events",
    "segmentation_runs",
    "run_structures",
    "structure_verdicts",
)
