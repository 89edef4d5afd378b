"""Everything Streamlit: caching of models and results (the only place caching lives), session
state, identity and sign-in, and the widgets the pages are built from.

May import every lower layer; nothing but ``app.py`` and ``pages/`` imports ``ui``."""
