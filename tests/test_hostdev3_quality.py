"""Regression tests for the data-quality findings of the hostdev3 evaluation: EM that
learnt an inverted model (#2), the default contact weights that called two mailboxes
one person (#6), and messy-import friction (#18)."""

import itertools
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ValidationError
from crmkit.models import Contact
from crmkit.quality import (
    CONTACT_SPEC,
    CONTACT_WEIGHTS,
    DuplicateModel,
    FitProblem,
    Verdict,
    duplicate_pairs,
    estimate_weights,
    parse_country,
    parse_phone,
)
from crmkit.storage import MemoryStore
from tests.test_quality import _people

NOW = datetime(2026, 6, 1, 9, tzinfo=UTC)
CLOCK = FixedClock(NOW)

_FIRST = ["Anna", "Lukas", "Maria", "Jonas", "Sophie", "Leon", "Emma", "Paul", "Mia", "Felix"]
_LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]


def _strangers(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` different people with common names and unrelated addresses: no duplicates."""
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "first_name": rng.choice(_FIRST),
            "last_name": rng.choice(_LAST),
            "email": f"user{rng.randrange(10**9)}x{i}@mail{i % 7}.example",
            "phone": None,
            "country": rng.choice(["DE", "AT", "CH"]),
        }
        for i in range(n)
    ]


def test_em_never_learns_that_disagreement_is_evidence_of_a_duplicate() -> None:
    """#2: among strangers EM once learnt ``last_name: different (+31)``; the fit is now
    held to ``m / u`` rising with the level, flags what it could not learn, and then
    calls no pair a duplicate."""
    records = _strangers(400)
    result = duplicate_pairs(records, CONTACT_SPEC)
    for comparison, levels in zip(
        CONTACT_SPEC.comparisons, result.model.weights.level_weights(), strict=True
    ):
        assert all(a <= b + 1e-9 for a, b in itertools.pairwise(levels)), (
            f"{comparison.name}: a closer level must weigh more"
        )
    for pair in result.pairs:
        for contribution in pair.contributions:
            if contribution.level == 0:
                assert contribution.weight <= 0, pair.explain()
    assert result.degenerate
    assert {d.comparison for d in result.diagnostics if d.problem is FitProblem.INVERTED}
    assert not [p for p in result.pairs if p.verdict is Verdict.DUPLICATE]
    weights = estimate_weights(CONTACT_SPEC, records)
    assert weights == result.model.weights


def test_em_on_real_duplicates_is_not_flagged() -> None:
    """The constraint and the diagnostics leave a sound fit alone."""
    records, truth = _people(random.Random(7), 600)
    result = duplicate_pairs(records, CONTACT_SPEC)
    assert not result.degenerate, result.diagnostics
    found = {frozenset((p.left, p.right)) for p in result.pairs if p.verdict is Verdict.DUPLICATE}
    assert len(found & truth) / len(truth) >= 0.95
    assert len(found & truth) / len(found) >= 0.98


def test_crm_duplicate_pairs_without_weights_reports_a_degenerate_fit() -> None:
    crm = CRM(MemoryStore(clock=CLOCK))
    crm.import_contacts(
        [
            Contact.new(
                first_name=r["first_name"],
                last_name=r["last_name"],
                email=r["email"],
                country=r["country"],
                clock=CLOCK,
            )
            for r in _strangers(300)
        ]
    )
    result = crm.duplicate_pairs()
    assert result.diagnostics
    assert Counter(p.verdict for p in result.pairs)[Verdict.DUPLICATE] == 0


def test_two_mailboxes_of_people_with_one_name_are_no_certain_duplicate() -> None:
    """#6: ``ada.smith1@`` and ``ada.smith2@`` are two mailboxes: at most a pair to
    review; a different address weighs against, and an equal one still decides."""
    model = DuplicateModel(CONTACT_SPEC, CONTACT_WEIGHTS)

    def verdict(**other: Any) -> Verdict:
        mine = {"id": 1, "first_name": "Ada", "last_name": "Smith", "country": "DE"}
        mine["email"] = "ada.smith1@example.org"
        return model.score(mine, {**mine, **other, "id": 2}).verdict

    assert verdict(email="ada.smith2@example.org") is Verdict.REVIEW
    assert verdict(email="ada.smith2@example.com") is Verdict.REVIEW
    assert verdict(email="totally.other@gmail.com") is Verdict.DISTINCT
    assert verdict(email="Ada.Smith1@Example.org") is Verdict.DUPLICATE
    same_phone = {"phone": "+4915112345678", "email": "other@example.org"}
    mine = {"id": 1, "first_name": "Ada", "last_name": "Smith", "country": "DE"}
    assert (
        model.score(
            {**mine, "email": "ada.smith1@example.org", "phone": "+4915112345678"},
            {**mine, "id": 2, **same_phone},
        ).verdict
        is Verdict.DUPLICATE
    )
    weights = CONTACT_WEIGHTS.level_weights()
    email = [c.name for c in CONTACT_SPEC.comparisons].index("email")
    assert weights[email][0] <= -3, "a different address is strong evidence against"


def test_the_audit_of_no_records_reports_no_rate() -> None:
    """#21: 0 of 0 filled is no rate (``None``), and the summary has no 100% line."""
    report = CRM(MemoryStore(clock=CLOCK)).audit()
    fill = report.fill("account", "domain")
    assert (fill.filled, fill.total, fill.rate) == (0, 0, None)
    assert "100%" not in report.summary()
    assert "account." not in report.summary()


def test_messy_import_values_are_read() -> None:
    """#18: ``0049`` numbers, more country spellings, a blank address named as empty."""
    assert parse_phone("0049 30 901820") == "+4930901820"
    assert parse_phone("0049 30 901820", "DE") == "+4930901820"
    assert parse_phone("030 901820", "DE") == "+4930901820"
    for text, code in [
        ("Nederland", "NL"),
        ("Brasil", "BR"),
        ("Korea", "KR"),
        ("South Korea", "KR"),
        ("D", "DE"),
        ("A", "AT"),
        ("EL", "GR"),
        ("Polska", "PL"),
        ("Deutschland", "DE"),
        ("UK", "GB"),
    ]:
        assert parse_country(text) == code, text
    with pytest.raises(ValidationError) as blank:
        Contact.new(email="   ")
    assert blank.value.field == "email"
    assert "empty" in str(blank.value)
