"""A component that sends a value every 40 ms without any user action."""

from pathlib import Path

import streamlit.components.v1 as components

ticker = components.declare_component("ticker", path=str(Path(__file__).parent))
