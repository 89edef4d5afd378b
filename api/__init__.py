"""The HTTP inference API (FastAPI under uvicorn): predictions, heatmaps single and in batches,
health and Prometheus metrics, behind bearer tokens (static API keys for service accounts, or
access tokens from the app's own sign-in provider), loopback only when neither is configured.

    python -m inference serve [--host 127.0.0.1] [--port 8000] [--secrets FILE]

Owns the routes, the process's loaded models, access and metrics; the work itself is the app's
(``pipelines``), with the same limits and messages. May import ``core``, ``inference``, ``xai``,
``storage`` and ``pipelines``; never Streamlit, ``ui`` or ``cli``. Only this package imports
FastAPI."""
