"""Which structures of a segmentation a reader must judge: one rule for the volume page (what it
lists for review) and the worklist (when a reader counts as done)."""

from __future__ import annotations

from core.results import StructureMeasurement

# Up to this many structures every one is reviewed, empty ones included ("no enhancing tumour" is a
# finding). Beyond it (104 whole-body structures) only those with voxels are: a reader cannot be
# asked to confirm 90 organs a head CT does not contain.
REVIEW_ALL_UP_TO = 12


def required_count(total: int, with_voxels: int) -> int:
    """How many structures a reader must judge for a run to count as reviewed."""
    return total if total <= REVIEW_ALL_UP_TO else with_voxels


def reviewed_structures(measurements: tuple[StructureMeasurement, ...]) -> tuple[StructureMeasurement, ...]:
    """The structures listed for review (see ``REVIEW_ALL_UP_TO``)."""
    if len(measurements) <= REVIEW_ALL_UP_TO:
        return measurements
    return tuple(m for m in measurements if m.voxels > 0)
