"""The verdict panel as a browser test sees it: one keyed row per finding or structure."""

from __future__ import annotations

import re

from tests.e2e.conftest import key_class
from ui.session import verdict_row_key

VERDICT_NAMES = {"agree": "Agree", "disagree": "Disagree", "unsure": "Unsure"}


def rows(page, scope: str, noun: str = "finding"):
    prefix = verdict_row_key(scope, noun, 0).removesuffix("0")
    return page.locator(f"[class*='{key_class(prefix)}']")


def row(page, scope: str, index: int, noun: str = "finding"):
    return page.locator(f".{key_class(verdict_row_key(scope, noun, index))}")


def item_name(row_locator) -> str:
    """The finding or structure a row is about: the bold text of its summary."""
    return row_locator.locator("strong").first.inner_text().strip()


def button(row_locator, verdict: str):
    # The chosen button also shows a check-mark icon, so match the label at the end of the name.
    return row_locator.get_by_role("button", name=re.compile(rf"(^|\W){VERDICT_NAMES[verdict]}$"))


def chosen(row_locator):
    """The row's chosen button (drawn as primary): exactly one once a verdict is stored. (Streamlit
    also keeps a hidden copy of each button to measure its width: only visible ones count.)"""
    return row_locator.locator("[data-testid='stBaseButton-primary']").filter(visible=True)
