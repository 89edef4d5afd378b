"""Model cards of the classifiers this project trained: JSON files in ``SHIPPED_DIR`` written by
``python -m inference train`` (``inference.training.run``). Read here without torch, for the
registry (the fitted temperature), the loader (the shipped weights' sha256), the pages and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import WeightsInvalid
from inference.models.spec import SHIPPED_DIR, ModelSpec


def read_card(card: str | None) -> dict | None:
    """The card's content, or None where the model has no card (or it is not written yet)."""
    if not card:
        return None
    path = SHIPPED_DIR / card
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsInvalid(f"The model card {path} cannot be read ({exc}); restore it from the repository.") from exc


def card_of(spec: ModelSpec) -> dict | None:
    return read_card(getattr(spec, "card", None))


def check_shipped_weights(spec: ModelSpec, path: Path, sha256: str) -> None:
    """Refuse shipped weights that are not the ones their card was measured with."""
    shipped = spec.weights.shipped_path()
    if shipped is None or path.resolve() != shipped.resolve():
        return
    card = card_of(spec)
    if card is None:
        raise WeightsInvalid(
            f"{path} has no model card beside it, so nothing says how it was trained or how it scored; "
            "restore inference/models/trained/ from the repository."
        )
    expected = card["weights"]["sha256"]
    if sha256 != expected:
        raise WeightsInvalid(
            f"{path} is not the file its model card was measured with (sha256 {sha256[:12]}..., the card "
            f"says {expected[:12]}...); restore it from the repository or retrain with `python -m inference train`."
        )


def ensemble_members(spec: ModelSpec) -> tuple[dict, ...]:
    """The card's other checkpoints (``weights.ensemble``: file, sha256, seed, temperature), in order."""
    card = card_of(spec)
    return tuple(card["weights"].get("ensemble", ())) if card else ()


def member_path(member: dict) -> Path:
    return SHIPPED_DIR / member["file"]
