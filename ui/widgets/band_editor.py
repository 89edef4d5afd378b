"""Admins (signed in) change the threshold bands: a new version, validated, saved, audited."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import ConfigError
from core.settings import load_settings
from inference.images.bands import BandConfig, parse_band_config, save_band_config, to_document
from storage import audit
from ui import database, models
from ui.identity import auth_configured, current_reviewer
from ui.session import BANDS_PROPOSAL


def _new_config(
    current: BandConfig, table: pd.DataFrame, version: str, validated_with: tuple[str, str] | None
) -> BandConfig:
    """The bands with the table's thresholds. Saved from a calibration proposal they are recorded
    as validated on its model and weights; edited by hand, they are no longer validated."""
    document = to_document(current)
    entry = document["modalities"][models.classifier_spec().bands_key]
    for row in table.to_dict("records"):
        entry["findings"][row["finding"]] = {"low": row["low"], "high": row["high"], "critical": row["critical"]}
    entry.pop("validated_with", None)
    if validated_with is not None:
        entry["validated_with"] = {"model_id": validated_with[0], "weights_sha256": validated_with[1]}
    document["version"] = version.strip()
    return parse_band_config(document, "edited in the app")


def edit_bands_section(current: BandConfig, table: pd.DataFrame) -> None:
    with database.transaction() as session:
        changes = audit.events_of_kind(session, "bands_changed")
    if changes:
        st.caption(
            "Band changes: "
            + "; ".join(
                f"{c.at:%Y-%m-%d %H:%M} UTC by {c.actor}: {c.detail.get('previous')} → {c.detail.get('new')}"
                for c in changes
            )
        )
    who = current_reviewer()
    if not auth_configured() or who is None or not who.is_admin:
        st.caption("Only a signed-in admin can change the bands (sign-in must be configured).")
        return
    settings = load_settings()
    proposal = st.session_state.get(BANDS_PROPOSAL)
    start = table[["finding", "low", "high", "critical"]]
    if proposal:
        start = start.assign(
            **{
                name: [proposal["findings"].get(f, {}).get(name, v) for f, v in zip(start["finding"], start[name])]
                for name in ("low", "high", "critical")
            }
        )
    with st.expander("Change the bands (admin)", expanded=bool(proposal)):
        if proposal:
            st.info(
                f"Starting from the proposal of the {proposal['source']} ({len(proposal['findings'])} finding(s)); "
                "the others keep the bands in force. Review it, name the version and save, or leave it."
            )
        edited = st.data_editor(
            start,
            hide_index=True,
            disabled=["finding"],
            key="bands_editor::proposal" if proposal else "bands_editor",
        )
        version = st.text_input("New version name", placeholder=f"after {current.version}", key="bands_version")
        if st.button("Save as the bands in force", type="primary", key="bands_save"):
            if not version.strip() or version.strip() == current.version:
                st.error("Give the new bands a version name different from the one in force.")
                return
            try:
                new = _new_config(current, edited, version, tuple(proposal["validated_with"]) if proposal else None)
            except ConfigError as exc:
                st.error(str(exc))
                return
            save_band_config(new, settings.edited_bands_file)
            with database.transaction() as session:
                audit.record_event(
                    session,
                    "bands_changed",
                    who.identity,
                    previous=current.identity,
                    new=new.identity,
                    starting_from=proposal["source"] if proposal else "the bands in force",
                )
            st.session_state.pop(BANDS_PROPOSAL, None)
            st.success(f"Bands {new.version} are now in force; new analyses record them.")


def proposal_button(findings: dict[str, dict[str, float]], source: str, validated_with: tuple[str, str]) -> None:
    """For a signed-in admin, a button taking proposed thresholds (finding -> low, high, critical)
    to the band editor on the Settings page, where they are reviewed and saved as a new bands
    version (audited with ``source``), recorded as validated on ``validated_with`` (model id,
    weights sha256); nothing changes the bands in force before that."""
    who = current_reviewer()
    if not auth_configured() or who is None or not who.is_admin:
        st.caption(
            "A signed-in admin can take this proposal to the band editor; nothing here changes the bands in force."
        )
        return
    if st.button(f"Review these thresholds in the band editor ({len(findings)} finding(s))", key="an_to_bands"):
        st.session_state[BANDS_PROPOSAL] = {"source": source, "findings": findings, "validated_with": validated_with}
        st.switch_page("pages/settings.py")
