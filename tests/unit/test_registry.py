"""The registry is data copied from torchxrayvision; it must not drift from the installed library."""

from __future__ import annotations

import numpy as np

from inference.model_loader import import_xrv
from inference.registry import CXR_DENSENET, get_spec


def test_registry_matches_torchxrayvision() -> None:
    entry = import_xrv().models.model_urls[CXR_DENSENET.xrv_weights_key]
    assert tuple(entry["labels"]) == CXR_DENSENET.labels
    assert len(CXR_DENSENET.labels) == 18 and all(CXR_DENSENET.labels)
    assert entry["weights_url"] == CXR_DENSENET.weights_url
    assert entry["weights_url"].endswith(CXR_DENSENET.weights_filename)
    np.testing.assert_allclose(entry["op_threshs"], CXR_DENSENET.op_thresholds)
    assert entry["input_resolution"] == CXR_DENSENET.input_size


def test_importing_torchxrayvision_leaves_warning_filters_alone() -> None:
    import warnings

    before = list(warnings.filters)
    import_xrv()
    assert ("ignore", None, Warning, None, 0) not in warnings.filters
    assert list(warnings.filters) == before


def test_lookup() -> None:
    assert get_spec(CXR_DENSENET.model_id) is CXR_DENSENET
