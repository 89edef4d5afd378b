"""Signed-in identity from OIDC claims: the issuer and subject are the key; an e-mail counts only
when the provider verified it."""

from __future__ import annotations

import pytest

from core.identity import MAX_IDENTITY_CHARS, IdentityUnavailable, from_claims, identity_key

ISSUER = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
ADMINS = ["Lead@Hospital.org"]


def test_the_key_is_the_subject_qualified_by_its_issuer() -> None:
    key = identity_key(ISSUER, "reader-1")
    assert key.startswith("reader-1#") and len(key) <= MAX_IDENTITY_CHARS
    assert identity_key(ISSUER, "reader-1") == key, "stable"
    assert identity_key("https://accounts.google.com", "reader-1") != key, "same subject, other issuer: other person"


@pytest.mark.parametrize("subject", ["A" * 500, "two words", "tab\there", "line\nbreak"])
def test_long_or_unusual_subjects_are_hashed_into_the_column(subject: str) -> None:
    key = identity_key(ISSUER, subject)
    assert key.startswith("sha256:") and len(key) <= MAX_IDENTITY_CHARS and not any(c.isspace() for c in key)
    assert identity_key(ISSUER, subject + "x") != key


@pytest.mark.parametrize("long_subject", ["A" * 500, "two words"])
def test_a_short_subject_spelled_like_a_hashed_one_gets_another_key(long_subject: str) -> None:
    """A subject is the provider's to choose: one spelled exactly as another's hashed form (its
    key less the issuer tag) must not sign in as that reader."""
    hashed = identity_key(ISSUER, long_subject)
    look_alike = hashed.rsplit("#", 1)[0]
    assert identity_key(ISSUER, look_alike) != hashed
    assert identity_key(ISSUER, look_alike).startswith("sha256:") and len(identity_key(ISSUER, look_alike)) <= 80
    assert identity_key(ISSUER, "sha256:") != identity_key(ISSUER, "")


def test_a_verified_admin_e_mail_gives_the_role_and_is_shown() -> None:
    who = from_claims(
        {"iss": ISSUER, "sub": "u1", "email": "lead@hospital.org", "email_verified": True, "name": "Dr Lead"}, ADMINS
    )
    assert who.is_admin and who.display_name == "lead@hospital.org" and who.verified_email == "lead@hospital.org"
    assert who.key == identity_key(ISSUER, "u1")


@pytest.mark.parametrize("verified", [False, "false", None, "yes", 1])
def test_an_unverified_copy_of_the_admin_e_mail_gives_nothing(verified) -> None:
    claims = {"iss": ISSUER, "sub": "mallory", "email": "lead@hospital.org", "name": "Mallory"}
    if verified is not None:
        claims["email_verified"] = verified
    who = from_claims(claims, ADMINS)
    assert not who.is_admin
    assert who.key == identity_key(ISSUER, "mallory"), "stored under her own subject"
    assert who.display_name == "Mallory (unverified)" and who.verified_email is None
    assert who.unverified_email == "lead@hospital.org"


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "mallory-displayname", "email": "m@evil.example", "email_verified": False, "name": "lead@hospital.org"},
        {"sub": "lead@hospital.org"},  # no name: the display falls back to the subject
        {"sub": "m2", "name": "lead@hospital.org", "email": "lead@hospital.org"},
    ],
)
def test_an_unverified_name_or_subject_never_reads_as_a_verified_address(claims) -> None:
    lead = from_claims({"iss": ISSUER, "sub": "u1", "email": "lead@hospital.org", "email_verified": True}, ADMINS)
    mallory = from_claims({"iss": ISSUER, **claims}, ADMINS)
    assert not mallory.is_admin
    assert mallory.display_name != lead.display_name
    assert mallory.display_name == "lead@hospital.org (unverified)"


def test_a_string_true_counts_as_verified_and_an_identity_key_can_be_an_admin() -> None:
    assert from_claims(
        {"iss": ISSUER, "sub": "u1", "email": "lead@hospital.org", "email_verified": "true"}, ADMINS
    ).is_admin
    key = identity_key(ISSUER, "no-email-subject")
    who = from_claims({"iss": ISSUER, "sub": "no-email-subject"}, [key])
    assert who.is_admin and who.display_name == "no-email-subject"


@pytest.mark.parametrize("claims", [{}, {"sub": "u1"}, {"iss": ISSUER}, {"iss": " ", "sub": "u1"}])
def test_claims_without_issuer_and_subject_identify_nobody(claims) -> None:
    with pytest.raises(IdentityUnavailable, match="did not say who you are"):
        from_claims(claims, ADMINS)
