"""What is kept: the SQLAlchemy models and Alembic migrations, the append-only repository of
runs, verdicts, notes and audit events, and the de-identified image store.

May import ``core`` alone (results reach it as core types); never inference, xai or above."""
