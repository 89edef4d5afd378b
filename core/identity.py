"""Who a signed-in reviewer is, from the OpenID Connect claims of their ID token.

The identity stored with every verdict is the provider's stable subject: ``sub`` qualified by the
issuer ``iss`` (a subject is unique only within its issuer). An e-mail address is only a claim: it
is shown, and it can give a role, only when the provider says it is verified (``email_verified``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

MAX_IDENTITY_CHARS = 80  # the reviewer columns of the verdict tables
_ISSUER_TAG_CHARS = 10
_MAX_PLAIN_SUBJECT = MAX_IDENTITY_CHARS - _ISSUER_TAG_CHARS - 1
_HASHED = "sha256:"  # what a hashed subject starts with; no subject kept as it is does


class IdentityUnavailable(Exception):
    """The provider's answer does not identify the user (no issuer or subject)."""


@dataclass(frozen=True)
class SignedInIdentity:
    key: str  # what verdicts are stored under: "<sub>#<issuer tag>"
    issuer: str
    subject: str
    display_name: str  # the verified e-mail, else the name claim or the subject marked "(unverified)"
    verified_email: str | None
    unverified_email: str | None  # an e-mail claim the provider did not verify: shown as such, never trusted
    is_admin: bool


def identity_key(issuer: str, subject: str) -> str:
    """A stable key of at most 80 characters: the subject as it is (readable in the database)
    followed by a short hash of the issuer; a very long or unusual subject is hashed too, and so is
    one that starts as a hashed one does, which would otherwise be taken for it."""
    tag = hashlib.sha256(issuer.encode("utf-8")).hexdigest()[:_ISSUER_TAG_CHARS]
    plain = (
        subject
        if (
            len(subject) <= _MAX_PLAIN_SUBJECT
            and subject.isprintable()
            and not any(c.isspace() for c in subject)
            and not subject.startswith(_HASHED)
        )
        else None
    )
    if plain is None:
        plain = _HASHED + hashlib.sha256(subject.encode("utf-8")).hexdigest()[:48]
    return f"{plain}#{tag}"


UNVERIFIED = " (unverified)"


def unverified_name(name: str) -> str:
    """How a name the provider did not verify is shown: marked, so that it can never read as a
    verified address or the lead's (a token's ``name`` or ``sub`` is whatever its holder chose)."""
    return name + UNVERIFIED


def _is_true(value: object) -> bool:
    # Some providers send the boolean as a string.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def from_claims(claims: Mapping[str, object], admins: Collection[str]) -> SignedInIdentity:
    """The identity behind a set of ID-token claims. ``admins`` lists verified e-mail addresses
    or identity keys (for providers that give no verified e-mail)."""
    issuer = str(claims.get("iss") or "").strip()
    subject = str(claims.get("sub") or "").strip()
    if not issuer or not subject:
        raise IdentityUnavailable(
            "Your sign-in did not say who you are (the provider sent no 'iss' and 'sub'), so nothing can be "
            "recorded under your name. Sign out and in again; if it persists, tell IT."
        )
    key = identity_key(issuer, subject)
    email = str(claims.get("email") or "").strip() or None
    verified = email is not None and _is_true(claims.get("email_verified"))
    name = " ".join(str(claims.get("name") or "").split()) or None
    wanted = {a.strip().lower() for a in admins}
    by_key = key.lower() in wanted
    is_admin = by_key or (verified and email is not None and email.lower() in wanted)
    return SignedInIdentity(
        key=key,
        issuer=issuer,
        subject=subject,
        # A verified address as it is; an identity named an admin by its key is vouched for by the
        # configuration; any other name is the holder's own choice, shown marked as such.
        display_name=email if verified and email else (name or subject) if by_key else unverified_name(name or subject),
        verified_email=email if verified else None,
        unverified_email=None if verified else email,
        is_admin=is_admin,
    )
