"""The consent and do-not-contact ledgers: the state in force, derived from the entries.

Both ledgers are append-only; these functions say which entry is in force, and every
interpreter (Python, SQL) follows them. The order of decisions is ``decided_at``; at
the same time the more restrictive entry wins (a withdrawal over a grant, a block over
a lift), then the greater id, so that the answer never depends on the order the
entries are read in.
"""

from collections.abc import Iterable
from datetime import datetime

from crmkit.models._entities import Consent, Contact, DoNotContact
from crmkit.models._enums import ConsentChannel, ConsentStatus

__all__ = ["contact_point", "covers_address", "current_block", "current_consent", "is_expired"]


def current_consent(
    entries: Iterable[Consent], channel: ConsentChannel, purpose: str
) -> Consent | None:
    """The decision in force for ``channel`` and ``purpose``: the latest entry granted
    or withdrawn (pending requests are no decision), ``None`` when there is none.

    >>> from datetime import datetime, UTC
    >>> from uuid import uuid4
    >>> who, at = uuid4(), datetime(2026, 1, 5, tzinfo=UTC)
    >>> def entry(status):
    ...     return Consent.new(contact_id=who, channel=ConsentChannel.EMAIL,
    ...                        purpose="newsletter", status=status, source="form",
    ...                        decided_at=at)
    >>> current_consent([entry(ConsentStatus.WITHDRAWN), entry(ConsentStatus.GRANTED)],
    ...                 ConsentChannel.EMAIL, "newsletter").status
    <ConsentStatus.WITHDRAWN: 'withdrawn'>
    """
    found: Consent | None = None
    for entry in entries:
        if (
            entry.channel is channel
            and entry.purpose == purpose
            and entry.status is not ConsentStatus.PENDING
            and (found is None or _consent_key(entry) > _consent_key(found))
        ):
            found = entry
    return found


def _consent_key(entry: Consent) -> tuple[datetime, bool, int]:
    return entry.decided_at, entry.status is ConsentStatus.WITHDRAWN, entry.id.int


def is_expired(entry: Consent, now: datetime) -> bool:
    """Whether ``entry`` has an expiry at or before ``now``."""
    return entry.expires_at is not None and entry.expires_at <= now


def current_block(entries: Iterable[DoNotContact], channel: ConsentChannel) -> DoNotContact | None:
    """The do-not-contact block in force for ``channel``: the latest entry of the
    channel unless it lifts the blocks (``None`` then, and when there is none)."""
    found: DoNotContact | None = None
    for entry in entries:
        if entry.channel is channel and (found is None or _block_key(entry) > _block_key(found)):
            found = entry
    return None if found is None or found.lifted else found


def _block_key(entry: DoNotContact) -> tuple[datetime, bool, int]:
    return entry.decided_at, not entry.lifted, entry.id.int


def contact_point(contact: Contact, channel: ConsentChannel) -> str | None:
    """The contact's address for ``channel``: the e-mail address for e-mail, the phone
    number for phone, SMS and messaging; ``None`` when it has none. Post has no address
    stored by crmkit: the contact's id stands for it (post is never excluded for it)."""
    match channel:
        case ConsentChannel.EMAIL:
            return None if contact.email is None else str(contact.email)
        case ConsentChannel.POST:
            return str(contact.id)
    return None if contact.phone is None else str(contact.phone)


def covers_address(entry: Consent, contact: Contact) -> bool:
    """Whether the grant ``entry`` may authorise a message to ``contact``'s current
    address for its channel: a consent given for one address does not authorise
    messages to another. ``True`` when the entry names no contact point (recorded
    without one), when its channel is post (crmkit stores no postal address), or when
    its contact point is the contact's current address exactly as recorded
    (:func:`contact_point`; an address changed in case only is a new address too).

    >>> from datetime import datetime, UTC
    >>> ada = Contact.new(email="ada@example.com")
    >>> grant = Consent.new(contact_id=ada.id, channel=ConsentChannel.EMAIL,
    ...                     purpose="newsletter", status=ConsentStatus.GRANTED,
    ...                     source="form", contact_point="ada@example.com")
    >>> moved = Contact.new(email="a@b.org")
    >>> covers_address(grant, ada), covers_address(grant, moved)
    (True, False)
    """
    if entry.contact_point is None or entry.channel is ConsentChannel.POST:
        return True
    return entry.contact_point == contact_point(contact, entry.channel)
