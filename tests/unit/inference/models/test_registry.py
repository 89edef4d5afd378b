"""The registry is data copied from torchxrayvision; it must not drift from the installed library."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inference.models.loader import import_xrv
from inference.models.registry import CXR_DENSENET, get_spec


def test_registry_matches_torchxrayvision() -> None:
    entry = import_xrv().models.model_urls[CXR_DENSENET.architecture_kwargs()["xrv_weights_key"]]
    # The same findings in the same order (outputs are positional), spelled as a reader says them
    # ("Pleural Thickening" for torchxrayvision's "Pleural_Thickening").
    assert tuple(label.replace("_", " ") for label in entry["labels"]) == CXR_DENSENET.labels
    assert len(CXR_DENSENET.labels) == 18 and all(CXR_DENSENET.labels)
    assert entry["weights_url"] == CXR_DENSENET.weights_url
    assert entry["weights_url"].endswith(CXR_DENSENET.weights_filename)
    np.testing.assert_allclose(entry["op_threshs"], CXR_DENSENET.op_thresholds)
    assert entry["input_resolution"] == CXR_DENSENET.input_size


def test_importing_torchxrayvision_leaves_warning_filters_alone() -> None:
    """torchxrayvision calls warnings.filterwarnings("ignore") at import; ours must undo it.
    Checked in a fresh interpreter, where the import really happens."""
    import subprocess
    import sys

    from tests.conftest import PROJECT

    code = (
        # numpy adds its own "size changed" filters when first imported; the loader imports it now.
        "import warnings, numpy; before = list(warnings.filters)\n"
        "from inference.models.loader import import_xrv; import_xrv()\n"
        "import torchxrayvision\n"
        "assert list(warnings.filters) == before, warnings.filters[:3]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_lookup() -> None:
    assert get_spec(CXR_DENSENET.model_id) is CXR_DENSENET


def test_register_adds_an_entry_and_refuses_a_different_model_under_a_known_id(monkeypatch) -> None:
    import dataclasses

    from inference.models import registry

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    renamed = dataclasses.replace(CXR_DENSENET, model_id="site-densenet", display_name="Site DenseNet")
    assert registry.register(renamed) is renamed and get_spec("site-densenet") is renamed
    assert registry.register(renamed) is renamed  # the same entry again is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register(dataclasses.replace(renamed, input_size=320))


def test_a_class_that_means_nothing_found_is_never_banded() -> None:
    """ "No tumour 0.99" is confidence that nothing is there, not a critical finding; the other
    classes are banded as every finding is."""
    from core.settings import load_settings
    from core.vocabulary import Band
    from inference.images.bands import load_band_config
    from inference.models.registry import BRAIN_DEMENTIA, BRAIN_TUMOUR

    bands = load_band_config(load_settings().bands_file)
    assert BRAIN_TUMOUR.normal_labels == ("No tumour",) and BRAIN_DEMENTIA.normal_labels == ("No Impairment",)
    assert BRAIN_TUMOUR.band_of(bands, "No tumour", 0.99) is Band.NEGATIVE
    assert BRAIN_TUMOUR.band_of(bands, "Glioma", 0.99) is Band.CRITICAL
    assert BRAIN_TUMOUR.band_of(bands, "Glioma", 0.30) is Band.INDETERMINATE
    with pytest.raises(ValueError, match="normal labels"):
        replace(BRAIN_TUMOUR, normal_labels=("Nothing",))
