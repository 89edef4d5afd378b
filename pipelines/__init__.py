"""Work that joins models, explanations and storage: analysing an upload, the bodies of
background jobs, kept volumes, and the layers the browser viewer draws.

May import ``core``, ``inference``, ``xai`` and ``storage``; never Streamlit, ui or cli."""
