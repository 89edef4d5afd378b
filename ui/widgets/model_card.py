"""A trained classifier's card on screen: its headline beside the prediction, the card a click away.

What it was trained on and how it scored on slices it never saw, in the card's own figures
(``inference/models/trained/*.card.json``); the limits in plain words. Nothing here is computed:
it is what ``python -m inference train`` measured and wrote.
"""

from __future__ import annotations

import streamlit as st

from inference.models.cards import card_of
from inference.models.loader import LoadedModel
from pipelines.analyze import CaseAnalysis
from pipelines.classify import Uncertainty
from ui.text import md_escape

VOLUME_CAVEAT = (
    "its figures are for single slices: on a volume it scores every slice, including levels it never saw "
    "(the skull base, the vertex), so look at the slice that drives each class"
)


def volume_answer(
    labels: tuple[str, ...], scores: tuple[float, ...], method: str, exclusive: bool, trained: bool
) -> str:
    """The volume's answer in one line: for exclusive classes, the class whose volume score is
    highest, said with how the scores were made (per class over the slices, so they need not sum
    to one, and another class can be high on other slices)."""
    if not exclusive:
        return ""
    order = sorted(range(len(labels)), key=lambda i: -scores[i])
    top = order[0]
    untrained = "" if trained else " · :red[untrained weights: meaningless]"
    others = [labels[i] for i in order[1:] if scores[i] >= 0.5]
    also = f"; {', '.join(others)} also scored high on some slices" if others else ""
    return (
        f"**AI answer for the volume: {md_escape(labels[top])}** (volume score {scores[top]:.2f}){untrained} · "
        + md_escape(f"each class's score is the {method} of its slices, so the scores need not sum to one{also}")
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def headline(card: dict) -> str:
    """ "Trained on 5,383 public MRI slices; test accuracy 0.93 on 160; research use only"."""
    training = card["training"]
    seen = training["train"]["n"] + training["validation"]["n"]
    ev = card["evaluation"]
    return (
        f"Trained on {seen:,} public MRI slices; test accuracy {ev['accuracy']:.2f} on {ev['n']} slices it never "
        f"saw (balanced {ev['balanced_accuracy']:.2f}); research use only"
    )


def card_details(card: dict) -> None:
    ev = card["evaluation"]
    st.markdown(f"**{md_escape(card['display_name'])}** · `{card['model_id']}`")
    st.markdown(md_escape(card["intended_use"]))
    rows = [
        {
            "Class": c["label"],
            "Test slices": c["n"],
            "Sensitivity": _pct(c["sensitivity"]),
            "Specificity": _pct(c["specificity"]),
            "PPV": _pct(c["ppv"]),
            "AUC (95% CI)": "n/a"
            if c["auc"] is None
            else f"{c['auc']:.3f} ({c['auc_95ci']['low']:.3f}-{c['auc_95ci']['high']:.3f})"
            if c["auc_95ci"]
            else f"{c['auc']:.3f}",
        }
        for c in ev["classes"]
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    confusion = [
        {"Truth \\ AI": truth, **{pred: n for pred, n in zip(ev["labels"], row, strict=True)}}
        for truth, row in zip(ev["labels"], ev["confusion"], strict=True)
    ]
    st.caption("Confusion matrix on the test split (rows: the truth; columns: the AI's answer)")
    st.dataframe(confusion, hide_index=True, width="stretch")
    calibration = card["calibration"]
    st.caption(
        md_escape(
            f"Macro AUC {_pct(ev['macro_auc'])}. Calibration: {calibration['method']}, T = "
            f"{calibration['temperature']:.3f} ({calibration['fitted_on']}); expected calibration error "
            f"{ev['ece_before_temperature']:.3f} before, {ev['ece_after_temperature']:.3f} after."
        )
    )
    training = card["training"]
    per_class = ", ".join(
        f"{label} {training['train']['per_class'][label] + training['validation']['per_class'][label]:,}"
        for label in card["labels"]
    )
    st.caption(
        md_escape(
            f"Training data: {training['source']}; {per_class}. {training['epochs_run']} epochs "
            f"(best {training['best_epoch']}), seed {training['seed']}, {training['device']}, "
            f"{training['wall_s'] / 60:.0f} min. Weights sha256 {card['weights']['sha256'][:12]}…"
        )
    )
    st.markdown("**Limits**\n" + "\n".join(f"- {md_escape(text)}" for text in card["limitations"]))


def uncertainty_text(
    uncertainty: Uncertainty, only_flagged: bool = False, noun: str = "class", trained: bool = True
) -> str:
    """The uncertainty in one line (test-time augmentation, an ensemble's checkpoints, or both):
    each class's mean ± standard deviation, flagged where the interval crosses a band boundary."""
    flagged = sum(uncertainty.crosses_band)
    verdict = (
        f"{flagged} {noun}{('es' if noun.endswith('s') else 's') if flagged != 1 else ''} could fall in another band: "
        "read this case with care"
        if flagged
        else f"stable: no {noun} leaves its band"
    )
    classes = "; ".join(
        md_escape(f"{label} {m:.2f} ± {s:.2f}") + (" :orange[(crosses a band)]" if crosses else "")
        for label, m, s, crosses in zip(
            uncertainty.labels, uncertainty.mean, uncertainty.std, uncertainty.crosses_band, strict=True
        )
        if crosses or not only_flagged  # many findings: those that could change band, the rest on the chart
    )
    how = [f"{len(uncertainty.checkpoints)} checkpoints of this model"] if uncertainty.checkpoints else []
    if len(uncertainty.views) > 1:
        how.append(f"test-time augmentation ({', '.join(uncertainty.views)})")
    untrained = "" if trained else ":red[Untrained weights, meaningless:] "
    return untrained + md_escape(f"{' × '.join(how).capitalize()}: ") + classes + f" · {verdict}"


def prediction_and_card(loaded: LoadedModel, analysis: CaseAnalysis) -> None:
    """The answer of a model of exclusive classes, its confidence, and its card."""
    spec = loaded.classifier_spec
    top = max(analysis.prediction.findings, key=lambda f: f.score)
    if spec.exclusive:
        untrained = "" if loaded.trained else " · :red[untrained weights: meaningless]"
        band = "nothing found: not banded" if top.label in spec.normal_labels else f"{top.band.value} band"
        st.markdown(f"**AI prediction: {md_escape(top.label)}** · confidence {top.score:.2f} ({band}){untrained}")
    if analysis.uncertainty is not None:
        st.caption(uncertainty_text(analysis.uncertainty, trained=loaded.trained))
    card = card_of(spec)
    if card is None:
        st.caption("This model has no model card: nothing says how it was trained or how it scored.")
        return
    st.caption(md_escape(headline(card)))
    with st.expander("Model card: what it was trained on, how it scored, its limits"):
        card_details(card)
