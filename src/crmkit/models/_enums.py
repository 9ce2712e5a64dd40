"""Enumerations of the domain. Their values are the stored and serialised form."""

from enum import StrEnum

__all__ = [
    "ActivityKind",
    "AuditAction",
    "ConsentChannel",
    "ConsentStatus",
    "DealStatus",
    "DoNotContactReason",
    "ForecastCategory",
    "LeadChannel",
    "LeadStatus",
    "LegalBasis",
    "LifecycleStage",
    "SegmentKind",
    "SubjectKind",
    "TaskKind",
    "TaskStatus",
    "TicketChannel",
    "TicketPriority",
    "TicketStatus",
]


class LifecycleStage(StrEnum):
    """Where a contact stands in the customer lifecycle, in forward order.

    ``OTHER`` is outside the order (partners, suppliers, staff).
    """

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    EVANGELIST = "evangelist"
    OTHER = "other"


class LeadStatus(StrEnum):
    NEW = "new"
    WORKING = "working"
    NURTURING = "nurturing"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"


class LeadChannel(StrEnum):
    """The inbound touchpoint through which a lead arrived."""

    FORM = "form"
    NEWSLETTER = "newsletter"
    CHAT = "chat"
    IMPORT = "import"
    EMAIL = "email"
    PHONE = "phone"
    EVENT = "event"
    REFERRAL = "referral"
    SOCIAL = "social"
    OTHER = "other"


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ForecastCategory(StrEnum):
    """Salesforce's forecast categories: where a deal counts in the sales forecast."""

    CLOSED = "closed"
    COMMIT = "commit"
    BEST_CASE = "best_case"
    PIPELINE = "pipeline"
    OMITTED = "omitted"


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketChannel(StrEnum):
    """Where a support request came in (omnichannel support)."""

    EMAIL = "email"
    PHONE = "phone"
    CHAT = "chat"
    WEB = "web"
    SOCIAL = "social"


class ActivityKind(StrEnum):
    EMAIL_SENT = "email_sent"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    PAGE_VIEW = "page_view"
    FORM_SUBMITTED = "form_submitted"
    CALL = "call"
    MEETING = "meeting"
    NOTE = "note"
    PURCHASE = "purchase"
    DOWNLOAD = "download"
    EVENT_SIGNUP = "event_signup"
    PROMO_CODE = "promo_code"
    SMS_SENT = "sms_sent"
    LETTER_SENT = "letter_sent"
    MESSAGE_SENT = "message_sent"
    """A message sent through a messenger (WhatsApp, Signal, ...)."""


class TaskKind(StrEnum):
    FOLLOW_UP = "follow_up"
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    CHECK_IN = "check_in"
    OTHER = "other"


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class SegmentKind(StrEnum):
    """A dynamic segment is a rule, re-evaluated; a static segment is a list of contacts."""

    DYNAMIC = "dynamic"
    STATIC = "static"


class ConsentChannel(StrEnum):
    """The channel a consent covers."""

    EMAIL = "email"
    PHONE = "phone"
    SMS = "sms"
    POST = "post"
    MESSAGING = "messaging"


class ConsentStatus(StrEnum):
    """The decision a consent ledger entry records.

    ``PENDING`` is a request awaiting confirmation (double opt-in): it is not a
    decision, so it neither grants nor withdraws anything.
    """

    PENDING = "pending"
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class LegalBasis(StrEnum):
    """Why processing for a purpose is lawful (GDPR article 6 (1) a to f)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTEREST = "vital_interest"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTEREST = "legitimate_interest"


class DoNotContactReason(StrEnum):
    """Why a channel of a contact is blocked."""

    BOUNCED = "bounced"
    """Messages could not be delivered (a hard bounce, an unknown number)."""
    COMPLAINED = "complained"
    """The person reported a message as spam or complained."""
    ASKED = "asked"
    """The person asked not to be contacted on this channel."""
    LEGAL = "legal"
    """A legal reason: a court order, a Robinson list, a block list."""


class SubjectKind(StrEnum):
    """What a stage change happened to."""

    CONTACT = "contact"
    LEAD = "lead"
    DEAL = "deal"
    TICKET = "ticket"


class AuditAction(StrEnum):
    """What an audit entry records."""

    CREATED = "created"
    CHANGED = "changed"
    EXPORTED = "exported"
    ERASED = "erased"
