"""The command line (``python -m inference ...``): analyse, segment and measure from a shell.

May import every lower layer; never Streamlit or ``ui``."""
