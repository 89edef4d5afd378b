"""``serve``: the HTTP inference API (``api``) under uvicorn.

python -m inference serve [--host 127.0.0.1] [--port 8000] [--secrets FILE] [--allow-untrained]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from cli.options import allow_untrained_option


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="the HTTP inference API (predictions, heatmaps, health, metrics)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (another than loopback needs access)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--secrets",
        type=Path,
        help="the secrets file with [api] keys and/or the app's [auth] sign-in (default: .streamlit/secrets.toml)",
    )
    serve.add_argument("--no-preload", action="store_true", help="load the chest X-ray model on first use")
    allow_untrained_option(serve, "scores and heatmaps")
    worker = commands.add_parser("worker", help="a worker for the app's long jobs (segmentation), on WORKER_BROKER_URL")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (each uses every core: 1 per machine)")
    worker.add_argument("--name", help="this worker's name in the logs (default: review)")


def serve_command(args: argparse.Namespace, out: TextIO) -> int:
    from api.server import serve

    serve(args.host, args.port, args.secrets, allow_untrained=args.allow_untrained, preload=not args.no_preload)
    return 0


def worker_command(args: argparse.Namespace, out: TextIO) -> int:
    from workers.worker import run_worker

    run_worker(concurrency=args.concurrency, loglevel="info" if args.verbose else "warning", name=args.name)
    return 0
