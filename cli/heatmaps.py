"""Heatmap overlays written by the commands that take ``--cam-dir``."""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import ReviewError


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def write_cams(cam_dir: Path, index: int, source: Path, analysis, colormap: str = "jet", opacity: float = 0.45) -> None:
    """One overlay PNG per finding, named by input position, file name and input hash (so two
    inputs called x.png never overwrite each other) and marked UNTRAINED when they are."""
    from xai.overlay import overlay, png_bytes

    tag = "" if analysis.prediction.model.trained else "__UNTRAINED"
    stem = f"{index:03d}_{safe_name(source.stem)}_{analysis.facts.input_sha256[:8]}"
    try:
        cam_dir.mkdir(parents=True, exist_ok=True)
        for label in analysis.gradcam.labels:
            image = overlay(
                analysis.display,
                analysis.gradcam.map_for(label),
                colormap,
                opacity,
                trained=analysis.prediction.model.trained,
            )
            (cam_dir / f"{stem}__{safe_name(label)}{tag}.png").write_bytes(png_bytes(image))
    except OSError as exc:
        raise ReviewError(f"cannot write heatmaps to {cam_dir}: {exc.strerror or exc}") from None
