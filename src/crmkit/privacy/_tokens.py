"""Double opt-in confirmation tokens: signed, expiring, verified in constant time.

A token names one pending consent entry (and its contact, channel and purpose) and
when it expires, signed with HMAC-SHA256 under the host's secret. Only the holder of
the secret can make one; :func:`verify_token` compares signatures with
:func:`hmac.compare_digest` and refuses a token that was changed in any byte
(:class:`~crmkit.errors.InvalidToken`) or whose time ran out
(:class:`~crmkit.errors.TokenExpired`).
"""

import base64
import binascii
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import InvalidToken, TokenExpired, ValidationError
from crmkit.models import Consent, ConsentChannel, ConsentStatus
from crmkit.privacy._secrets import check_key

__all__ = ["MIN_SECRET_BYTES", "TokenClaims", "issue_token", "verify_token"]

MIN_SECRET_BYTES: Final = 32
"""The shortest secret accepted: 256 bits, the size of an HMAC-SHA256 key."""

_VERSION: Final = "c1"
_MAX_TOKEN: Final = 512
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


@attrs.frozen
class TokenClaims:
    """What a genuine token says: the pending consent entry it confirms and until when."""

    consent_id: UUID
    contact_id: UUID
    channel: ConsentChannel
    purpose: str
    expires_at: datetime


def _check_secret(secret: object) -> bytes:
    return check_key(secret, "secret", MIN_SECRET_BYTES)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    """The bytes of canonical unpadded base64url text; anything else (characters that
    the decoder would skip, non-zero padding bits) raises ``ValueError``, so that one
    token has one spelling."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError(text)
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _encode(data) != text:
        raise ValueError(text)
    return data


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def issue_token(request: Consent, *, secret: bytes, expires_at: datetime) -> str:
    """A token confirming the pending entry ``request`` until ``expires_at``.

    URL-safe text (base64url of the claims, a dot, base64url of the signature), to put
    in the link of the confirmation message.
    """
    key = _check_secret(secret)
    if not isinstance(request, Consent) or request.status is not ConsentStatus.PENDING:
        raise ValidationError("request", request, "expected a pending Consent")
    until = ensure_utc(expires_at, "expires_at")
    stamp = (until - _EPOCH) // timedelta(microseconds=1)
    claims = ":".join(
        [
            _VERSION,
            request.id.hex,
            request.contact_id.hex,
            request.channel.value,
            request.purpose,
            str(stamp),
        ]
    ).encode("ascii")
    return f"{_encode(claims)}.{_encode(_sign(key, claims))}"


def verify_token(token: object, *, secret: bytes, now: datetime) -> TokenClaims:
    """The claims of a genuine token that has not expired at ``now``.

    Raises :class:`~crmkit.errors.InvalidToken` (field ``token``) for anything that is
    not a token this secret signed, checked in constant time before any claim is read,
    and :class:`~crmkit.errors.TokenExpired` when ``now`` is at or after its expiry.
    """
    key = _check_secret(secret)
    now = ensure_utc(now, "now")
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise InvalidToken("token", token, "not a confirmation token")
    body, signature = token.split(".")
    try:
        claims = _decode(body)
        signed = _decode(signature)
    except (binascii.Error, ValueError):
        raise InvalidToken("token", token, "not a confirmation token") from None
    if not hmac.compare_digest(_sign(key, claims), signed):
        raise InvalidToken("token", token, "the signature does not match: changed or forged")
    try:
        version, consent, contact, channel, purpose, stamp = claims.decode("ascii").split(":")
        if version != _VERSION:
            raise ValueError(version)
        expires_at = _EPOCH + timedelta(microseconds=int(stamp))
        found = TokenClaims(
            UUID(consent), UUID(contact), ConsentChannel(channel), purpose, expires_at
        )
    except (ValueError, OverflowError, OSError):  # signed by this secret, yet not ours
        raise InvalidToken("token", token, "not a confirmation token") from None
    if now >= found.expires_at:
        raise TokenExpired("token", token, f"expired at {found.expires_at.isoformat()}")
    return found
