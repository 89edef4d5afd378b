"""The one verdict panel: Agree / Disagree / Unsure on every item of a stored run (the findings of
an X-ray run, the structures of a segmentation run), notes, and the append-only history.

Why buttons and forms, not a stateful selector: a verdict is stored only from an event the
reviewer caused, with its value fixed when the button was drawn. An earlier panel used
``st.segmented_control`` and reset its state from the database on every rerun; when clicks came
faster than reruns, the browser sent back a stale selection, Streamlit saw a "change" and the
change handler stored it: verdicts nobody clicked. A button is a one-shot trigger (Streamlit fires
its callback once per click and never re-sends it), and its callback's arguments (run, item,
verdict, reviewer) are constants of that button, so a stored verdict can only be one that was
clicked. Notes go through forms for the same reason: only a submit stores them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from core.errors import ReviewError
from core.types import Finding
from core.vocabulary import Band, Verdict
from storage import repository
from storage.reporting import entry_numbers
from ui import database
from ui.identity import current_reviewer, reviewer, visible_reviewer
from ui.session import (
    case_note_key,
    case_note_save_key,
    keyboard_key,
    note_save_key,
    note_text_key,
    reader_label_key,
    selected_key,
    verdict_key,
    verdict_row_key,
)
from ui.text import md_escape
from ui.widgets.charts import BAND_SWATCHES, score_text
from ui.widgets.dicom_exports import send_when_complete

log = logging.getLogger(__name__)

CHOICES = tuple((v.value, v.label) for v in Verdict)


@dataclass(frozen=True)
class VerdictItem:
    """One thing a verdict is given on: ``name`` is what is stored, ``summary`` (markdown) is shown.
    ``negative`` items (findings in the negative band) are grouped behind one explicit bulk action."""

    name: str
    summary: str
    negative: bool = False


# Keys the reading keyboard uses (Streamlit reserves C and R; shortcuts are ignored while typing).
KEY_AGREE, KEY_DISAGREE, KEY_UNSURE = "A", "D", "U"
KEY_NEXT_ITEM, KEY_PREVIOUS_ITEM = "J", "K"
VERDICT_KEYS = {Verdict.AGREE.value: KEY_AGREE, Verdict.DISAGREE.value: KEY_DISAGREE, Verdict.UNSURE.value: KEY_UNSURE}


@dataclass(frozen=True)
class VerdictKind:
    """What differs between kinds of run in the panel: the noun for an item (finding, structure),
    and the heatmap on screen when the panel was drawn, ``(method, finding)``, stored with a
    verdict on that finding. Both kinds read and append through the same repository functions.

    ``current(session, run_id, reviewer)`` gives item name -> (verdict value, note) for that reviewer;
    ``record(session, run_id, item, verdict, reviewer, note)`` appends a verdict.
    """

    noun: str
    heatmap: tuple[str, str] | None = None
    classes: tuple[str, ...] = ()  # exclusive classes: a Disagree can name the reader's own class

    @property
    def feedback_key(self) -> str:
        return f"{self.noun}_verdict_feedback"

    def current(self, session: Session, run_id: int, name: str) -> dict[str, tuple[str, str, str | None]]:
        """item -> (verdict value, note, the reader's own class or None)."""
        return {
            v.item: (v.verdict.value, v.note, v.reader_label)
            for v in repository.current_verdicts(session, run_id, name)
        }

    def record(
        self, session: Session, run_id: int, item: str, verdict: str, name: str, note: str, label: str | None = None
    ) -> None:
        # The method only for the finding whose heatmap was on screen: a verdict on another row
        # was not given beside its heatmap.
        cam_method = self.heatmap[0] if self.heatmap is not None and self.heatmap[1] == item else None
        repository.record_verdict(session, run_id, item, Verdict(verdict), name, note, cam_method, label)


def exclusive_classes(model_id: str) -> tuple[str, ...]:
    """The classes of a registered classifier of exclusive classes (a Disagree can name one); ()
    for independent labels (the chest X-ray) or a model no longer registered."""
    from inference.models.registry import MODELS
    from inference.models.spec import ClassifierSpec

    spec = MODELS.get(model_id)
    return spec.labels if isinstance(spec, ClassifierSpec) and spec.exclusive else ()


def finding_kind(heatmap: tuple[str, str] | None, classes: tuple[str, ...] = ()) -> VerdictKind:
    """Findings of a classification run; ``heatmap`` is (method, finding) of the heatmap on screen;
    ``classes``: the model's exclusive classes, where it has them (a Disagree can then say which)."""
    return VerdictKind("finding", heatmap, classes)


STRUCTURES = VerdictKind("structure")


def _say(kind: VerdictKind, run_id: int, level: str, message: str) -> None:
    """What the last action on the run did ("ok", "info" or "error"). It stays on screen until the
    next action replaces it: a rerun that overtakes the action's own run (the viewer asking for
    pixels, another click) must not take the confirmation away, nor move the boxes below it."""
    st.session_state[kind.feedback_key] = (run_id, level, message)


def _same_reviewer(kind: VerdictKind, run_id: int, drawn_for: str) -> bool:
    """The panel was drawn for one reviewer; refuse a click if the session now belongs to another."""
    if reviewer() == drawn_for:
        return True
    _say(
        kind,
        run_id,
        "error",
        "You signed in or changed name after this page was drawn; nothing was saved. Check the name and click again.",
    )
    return False


def _store(
    kind: VerdictKind, run_id: int, item: str, verdict: str, name: str, note: str | None, label: str | None = None
) -> bool:
    """Append one verdict; ``note=None`` keeps the note of the reviewer's current verdict, and a
    Disagree keeps the class the reader named with their current Disagree unless ``label`` names one."""
    try:
        with database.transaction() as session:
            carries_label = bool(kind.classes) and label is None and verdict == Verdict.DISAGREE.value
            if note is None or carries_label:
                previous = kind.current(session, run_id, name).get(item)
                if note is None:
                    note = previous[1] if previous else ""
                if carries_label and previous and previous[0] == verdict:
                    label = previous[2]
            kind.record(session, run_id, item, verdict, name, note, label)
    except ReviewError as exc:
        _say(kind, run_id, "error", str(exc))
        return False
    said = f"Saved: {item} — {verdict}" + (f": it is {label}" if label else "") + (" with note." if note else ".")
    sending = send_when_complete(run_id, name)
    _say(kind, run_id, "ok", f"{said} {sending}" if sending else said)
    return True


def _on_reader_label(kind: VerdictKind, run_id: int, item: str, label: str, name: str) -> None:
    """ "It is ...": the reader's own class, stored with their Disagree on ``item``."""
    if _same_reviewer(kind, run_id, name):
        _store(kind, run_id, item, Verdict.DISAGREE.value, name, None, label)


def selected_item(kind: VerdictKind, run_id: int, names: Sequence[str], scope: str) -> str | None:
    """The item being judged: the panel's selection (J / K, the list, a row's verdict), which the
    heatmap, region SHAP and the note box follow. A run opens on its first item without the
    reviewer's verdict."""
    key = selected_key(scope, kind.noun, run_id)
    if not names:
        return None
    if st.session_state.get(key) not in names:
        name = reviewer()
        with database.transaction() as session:
            mine = kind.current(session, run_id, name) if name else {}
        st.session_state[key] = names[_next_open(names, mine, -1)]
    return str(st.session_state[key])


def selection_list(kind: VerdictKind, run_id: int, names: Sequence[str], scope: str, label: str) -> str | None:
    """The list of the selection, drawn beside what follows it (the heatmap) and in the same run
    as the panel (its fragment, or the page's run), which then draws no list of its own
    (``list_drawn``). One list, never two of the same selection: the browser sends every list's
    value with every rerun, and a list that had not yet caught up with a choice made in the other
    (a CAM method changed right after a finding was picked) sent its old value back, which undid
    the choice."""
    current = selected_item(kind, run_id, names, scope)
    if current is None:
        return None
    st.selectbox(label, list(names), key=selected_key(scope, kind.noun, run_id))
    return current


def _on_click(kind: VerdictKind, run_id: int, item: str, verdict: str, name: str, state_key: str) -> None:
    """A row's verdict button: its item and verdict are constants of the button; it also selects the row."""
    if _same_reviewer(kind, run_id, name) and _store(kind, run_id, item, verdict, name, None):
        st.session_state[state_key] = item


def _on_key_verdict(kind: VerdictKind, run_id: int, verdict: str, name: str, state_key: str, names: tuple) -> None:
    """A / D / U: the verdict goes to the item the selector showed when the key was pressed. The
    browser sends the selector's value with the key press itself, so a press that overtakes a
    selection change still lands on the item that was on screen, never on one that was not."""
    item = st.session_state.get(state_key)
    log.debug("key verdict %s on %r (run %d)", verdict, item, run_id)
    if item not in names:
        _say(kind, run_id, "info", f"Choose the {kind.noun} first; nothing was saved.")
        return
    if not _same_reviewer(kind, run_id, name):
        return
    if _store(kind, run_id, item, verdict, name, None):
        try:
            with database.transaction() as session:
                mine = kind.current(session, run_id, name)
        except ReviewError:
            return
        st.session_state[state_key] = names[_next_open(names, mine, names.index(item))]


def _step(state_key: str, names: tuple, delta: int) -> None:
    """J / K: from the item the selector showed, one step on (wrapping)."""
    current = st.session_state.get(state_key)
    index = names.index(current) if current in names else 0
    st.session_state[state_key] = names[(index + delta) % len(names)]


def _on_agree_negatives(kind: VerdictKind, run_id: int, items: tuple[str, ...], name: str) -> None:
    """One explicit action, stored as one verdict per negative finding, all or none."""
    if not _same_reviewer(kind, run_id, name):
        return
    try:
        with database.transaction() as session:
            mine = kind.current(session, run_id, name)
            for item in items:
                kind.record(session, run_id, item, Verdict.AGREE.value, name, mine.get(item, ("", "", None))[1])
    except ReviewError as exc:
        _say(kind, run_id, "error", str(exc))
        return
    _say(
        kind,
        run_id,
        "ok",
        f"Saved: agree on {len(items)} negative finding{'s' if len(items) != 1 else ''} ({', '.join(items)}).",
    )


def _on_note(kind: VerdictKind, run_id: int, name: str, item: str, text_key: str) -> None:
    """The note goes to the item the form named when it was drawn: the selected one."""
    if not _same_reviewer(kind, run_id, name):
        return
    text = st.session_state.get(text_key, "")
    try:
        with database.transaction() as session:
            current = kind.current(session, run_id, name).get(item)
    except ReviewError as exc:
        _say(kind, run_id, "error", str(exc))
        return
    if current is None:
        _say(
            kind,
            run_id,
            "info",
            f"Choose Agree, Disagree or Unsure for {item} first, then add the note (it is kept below).",
        )
        return
    if _store(kind, run_id, item, current[0], name, text):
        st.session_state[text_key] = ""  # saved: the box empties; on an error the text stays to be fixed


def _save_case_note(kind: VerdictKind, run_id: int, name: str, key: str) -> None:
    if not _same_reviewer(kind, run_id, name):
        return
    try:
        with database.transaction() as session:
            saved = repository.record_case_note(session, run_id, st.session_state.get(key, ""), name)
        if saved:
            _say(kind, run_id, "ok", "Case note saved.")
        else:
            _say(kind, run_id, "info", "The case note is unchanged.")
    except ReviewError as exc:  # the typed text stays in the box to be fixed
        _say(kind, run_id, "error", str(exc))


def _show_feedback(kind: VerdictKind, run_id: int) -> None:
    """The last action's outcome, in a slot drawn on every run (empty before any action), so that
    the boxes below it keep their place: a form whose box moved is re-created, and loses what
    the reader had typed in it."""
    slot = st.container()
    feedback = st.session_state.get(kind.feedback_key)
    if feedback is not None and feedback[0] == run_id:
        _, level, message = feedback
        {"ok": slot.success, "error": slot.error, "info": slot.info}[level](message)


def verdict_panel_here(
    kind: VerdictKind,
    run_id: int,
    items: Sequence[VerdictItem],
    scope: str,
    title: str,
    case_note: bool = False,
    list_drawn: bool = False,
) -> None:
    """Agree / Disagree / Unsure for every item of a stored run, and notes. Each click is stored at
    once as a new row. ``scope`` (the page) keeps two pages' boxes apart. Drawn in the caller's
    run: a page that shows what follows the selection (the heatmap) draws both in one run (one
    fragment, or the page), so that a new selection reruns both; ``verdict_panel`` is the panel in
    a fragment of its own.

    One item is selected: A / D / U give it a verdict (then the next item without one is selected),
    J / K move the selection. Negative findings are grouped, with "Agree with all negative findings"
    as one explicit action stored as one verdict each."""
    st.subheader(title)
    who = current_reviewer()
    name = who.identity if who else ""
    if who is None:
        st.info("Enter your name in the sidebar to record verdicts.")
    else:  # the sidebar that names the reader may be folded away
        st.caption(f"Recorded as {md_escape(who.display_name)}")
    with database.transaction() as session:
        mine = kind.current(session, run_id, name) if name else {}
    _show_feedback(kind, run_id)
    state_key = selected_key(scope, kind.noun, run_id)
    names = tuple(item.name for item in items)
    selected_item(kind, run_id, names, scope)
    if names:
        _keyboard_bar(kind, run_id, items, scope, name, state_key, list_drawn)
    selected = names.index(st.session_state[state_key]) if names else -1
    negatives = [i for i, item in enumerate(items) if item.negative]
    for index, item in enumerate(items):
        if not item.negative:
            _row(kind, run_id, item, index, scope, name, mine, index == selected, state_key)
    if negatives:
        open_ = [items[i].name for i in negatives if items[i].name not in mine]
        agreed = sum(mine.get(items[i].name, ("",))[0] == Verdict.AGREE.value for i in negatives)
        label = f"Negative findings ({len(negatives)}): {agreed} agreed, {len(open_)} without your verdict"
        with st.expander(label, expanded=selected in negatives):
            if open_:
                if len(open_) == len(negatives):
                    bulk = f"Agree with all {len(open_)} negative findings" if len(open_) > 1 else "Agree with it"
                else:
                    bulk = f"Agree with the {len(open_)} without your verdict"
                st.button(
                    bulk,
                    key=f"{scope}::{kind.noun}::{run_id}::agree_negatives::{len(open_)}",
                    icon=":material/done_all:",
                    disabled=not name,
                    on_click=_on_agree_negatives,
                    args=(kind, run_id, tuple(open_), name),
                    help="Stored as one Agree per negative finding, each with the model, weights and bands you see.",
                )
            for index in negatives:
                _row(kind, run_id, items[index], index, scope, name, mine, index == selected, state_key)
    if names:
        _note_form(kind, run_id, names[selected], scope, name)
    if case_note:
        _case_note(kind, run_id, name, scope)


verdict_panel = st.fragment(verdict_panel_here)


def _next_open(names: Sequence[str], mine: dict, after: int) -> int:
    """The first item after ``after`` without the reviewer's verdict (wrapping), else the next one."""
    count = len(names)
    for step in range(1, count + 1):
        index = (after + step) % count
        if names[index] not in mine:
            return index
    return (after + 1) % count if count else 0


def _keyboard_bar(kind, run_id, items, scope, name, state_key, list_drawn: bool) -> None:
    """A / D / U, J / K, and the list of the selection unless the page drew it (``selection_list``)."""
    names = tuple(item.name for item in items)
    summaries = {item.name: item.summary for item in items}
    bar = st.container(key=f"{scope}-{kind.noun}-keys", horizontal=True, vertical_alignment="bottom", gap="small")
    if not list_drawn:
        bar.selectbox(
            f"Selected {kind.noun} (J / K to move)",
            names,
            key=state_key,
            format_func=lambda n: f"{names.index(n) + 1} of {len(names)}: {n}",
            width=300,
        )
    for value, text in CHOICES:
        bar.button(
            text,
            # One button per verdict and run: the item is read from that run's selector, whose
            # value the browser sends with the key press, so it is the item that was on screen.
            key=keyboard_key(scope, kind.noun, run_id, value),
            shortcut=VERDICT_KEYS[value],
            disabled=not name,
            on_click=_on_key_verdict,
            args=(kind, run_id, value, name, state_key, names),
            help=f"{text} on the selected {kind.noun}, then select the next {kind.noun} without your verdict",
        )
    for text, shortcut, icon, delta in (
        ("Previous", KEY_PREVIOUS_ITEM, "keyboard_arrow_up", -1),
        ("Next", KEY_NEXT_ITEM, "keyboard_arrow_down", 1),
    ):
        bar.button(
            text,
            key=keyboard_key(scope, kind.noun, run_id, text.lower()),
            shortcut=shortcut,
            icon=f":material/{icon}:",
            on_click=_step,
            args=(state_key, names, delta),
        )
    selected = st.session_state.get(state_key)
    if selected in summaries:
        st.markdown(f"Selected: {summaries[selected]}")


def _row(kind, run_id, item: VerdictItem, index: int, scope, name, mine, selected: bool, state_key) -> None:
    verdict, note, label = mine.get(item.name, (None, "", None))
    # The keyed container holds one item's row (its CSS class names it, for browser tests).
    row = st.container(key=verdict_row_key(scope, kind.noun, index)).columns(
        [2.6, 3.6, 2.6], vertical_alignment="center"
    )
    marker = ":blue[:material/arrow_right:] " if selected else ""
    row[0].markdown(marker + item.summary)
    buttons = row[1].container(horizontal=True, gap="xsmall")
    for value, text in CHOICES:
        chosen = verdict == value
        buttons.button(
            text,
            key=verdict_key(scope, kind.noun, run_id, item.name, value),
            type="primary" if chosen else "secondary",
            # Every button has an icon of the same size, so choosing one never shifts its
            # neighbours under a fast click; the chosen one is also primary.
            icon=":material/check_circle:" if chosen else ":material/radio_button_unchecked:",
            help=f"{text}: your verdict on {item.name}" + (" (your current verdict)" if chosen else ""),
            disabled=not name,
            on_click=_on_click,
            args=(kind, run_id, item.name, value, name, state_key),
        )
    if kind.classes and verdict == Verdict.DISAGREE.value:
        _reader_label_buttons(kind, run_id, item.name, label, scope, name, row[2])
    if note:
        row[2].caption(f"Note: {md_escape(note)}")


def _reader_label_buttons(kind: VerdictKind, run_id: int, item: str, label: str | None, scope, name, where) -> None:
    """After a Disagree with a class of exclusive classes: which class the reader says it is, one
    button per other class (one-shot triggers with their class fixed when drawn, as the verdicts)."""
    line = where.container(horizontal=True, gap="xsmall", vertical_alignment="center")
    line.markdown("It is:" if label else ":orange[It is:]")
    for other in kind.classes:
        if other == item:
            continue
        chosen = other == label
        line.button(
            other,
            key=reader_label_key(scope, run_id, item, other),
            type="primary" if chosen else "secondary",
            icon=":material/check_circle:" if chosen else None,
            help=f"Your reading: {other}, not {item}" + (" (stored)" if chosen else ""),
            disabled=not name,
            on_click=_on_reader_label,
            args=(kind, run_id, item, other, name),
        )


def _note_form(kind: VerdictKind, run_id: int, item: str, scope: str, name: str) -> None:
    """A note on the selected item, named in the box's label: the item stored is the one named."""
    text_key = note_text_key(scope, kind.noun, run_id, name)
    with st.form(f"{scope}::{kind.noun}_note_form::{run_id}", border=False, enter_to_submit=True):
        st.text_input(
            f"Note on the selected {kind.noun}, {item} (press Enter to save it with your verdict)",
            key=text_key,
            disabled=not name,
        )
        st.form_submit_button(
            f"Save note on {item}",
            key=note_save_key(scope, kind.noun, run_id),
            disabled=not name,
            on_click=_on_note,
            args=(kind, run_id, name, item, text_key),
        )


def _case_note(kind: VerdictKind, run_id: int, name: str, scope: str) -> None:
    key = case_note_key(scope, run_id, name)
    if name and key not in st.session_state:
        with database.transaction() as session:
            current = repository.current_case_note(session, run_id, name)
        st.session_state[key] = current.note if current else ""
    st.text_area("Case note", key=key, disabled=not name)
    st.button(
        "Save case note",
        key=case_note_save_key(scope, run_id),
        disabled=not name,
        on_click=_save_case_note,
        args=(kind, run_id, name, key),
    )


def finding_items(findings: Sequence[Finding], trained: bool, answer: str | None = None) -> list[VerdictItem]:
    """In the order given (``rank_findings``: critical and positive first); negative ones are grouped,
    except ``answer``, the AI's answer among exclusive classes ("No tumour" is negative, and the
    answer to judge first)."""
    return [
        VerdictItem(
            f.label,
            f"{BAND_SWATCHES[f.band]} **{md_escape(f.label)}** · {score_text(f.score, trained)} · "
            + ("the AI's answer" if f.label == answer and f.band is Band.NEGATIVE else f.band.value),
            negative=f.band is Band.NEGATIVE and f.label != answer,
        )
        for f in findings
    ]


def finding_verdict_panel(
    run_id: int,
    findings: Sequence[Finding],
    trained: bool,
    heatmap: tuple[str, str] | None,
    scope: str,
    classes: tuple[str, ...] = (),
) -> None:
    """The findings' panel, drawn in the caller's fragment after the heatmap it follows and its
    ``selection_list``; ``heatmap`` is (method, finding) of the heatmap on screen, None without one;
    ``classes``: the model's exclusive classes, so that a Disagree can name the reader's own."""
    answer = max(findings, key=lambda f: f.score).label if classes and findings else None
    verdict_panel_here(
        finding_kind(heatmap, classes),
        run_id,
        finding_items(findings, trained, answer),
        scope,
        "Your verdicts",
        case_note=True,
        list_drawn=True,
    )


def blinding_caption() -> None:
    """Say whose verdicts a history or export holds (independent reads are the point)."""
    if visible_reviewer() is None:
        st.caption("Everyone's verdicts are shown (you are an admin, or the app is in open mode).")
    else:
        st.caption(
            "Only your own verdicts and notes are shown: readers read independently; the lead (admin) sees everyone's."
        )


def history_table(run_id: int, noun: str = "finding", case_notes: bool = True) -> None:
    """Every verdict (and case note) the viewer may see for the run, oldest first (text, never
    HTML): the one history table of every run kind; ``noun`` heads the items' column."""
    only = visible_reviewer()
    with database.transaction() as session:
        verdicts = repository.verdict_history(session, run_id, reviewer=only)
        notes = repository.case_note_history(session, run_id, reviewer=only) if case_notes else []
        names = repository.reviewer_names(session)
    blinding_caption()
    if not verdicts and not notes:
        st.caption("No verdicts recorded yet.")
        return
    # Numbered per reviewer: a reader's entries are #1, #2..., whatever the others wrote.
    numbers = entry_numbers((v.verdict_id, v.reviewer) for v in verdicts)
    note_numbers = entry_numbers((n.note_id, n.reviewer) for n in notes)
    rows = [
        {
            "time (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "reviewer": names.get(v.reviewer, v.reviewer),
            noun: v.item,
            "verdict": v.verdict.value + (f": it is {v.reader_label}" if v.reader_label else ""),
            "note": v.note,
            "replaces entry": f"#{numbers[v.supersedes_id]}" if v.supersedes_id in numbers else "",
            "entry": f"#{numbers[v.verdict_id]}",
        }
        for v in verdicts
    ] + [
        {
            "time (UTC)": n.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "reviewer": names.get(n.reviewer, n.reviewer),
            noun: "(case note)",
            "verdict": "",
            "note": n.note,
            "replaces entry": f"note #{note_numbers[n.supersedes_id]}" if n.supersedes_id in note_numbers else "",
            "entry": f"note #{note_numbers[n.note_id]}",
        }
        for n in notes
    ]
    frame = pd.DataFrame(rows).sort_values("time (UTC)", kind="stable")
    st.dataframe(frame, hide_index=True)
