"""Similar reviewed cases (a retrieval trace): the cases whose image this model's last feature
layer sees most alike, with what the AI called there and the verdicts this viewer may see. Shown
when asked; a row opens its case."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.types import ImageFeatures
from storage import reporting, studies
from ui import database, results
from ui.identity import reviewer, visible_reviewer
from ui.session import similar_table_key, similar_toggle_key
from ui.widgets.next_case import CASE_PAGE

SHOWN = 5
SEARCHED = 200  # nearest runs looked at for reviewed ones


def similar_cases_panel(
    run_id: int,
    input_sha256: str,
    features: ImageFeatures | None,
    model_id: str,
    weights_sha256: str,
    trained: bool,
    scope: str,
) -> None:
    """Under the case of ``run_id``, whose image is ``input_sha256`` (its other runs are the same
    image, never shown as similar)."""
    if not st.toggle("Show similar reviewed cases", key=similar_toggle_key(scope, run_id)):
        return
    if not trained:
        st.error(
            "UNTRAINED weights: these image features, and so which cases look alike, are meaningless "
            "(shown to test the interface)."
        )
    if features is None:
        st.caption("No image features were kept with this run (it was stored before they were): nothing to compare.")
        return
    index = results.similar_index(model_id, weights_sha256)
    only = visible_reviewer()
    shown: list = []
    with database.transaction() as db:
        index.refresh(db)
        hidden = studies.hidden_cases(db, reviewer())
        wanted = SEARCHED
        while True:  # widened until enough reviewed cases are found, or every run was looked at
            neighbours = index.search(features.embedding, wanted, exclude={run_id})
            reviewed = reporting.reviewed_runs(db, [n.run_id for n in neighbours], reviewer=only)
            shown = [
                (n, reviewed[n.run_id])
                for n in neighbours
                if n.run_id in reviewed
                and reviewed[n.run_id].input_sha256 != input_sha256
                and reviewed[n.run_id].case_id not in hidden
            ][:SHOWN]
            if len(shown) == SHOWN or wanted >= index.size:
                break
            wanted *= 4
    if not shown:
        st.caption(f"No reviewed case of this model's weights yet ({index.size} runs with features compared).")
        return
    table = pd.DataFrame(
        [
            {
                "image": results.kept_thumbnail(r.input_sha256),
                "case": r.case_id,
                "similarity": round(n.similarity, 2),
                "AI called": ", ".join(r.called) or "nothing (all below positive)",
                "verdicts": "; ".join(f"{item}: {verdict}" for _, item, verdict in r.verdicts[:6])
                or ("none of yours" if only is not None else "–"),
                **({"readers": r.readers} if only is None else {}),
                "analysed (UTC)": r.created_at.strftime("%Y-%m-%d"),
            }
            for n, r in shown
        ]
    )
    picked = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode=["single-row", "single-cell"],
        key=similar_table_key(scope, run_id),
        column_config={"image": st.column_config.ImageColumn("image", help="The kept image (blank when not kept)")},
        row_height=60,
    )
    st.caption(
        f"The {len(shown)} reviewed cases whose image this model's features find most alike (cosine similarity, "
        f"1 = the same image), of {index.size} runs with the same weights: which cases look alike to the model, "
        "not a diagnosis. "
        + ("Only your own verdicts are shown. " if only is not None else "")
        + "Click a row to open it."
    )
    chosen = picked.selection.rows or [cell[0] for cell in picked.selection.cells]
    if chosen:
        st.switch_page(CASE_PAGE, query_params={"case": str(shown[chosen[0]][1].case_id)})
