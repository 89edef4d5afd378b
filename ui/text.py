"""Showing user-typed text as text: nothing a reviewer types is rendered as HTML or Markdown."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&$:])")


def md_escape(text: str) -> str:
    """Escape Markdown (and the HTML-ish characters Streamlit's Markdown accepts)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
