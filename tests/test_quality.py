"""Data quality: match keys, parsers, similarities, Fellegi-Sunter with EM, clusters,
the on-create look-up and the batch search through the CRM, and the audit."""

import random
import string
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import UnknownCountry, ValidationError
from crmkit.models import Account, Activity, ActivityKind, Contact
from crmkit.quality import (
    CONTACT_SPEC,
    CONTACT_WEIGHTS,
    BlockingKey,
    Comparison,
    DuplicatePair,
    DuplicateSpec,
    Method,
    Normaliser,
    Verdict,
    clusters,
    company_key,
    duplicate_pairs,
    email_key,
    estimate_weights,
    jaro_winkler,
    levenshtein,
    name_key,
    parse_country,
    parse_phone,
    token_set,
)
from crmkit.quality._compare import _pure_jaro_winkler, _pure_levenshtein, _pure_token_set
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 6, 1, 9, tzinfo=UTC)
CLOCK = FixedClock(NOW)

# ---------------------------------------------------------------------------- match keys


def test_name_keys_ignore_case_spacing_width_and_titles() -> None:
    assert name_key("Dr.  Ada", "LOVELACE") == name_key("ada", "lovelace") == "ada lovelace"
    assert name_key("\uff21\uff44\uff41", "Lovelace") == "ada lovelace"  # full-width, NFKC
    assert name_key("Herr Jürgen", "Müller") == "jürgen müller"
    assert name_key("Fru Åsa", "Öberg") == "åsa öberg"
    assert name_key("   ", None) == name_key("Dr.") == ""


def test_email_keys_follow_each_providers_rules_and_store_nothing() -> None:
    assert email_key("Ada.Love.Lace+crm@gmail.com") == "adalovelace@gmail.com"
    assert email_key("adalovelace@googlemail.com") == "adalovelace@gmail.com"
    assert email_key("ada+news@outlook.com") == "ada@outlook.com"
    assert email_key("Ada.Lovelace@Outlook.com") == "ada.lovelace@outlook.com"  # dots count
    # A provider without such rules: only the case goes.
    assert email_key("Ada.Lovelace+crm@Example.org") == "ada.lovelace+crm@example.org"
    contact = Contact.new(email="Ada.Lovelace+crm@gmail.com", clock=CLOCK)
    assert str(contact.email) == "Ada.Lovelace+crm@gmail.com"  # the stored value stays
    with pytest.raises(ValidationError) as wrong:
        email_key("no address", field="work_email")
    assert (wrong.value.field, wrong.value.value) == ("work_email", "no address")


def test_phones_are_read_into_e164_and_letters_are_refused() -> None:
    assert parse_phone("+49 30 901820") == "+4930901820"
    assert parse_phone("030 901820", "DE") == "+4930901820"
    for typed in ("+1 800 FLOWERS", "+49 30 9O1820", "call +49 30 901820"):
        with pytest.raises(ValidationError) as wrong:
            parse_phone(typed)
        assert (wrong.value.field, wrong.value.value) == ("phone", typed)
    with pytest.raises(ValidationError) as wrong:
        parse_phone("+49 1", field="mobile")
    assert wrong.value.field == "mobile"
    # The models read typed numbers the same way: no letters read as digits.
    with pytest.raises(ValidationError) as wrong:
        Contact.new(phone="+49 30 9O1820", clock=CLOCK)
    assert (wrong.value.field, wrong.value.value) == ("phone", "+49 30 9O1820")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("UK", "GB"),
        ("U.K.", "GB"),
        ("Great Britain", "GB"),
        ("Storbritannien", "GB"),
        ("Deutschland", "DE"),
        ("germany", "DE"),
        ("Tyskland", "DE"),
        ("Sverige", "SE"),
        ("Schweden", "SE"),
        ("Österreich", "AT"),
        ("USA", "US"),
        ("Vereinigte Staaten", "US"),
        (" se ", "SE"),
        ("nl", "NL"),
    ],
)
def test_country_names_and_aliases_in_english_german_and_swedish(text: str, code: str) -> None:
    assert parse_country(text) == code


@pytest.mark.parametrize("text", ["Atlantis", "", "  ", "XX", "Deutschlandd", "D E"])
def test_an_unknown_country_is_a_typed_error_naming_field_and_value(text: str) -> None:
    with pytest.raises(UnknownCountry) as unknown:
        parse_country(text, field="billing_country")
    assert (unknown.value.field, unknown.value.value) == ("billing_country", text)
    assert isinstance(unknown.value, ValidationError)


def test_company_keys_drop_legal_forms() -> None:
    names = ["ACME GmbH & Co. KG", "Acme AB (publ)", "Acme, Inc.", "ACME Ltd", "The Acme AG"]
    assert {company_key(n) for n in names} == {"acme"}
    assert company_key("Volvo Cars AB") == "volvo cars"
    assert company_key("AG") == "ag"  # a name that is only a legal form keeps it
    assert company_key("Incorporated Stuff") == "incorporated stuff"


def test_empty_and_blank_values_never_match_each_other() -> None:
    for method in Method:
        if method in (Method.DATE, Method.NUMBER):
            continue
        comparison = Comparison("x", "x", method, (0.8,) if method is not Method.EXACT else ())
        for a, b in (("", ""), ("  ", "\t"), (None, None), ("", "   ")):
            assert comparison.level({"x": a}, {"x": b}) is None
    key = BlockingKey("x", ("x",))
    assert key.value({"x": " "}) is None
    assert key.value({"x": None}) is None
    blank = [{"id": n, "first_name": " ", "last_name": "", "email": None} for n in range(3)]
    result = duplicate_pairs(blank, CONTACT_SPEC, weights=CONTACT_WEIGHTS)
    assert result.compared == 0
    assert result.pairs == ()


# ---------------------------------------------------------------------------- similarities

_TEXT = st.text(alphabet=string.ascii_lowercase[:6] + " éö", max_size=14)


@settings(max_examples=400, deadline=None)
@given(_TEXT, _TEXT)
def test_the_pure_python_similarities_give_rapidfuzzs_scores(a: str, b: str) -> None:
    from rapidfuzz import distance, fuzz  # noqa: PLC0415

    assert _pure_jaro_winkler(a, b) == pytest.approx(distance.JaroWinkler.similarity(a, b))
    assert _pure_levenshtein(a, b) == pytest.approx(
        distance.Levenshtein.normalized_similarity(a, b)
    )
    assert _pure_token_set(a, b) == pytest.approx(fuzz.token_set_ratio(a, b) / 100)


def test_without_rapidfuzz_the_fallback_gives_the_same_levels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pairs = [("martha", "marhta"), ("dixon", "dicksonx"), ("ada king", "king ada lovelace")]
    fast = [f(a, b) for a, b in pairs for f in (jaro_winkler, levenshtein, token_set)]
    monkeypatch.setitem(sys.modules, "rapidfuzz", None)
    slow = [f(a, b) for a, b in pairs for f in (jaro_winkler, levenshtein, token_set)]
    assert slow == pytest.approx(fast)


def test_comparison_levels_for_dates_and_numbers() -> None:
    born = Comparison("born", "born", Method.DATE, (0, 31))
    assert born.level({"born": "1990-01-05"}, {"born": "19900105"}) == 3  # equal dates
    assert born.level({"born": "1990-01-05"}, {"born": "1990-01-20"}) == 1
    assert born.level({"born": "1990-01-05"}, {"born": "1991-01-20"}) == 0
    assert born.level({"born": "1990-01-05"}, {"born": "not a date"}) is None
    size = Comparison("size", "size", Method.NUMBER, (0.05,))
    assert size.level({"size": 100}, {"size": "103"}) == 1
    assert size.level({"size": 100}, {"size": 200}) == 0
    with pytest.raises(ValidationError) as wrong:
        Comparison("x", "x", Method.JARO_WINKLER, (0.8, 0.9))
    assert wrong.value.field == "thresholds"


# ---------------------------------------------------------------------------- EM and pairs

_SYLLABLES = ["an", "ber", "ca", "di", "er", "fri", "gus", "han", "in", "jo", "kar", "lo", "mi"]


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text))
    return text[:i] + rng.choice("aeiourst") + text[i + 1 :]


def _people(rng: random.Random, n: int) -> tuple[list[dict[str, Any]], set[frozenset[int]]]:
    """``n`` people and a changed copy of every third: typos, a missing field."""
    records: list[dict[str, Any]] = []
    truth = set()
    for i in range(n):
        person = {
            "id": len(records),
            "first_name": "".join(rng.choices(_SYLLABLES, k=2)),
            "last_name": "".join(rng.choices(_SYLLABLES, k=3)) + rng.choice(["", "berg", "son"]),
            "email": None,
            "phone": f"+46{rng.randrange(10**8, 10**9)}",
            "country": rng.choice(["SE", "DE", "NO"]),
        }
        person["email"] = f"{person['first_name']}.{person['last_name']}@example{i % 7}.org"
        records.append(person)
        if i % 3 == 0:
            copy = dict(person, id=len(records))
            copy["last_name"] = _typo(rng, person["last_name"])
            if rng.random() < 0.5:
                copy["email"] = None
            else:
                copy["phone"] = None
            records.append(copy)
            truth.add(frozenset((person["id"], copy["id"])))
    return records, truth


def test_em_learns_weights_without_labels_that_find_the_duplicates() -> None:
    records, truth = _people(random.Random(7), 600)
    result = duplicate_pairs(records, CONTACT_SPEC)
    found = {frozenset((p.left, p.right)) for p in result.pairs if p.verdict is Verdict.DUPLICATE}
    hits = len(found & truth)
    assert hits / len(found) >= 0.98, "precision"
    assert hits / len(truth) >= 0.95, "recall"
    weights = result.model.weights
    assert weights == estimate_weights(CONTACT_SPEC, records), "the same estimate both ways"
    level_weights = weights.level_weights()
    for comparison, levels in zip(CONTACT_SPEC.comparisons, level_weights, strict=True):
        assert levels[-1] > 0 > levels[0], f"{comparison.name}: equal counts for, different against"


def test_every_pair_explains_its_weight() -> None:
    records, _truth = _people(random.Random(3), 60)
    result = duplicate_pairs(records, CONTACT_SPEC, weights=CONTACT_WEIGHTS)
    assert result.pairs
    prior = result.model._prior_weight
    for pair in result.pairs:
        assert [c.comparison for c in pair.contributions] == [
            c.name for c in CONTACT_SPEC.comparisons
        ]
        assert pair.weight == pytest.approx(prior + sum(c.weight for c in pair.contributions))
        assert pair.verdict is CONTACT_SPEC.verdict(pair.probability)
        missing = [c for c in pair.contributions if c.level is None]
        assert all(c.weight == 0 and c.label == "missing" for c in missing)
        assert "match weight" in pair.explain()


def test_estimation_needs_candidate_pairs() -> None:
    with pytest.raises(ValidationError) as few:
        estimate_weights(CONTACT_SPEC, [{"id": 1, "first_name": "a", "last_name": "b"}])
    assert few.value.field == "records"
    with pytest.raises(ValidationError) as twice:
        duplicate_pairs([{"id": 1}, {"id": 1}], CONTACT_SPEC, weights=CONTACT_WEIGHTS)
    assert twice.value.field == "records[1]"


def test_specs_refuse_inconsistent_thresholds() -> None:
    with pytest.raises(ValidationError) as wrong:
        attrs.evolve(CONTACT_SPEC, review=0.995)
    assert wrong.value.field == "review"
    with pytest.raises(ValidationError):
        DuplicateSpec(comparisons=CONTACT_SPEC.comparisons * 2, blocking=CONTACT_SPEC.blocking)


def _pair(a: int, b: int, verdict: Verdict = Verdict.DUPLICATE) -> DuplicatePair:
    return DuplicatePair(a, b, 9.0, 0.998, verdict, ())


def test_clusters_are_transitive_report_chains_and_cap_their_size() -> None:
    found = clusters([_pair(1, 2), _pair(2, 3), _pair(4, 5), _pair(6, 7, Verdict.REVIEW)])
    assert [c.members for c in found] == [(1, 2, 3), (4, 5)]
    assert found[0].chained == ((1, 3),)
    assert found[1].chained == ()
    assert not any(c.too_large for c in found)
    chain = [_pair(n, n + 1) for n in range(12)]
    (big,) = clusters(chain, max_size=10)
    assert big.too_large
    assert len(big.members) == 13
    with pytest.raises(ValidationError):
        clusters(chain, max_size=1)


# ---------------------------------------------------------------------------- through the CRM


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "quality")


def _contact(**fields: Any) -> Contact:
    return Contact.new(clock=CLOCK, **fields)


def test_find_duplicates_before_create_through_the_stores_keys(store: Store) -> None:
    crm = CRM(store)
    ada = crm.create_contact(
        _contact(email="ada.lovelace@gmail.com", first_name="Ada", last_name="Lovelace")
    )
    crm.create_contact(_contact(email="grace@example.org", first_name="Grace", last_name="Hopper"))
    acme = crm.create_account(Account.new(name="ACME GmbH", domain="acme.example", clock=CLOCK))

    same_mailbox = _contact(email="adalovelace+news@googlemail.com", first_name="Ada")
    (pair,) = crm.find_duplicates(same_mailbox)
    assert (pair.left, pair.right, pair.verdict) == (same_mailbox.id, ada.id, Verdict.DUPLICATE)
    assert {c.comparison: c.label for c in pair.contributions}["email"] == "equal"

    by_name = crm.find_duplicates(_contact(first_name="Dr. Ada", last_name="LOVELACE"))
    assert [(p.right, p.verdict) for p in by_name] == [(ada.id, Verdict.REVIEW)]
    assert crm.find_duplicates(_contact(first_name="Alan", last_name="Turing")) == []
    assert crm.find_duplicates(ada) == [], "a stored contact is no duplicate of itself"

    (company,) = crm.find_duplicates(Account.new(name="Acme AG", clock=CLOCK))
    assert company.right == acme.id

    # The keys follow updates and deletes.
    crm.update_contact(ada.id, last_name="King", email="ada.king@example.org")
    assert crm.find_duplicates(same_mailbox) == []
    assert [p.right for p in crm.find_duplicates(_contact(first_name="Ada", last_name="King"))] == [
        ada.id
    ]
    crm.delete_contact(ada.id)
    assert crm.find_duplicates(_contact(first_name="Ada", last_name="King")) == []


def test_find_duplicates_refuses_keys_that_no_store_indexes(store: Store) -> None:
    crm = CRM(store)
    custom = attrs.evolve(
        CONTACT_SPEC, blocking=(BlockingKey("owner", ("owner",), Normaliser.TEXT),)
    )
    from crmkit.quality import DuplicateModel  # noqa: PLC0415

    with pytest.raises(ValidationError) as wrong:
        crm.find_duplicates(
            _contact(first_name="Ada"), model=DuplicateModel(custom, CONTACT_WEIGHTS)
        )
    assert (wrong.value.field, wrong.value.value) == ("model", ["owner"])
    with pytest.raises(ValidationError) as wrong:
        crm.find_duplicates("ada")  # type: ignore[arg-type]
    assert wrong.value.field == "candidate"


def test_batch_pairs_and_clusters_of_the_stored_contacts(store: Store) -> None:
    crm = CRM(store)
    people = [
        _contact(first_name="Ada", last_name="Lovelace", phone="+442071234567"),
        _contact(first_name="Ada", last_name="Lovelace", phone="+442071234567", country="GB"),
        _contact(first_name="Ada", last_name="Lovelacee", phone="+442071234567"),
        _contact(first_name="Grace", last_name="Hopper"),
    ]
    for person in people:
        crm.create_contact(person)
    result = crm.duplicate_pairs(weights=CONTACT_WEIGHTS)
    duplicates = [p for p in result.pairs if p.verdict is Verdict.DUPLICATE]
    assert {frozenset((p.left, p.right)) for p in duplicates} == {
        frozenset((a.id, b.id)) for i, a in enumerate(people[:3]) for b in people[i + 1 : 3]
    }
    (cluster,) = clusters(result.pairs)
    assert set(cluster.members) == {p.id for p in people[:3]}
    with pytest.raises(ValidationError) as few:
        CRM(store.for_tenant("empty")).duplicate_pairs()
    assert few.value.field == "records"


def test_the_audit_counts_fill_stale_unreachable_and_invalid(store: Store) -> None:
    crm = CRM(store)
    old = NOW - timedelta(days=400)
    quiet = Contact.new(email="quiet@example.org", first_name="Q", clock=FixedClock(old))
    active = Contact.new(email="active@example.org", clock=FixedClock(old))
    unreachable = _contact(first_name="R2D2")
    blocked = _contact(email="no@example.org", do_not_contact=True)
    for contact in (quiet, active, unreachable, blocked):
        crm.create_contact(contact)
    with store.unit_of_work() as unit:
        unit.activities.add(
            Activity.new(
                contact_id=active.id,
                kind=ActivityKind.PAGE_VIEW,
                occurred_at=NOW - timedelta(days=3),
                clock=CLOCK,
            )
        )
        unit.commit()
    crm.create_account(Account.new(name="GmbH", domain="acme.example", clock=CLOCK))
    crm.create_account(Account.new(name="Initech", clock=CLOCK))

    report = crm.audit(stale_after_days=180)
    assert (report.contacts, report.accounts) == (4, 2)
    assert report.fill("contact", "email").filled == 3
    assert report.fill("contact", "email").rate == 0.75
    assert report.fill("contact", "first_name").filled == 2
    assert report.fill("account", "domain").rate == 0.5
    assert report.stale == 1, "old and without activity: quiet only"
    assert report.unreachable == 2, "no e-mail and no phone, or do-not-contact"
    assert {(v.entity, v.field, v.value) for v in report.invalid} == {
        ("contact", "first_name", "R2D2"),
        ("account", "name", "GmbH"),
    }
    assert "unreachable contacts: 2" in report.summary()
    with pytest.raises(ValidationError) as wrong:
        crm.audit(stale_after_days=0)
    assert wrong.value.field == "stale_after_days"


def test_the_audit_checks_a_sample_of_the_values_when_asked(store: Store) -> None:
    crm = CRM(store)
    people = [_contact(first_name=f"R2D{i}", email=f"r{i}@example.org") for i in range(5)]
    for contact in people:
        crm.create_contact(contact)
    full = crm.audit()
    assert len(full.invalid) == 5
    sampled = crm.audit(sample=2)
    # The first two by id: a uniform sample, as ids are random.
    assert [v.id for v in sampled.invalid] == sorted(c.id for c in people)[:2]
    assert (sampled.contacts, sampled.fill("contact", "first_name").filled) == (5, 5)
    assert len(crm.audit(sample=100).invalid) == 5
    for wrong in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValidationError) as refused:
            crm.audit(sample=wrong)  # type: ignore[arg-type]
        assert refused.value.field == "sample"
