"""De-identification's "retain patient characteristics" option: off by default, nothing of the
patient but the keyed hash is kept; on, a DICOM's sex and age band (never a date) join the
acquisition facts that drift monitoring compares and breaks down by."""

from __future__ import annotations

import pydicom
import pytest

from inference.images.dicom import characteristics
from tests.conftest import SAMPLES, load, require_samples


def test_a_real_film_keeps_its_sex_and_age_band_only_when_the_site_asks() -> None:
    require_samples()
    path = SAMPLES / "cxr" / "siim_sample.dcm"  # PatientSex M, PatientAge "62" (as exported, not "062Y")
    plain = load(path)
    assert not {"sex", "age_band"} & {k for k, _ in plain.facts.acquisition}
    kept = load(path, retain_characteristics=True)
    assert {"sex": "M", "age_band": "60-69"}.items() <= dict(kept.facts.acquisition).items()
    assert "19010101" not in repr(kept.facts)  # the study date, as every date, stays out


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"PatientSex": "F", "PatientAge": "045Y"}, (("sex", "F"), ("age_band", "40-49"))),
        ({"PatientAge": "093Y"}, (("age_band", "90+"),)),
        ({"PatientAge": "018M"}, (("age_band", "0-9"),)),
        ({"PatientBirthDate": "19600615", "StudyDate": "20260614"}, (("age_band", "60-69"),)),  # 65 tomorrow
        ({"PatientSex": "X", "PatientAge": "abc"}, ()),
    ],
)
def test_sex_and_age_band_from_the_header(tags, expected) -> None:
    ds = pydicom.Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    assert characteristics(ds) == expected
