"""Long jobs on Celery workers over Redis, when ``WORKER_BROKER_URL`` is set: a worker
(``python -m inference worker``) loads each model once and runs the jobs every app replica (and
the API) submits; the result is shared by key (input sha256, model and weights), stored once in
the shared database and image store. Without ``WORKER_BROKER_URL`` the app runs its jobs in its
own threads (``core.jobs``) and none of this is imported.

Owns the Celery app and its tasks (``tasks``), the client the pages and the API poll
(``client``) and the worker's start (``worker``). May import ``core``, ``inference``, ``xai``,
``storage`` and ``pipelines``; never Streamlit, ``ui``, ``api`` or ``cli``. Only this package
imports Celery and redis."""
