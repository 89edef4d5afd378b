"""The pieces the pages are built from (viewers, verdict panels, charts, status lines), one
mechanism per job. May import ``ui`` and every lower layer."""
