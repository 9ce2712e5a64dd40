"""The one check of the host's secret keys (tokens, suppression hashes)."""

from crmkit.errors import ValidationError

__all__ = ["check_key"]


def check_key(secret: object, field: str, minimum: int) -> bytes:
    """``secret`` if it is ``bytes`` of at least ``minimum``; else a ValidationError
    naming ``field`` that never shows the secret."""
    if not isinstance(secret, bytes) or len(secret) < minimum:
        raise ValidationError(field, "<hidden>", f"expected bytes, at least {minimum} of them")
    return secret
