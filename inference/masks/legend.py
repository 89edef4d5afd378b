"""Label names and colours for uploaded masks: legend files, DICOM CIELab colours, a fixed palette.

A legend may be JSON (``{"1": "Liver"}``, ``[{"value": 1, "name": "Liver"}]`` or an nnU-Net
``dataset.json`` with ``"labels": {"liver": 1}``), CSV with a ``value,name`` header (optional
``r,g,b`` columns), or an ITK-SNAP label description file (``value R G B A vis mesh "name"``).
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
import logging
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.errors import UnsupportedFormat
from inference.volume.types import LabelInfo

log = logging.getLogger(__name__)

MAX_LABEL_VALUE = 65535
_MAX_NAME_CHARS = 100

# Distinct on a grey scan and apart from each other; beyond these, hues step by the golden angle.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


@dataclass(frozen=True)
class LegendEntry:
    """A name and optional colour that a legend gives one label value."""

    name: str
    color: tuple[int, int, int] | None = None


def palette_color(value: int) -> tuple[int, int, int]:
    """The same colour for the same value in every session and upload."""
    if 1 <= value <= len(_PALETTE):
        return _PALETTE[value - 1]
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def build_labels(present: Iterable[int], names: Mapping[int, LegendEntry]) -> tuple[LabelInfo, ...]:
    """Labels for every non-zero value present in the mask or named by the legend, ascending.

    Values the legend names but the mask lacks are kept, so a reviewer sees an empty structure
    (0 mL) rather than a silently missing one.
    """
    values = sorted({int(v) for v in present if v} | {v for v in names if v})
    labels = []
    taken: set[str] = set()
    for value in values:
        entry = names.get(value)
        name = _reviewable_name(entry.name if entry else f"Label {value}", value, taken)
        taken.add(name)
        color = entry.color if entry and entry.color else palette_color(value)
        labels.append(LabelInfo(value=value, name=name, color=color))
    return tuple(labels)


MAX_NAME_CHARS = 64  # what storage keeps per structure


def _reviewable_name(name: str, value: int, taken: set[str]) -> str:
    """Names are what verdicts are stored against, so they must be unique and fit storage: two
    segments both called "Tumor" become "Tumor" and "Tumor (label 3)"."""
    name = " ".join(name.split()) or f"Label {value}"
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 1] + "…"
    if name in taken:
        suffix = f" (label {value})"
        name = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name


def parse_legend(filename: str, data: bytes) -> dict[int, LegendEntry]:
    """Reads a legend file into {value: entry}; background (0) entries are dropped."""
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise UnsupportedFormat(
            f"The legend {filename} is not UTF-8 text. Upload a JSON, CSV (value,name) or ITK-SNAP label file."
        ) from None
    if not text:
        raise UnsupportedFormat(f"The legend {filename} is empty. Upload the legend again, or none.")
    if text[0] in "{[":
        entries = _from_json(filename, text)
    elif "," in _first_content_line(text):
        entries = _from_csv(filename, text)
    else:
        entries = _from_itksnap(filename, text)
    entries.pop(0, None)
    return entries


def _first_content_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")


def _from_json(filename: str, text: str) -> dict[int, LegendEntry]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnsupportedFormat(f"The legend {filename} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if isinstance(doc, dict) and isinstance(doc.get("labels"), (dict, list)):
        doc = doc["labels"]  # an nnU-Net / MONAI dataset.json
    entries: dict[int, LegendEntry] = {}
    if isinstance(doc, dict):
        for key, item in doc.items():
            if isinstance(item, int) and not isinstance(item, bool):
                value, name, color = item, key, None  # nnU-Net v2: {"liver": 1}
            elif isinstance(item, (str, dict)):
                value = _value(filename, key)
                name = item if isinstance(item, str) else item.get("name")
                color = item.get("color") if isinstance(item, dict) else None
            else:
                # nnU-Net region labels ({"tumour": [1, 2]}) are unions, not label values.
                log.info("legend %s: skipping %r (not a single label value)", filename, key)
                continue
            value = _value(filename, value)
            entries[value] = LegendEntry(_name(filename, name, value), _color(filename, color, value))
    elif isinstance(doc, list):
        for item in doc:
            if not isinstance(item, dict) or "name" not in item or ("value" not in item and "label" not in item):
                raise UnsupportedFormat(
                    f"The legend {filename} has an entry {str(item)[:80]!r}; each must look like "
                    '{"value": 1, "name": "Liver"}.'
                )
            value = _value(filename, item.get("value", item.get("label")))
            color = _color(filename, item.get("color"), value)
            entries[value] = LegendEntry(_name(filename, item["name"], value), color)
    return entries


def _from_csv(filename: str, text: str) -> dict[int, LegendEntry]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    if "value" not in fields or "name" not in fields:
        raise UnsupportedFormat(
            f"The legend {filename} has columns {', '.join(fields) or 'none'}; a CSV legend needs a header "
            "row 'value,name' (optionally followed by r,g,b)."
        )
    entries: dict[int, LegendEntry] = {}
    for row in reader:
        value = _value(filename, row[fields["value"]])
        color = None
        if all(c in fields for c in "rgb"):
            color = [row[fields[c]] for c in "rgb"]
        entries[value] = LegendEntry(_name(filename, row[fields["name"]], value), _color(filename, color, value))
    return entries


def _from_itksnap(filename: str, text: str) -> dict[int, LegendEntry]:
    entries: dict[int, LegendEntry] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = shlex.split(line)
        except ValueError:
            fields = []
        if len(fields) < 8:
            raise UnsupportedFormat(
                f"The legend {filename} has a line {line.strip()[:80]!r} that is not JSON, CSV (value,name) or "
                'ITK-SNAP (value R G B A visible mesh "name").'
            )
        value = _value(filename, fields[0])
        entries[value] = LegendEntry(_name(filename, fields[7], value), _color(filename, fields[1:4], value))
    return entries


def _value(filename: str, raw) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise UnsupportedFormat(
            f"The legend {filename} has a label value {raw!r} that is not a whole number."
        ) from None
    if not 0 <= value <= MAX_LABEL_VALUE:
        raise UnsupportedFormat(f"The legend {filename} has a label value {value} outside 0..{MAX_LABEL_VALUE}.")
    return value


def _name(filename: str, raw, value: int) -> str:
    name = " ".join(str(raw or "").split())[:_MAX_NAME_CHARS]
    if not name:
        raise UnsupportedFormat(f"The legend {filename} gives label {value} an empty name.")
    return name


def _color(filename: str, raw, value: int) -> tuple[int, int, int] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw.startswith("#") and len(raw) == 7:
        raw = [int(raw[i : i + 2], 16) for i in (1, 3, 5)]
    try:
        rgb = tuple(int(str(c).strip()) for c in raw)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise UnsupportedFormat(
            f"The legend {filename} gives label {value} the colour {raw!r}; use three numbers 0-255 (R, G, B)."
        )
    return rgb


def cielab_to_rgb(lab: Iterable[int]) -> tuple[int, int, int]:
    """DICOM RecommendedDisplayCIELabValue (each 0..65535) to sRGB 0..255 (D65 white)."""
    raw = [float(v) for v in lab]
    lightness = raw[0] * 100.0 / 65535.0
    a = raw[1] * 255.0 / 65535.0 - 128.0
    b = raw[2] * 255.0 / 65535.0 - 128.0
    fy = (lightness + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def inverse(t: float) -> float:
        return t**3 if t > 6.0 / 29.0 else 3 * (6.0 / 29.0) ** 2 * (t - 4.0 / 29.0)

    x, y, z = 0.95047 * inverse(fx), inverse(fy), 1.08883 * inverse(fz)
    linear = (
        3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
        -0.9692660 * x + 1.8760108 * y + 0.0415560 * z,
        0.0556434 * x - 0.2040259 * y + 1.0572252 * z,
    )
    out = []
    for c in linear:
        c = min(max(c, 0.0), 1.0)
        c = 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
        out.append(round(c * 255))
    return tuple(out)  # type: ignore[return-value]
