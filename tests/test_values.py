import sys
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from crmkit.errors import CurrencyMismatch, ValidationError
from crmkit.models import (
    COUNTRIES,
    CURRENCIES,
    CountryCode,
    CustomFields,
    EmailAddress,
    LanguageCode,
    Money,
    PhoneNumber,
    normalise_tags,
)
from crmkit.models._values import _normal_domain, _normal_domain_slow
from crmkit.testing import strategies as cst

# ---------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace@Example.COM \n", "Ada.Lovelace@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("user@xn--p1ai.xn--p1ai", "user@рф.рф"),
        ("jörg@Bücher.DE", "jörg@bücher.de"),
        ("x@a-b.io", "x@a-b.io"),
    ],
)
def test_email_is_trimmed_and_its_domain_lower_cased(raw: str, normalised: str) -> None:
    address = EmailAddress(raw)
    assert address == normalised
    assert isinstance(address, str)
    assert address.domain == normalised.partition("@")[2]


def test_email_keeps_the_case_of_the_local_part() -> None:
    address = EmailAddress("Ada@EXAMPLE.com")
    assert address.local == "Ada"
    assert address.domain == "example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "ada@",
        "ada@example",
        "ada@@example.com",
        "ada@exa mple.com",
        "a da@example.com",
        ".ada@example.com",
        "ada.@example.com",
        "a..da@example.com",
        '"quoted"@example.com',
        "ada@[127.0.0.1]",
        "ada@-example.com",
        "ada@example-.com",
        "ada@example.c",
        "ada@example.123",
        "ada@exa_mple.com",
        "ada(comment)@example.com",
        "a" * 65 + "@example.com",
        "ada@" + "a" * 64 + ".com",
        "ada@" + ".".join(["abcdefghij"] * 25) + ".com",
        "ada\x00@example.com",
    ],
)
def test_invalid_emails_are_rejected_with_the_value(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EmailAddress(raw)
    assert caught.value.value == raw


@pytest.mark.parametrize("raw", [None, 42, b"ada@example.com", ["ada@example.com"]])
def test_email_must_be_a_string(raw: object) -> None:
    with pytest.raises(ValidationError, match="string"):
        EmailAddress(raw)  # type: ignore[arg-type]


@given(cst.emails())
def test_generated_emails_are_already_normal(address: EmailAddress) -> None:
    assert EmailAddress(address) == address
    assert EmailAddress(f"  {address.local}@{address.domain.upper()} ") == address


@given(st.emails())
def test_hypothesis_emails_are_accepted(raw: str) -> None:
    assume(len(raw) <= 254 and len(raw.partition("@")[2]) <= 253)
    assert EmailAddress(raw).local == raw.partition("@")[0]


@given(st.text(st.characters(codec="ascii")).filter(lambda s: s.strip().count("@") != 1))
def test_text_without_exactly_one_at_is_never_an_email(raw: str) -> None:
    with pytest.raises(ValidationError):
        EmailAddress(raw)


@given(cst.emails(), st.sampled_from([" ", "\t", ",", ";", "<", ">", "\\", '"', "\x01"]))
def test_emails_with_a_forbidden_character_are_rejected(address: str, bad: str) -> None:
    with pytest.raises(ValidationError):
        EmailAddress(f"{address[0]}{bad}{address[1:]}")


_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


@given(st.from_regex(rf"(?:{_HOST_LABEL}\.){{1,3}}[a-zA-Z0-9-]{{1,64}}", fullmatch=True))
def test_the_fast_path_for_normal_domains_agrees_with_the_full_check(domain: str) -> None:
    try:
        expected: str | type[ValidationError] = _normal_domain_slow(domain, domain)
    except ValidationError:
        expected = ValidationError
    try:
        actual: str | type[ValidationError] = _normal_domain(domain, domain)
    except ValidationError:
        actual = ValidationError
    assert actual == expected


# ---------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+4930123456", "+4930123456"),
        (" +49 (30) 123-456 ", "+4930123456"),
        ("+1.415.555.2671", "+14155552671"),
        ("+46 8/123 456 78", "+46812345678"),
    ],
)
def test_phone_constructor_is_the_strict_basic_check(raw: str, e164: str) -> None:
    assert PhoneNumber(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "030 123456",
        "0049 30 123456",
        "+0301234567",
        "+12345",
        "+1234567890123456",
        "+49 30 CALL-ME",
        "",
        "+",
    ],
)
def test_phone_constructor_rejects_anything_but_international_numbers(raw: str) -> None:
    with pytest.raises(ValidationError, match="international"):
        PhoneNumber(raw)


def test_parse_reads_national_numbers_with_phonenumbers() -> None:
    pytest.importorskip("phonenumbers")
    assert PhoneNumber.parse("030 901820", region="DE") == "+4930901820"
    assert PhoneNumber.parse("(415) 555-2671", region="us") == "+14155552671"
    assert PhoneNumber.parse("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("+1 200 555 0100", None, "numbering plan"),
        ("+1 415 555 2671 ext. 12", None, "extensions"),
        ("not a number", "DE", "not a phone number"),
        ("030 901820", None, "not a phone number"),
    ],
)
def test_parse_checks_the_numbering_plan(raw: str, region: str | None, reason: str) -> None:
    pytest.importorskip("phonenumbers")
    with pytest.raises(ValidationError, match=reason):
        PhoneNumber.parse(raw, region)


def test_parse_rejects_an_unknown_region() -> None:
    with pytest.raises(ValidationError, match="3166"):
        PhoneNumber.parse("030 901820", region="QQ")


def test_parse_without_the_quality_extra_falls_back_to_the_basic_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "phonenumbers", None)  # import now raises ImportError
    assert PhoneNumber.parse("+49 30 901820") == "+4930901820"
    # Without the numbering plans only the form is checked: this unassigned US area code
    # passes here, and is rejected where phonenumbers is installed.
    assert PhoneNumber.parse("+1 200 555 0100") == "+12005550100"
    with pytest.raises(ValidationError, match="'quality' extra"):
        PhoneNumber.parse("030 901820", region="DE")


@given(cst.phone_numbers(), st.sampled_from([" ", "-", ".", "/", "\u00a0"]), st.data())
def test_phone_numbers_read_back_from_any_grouping(
    number: PhoneNumber, separator: str, data: st.DataObject
) -> None:
    assert PhoneNumber(number) == number
    digits = number[1:]
    cut = data.draw(st.integers(1, len(digits) - 1))
    assert PhoneNumber(f"+{digits[:cut]}{separator}{digits[cut:]}") == number


# ---------------------------------------------------------------------------- ISO codes


def test_country_codes_are_read_case_insensitively() -> None:
    assert CountryCode(" de ") == "DE"
    assert CountryCode("XK") == "XK"
    assert len(COUNTRIES) == 250


@pytest.mark.parametrize("raw", ["", "D", "DEU", "XX", "UK", "EU", "12", "d e"])
def test_unknown_country_codes_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError, match="3166") as caught:
        CountryCode(raw)
    assert caught.value.value == raw


@pytest.mark.parametrize(
    ("raw", "tag", "language", "region"),
    [("de", "de", "de", None), ("EN_gb", "en-GB", "en", "GB"), (" sv-se", "sv-SE", "sv", "SE")],
)
def test_language_codes(raw: str, tag: str, language: str, region: str | None) -> None:
    code = LanguageCode(raw)
    assert (code, code.language, code.region) == (tag, language, region)


@pytest.mark.parametrize("raw", ["", "deu", "xx", "en-XX", "en-", "english", "e"])
def test_unknown_language_codes_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        LanguageCode(raw)


@given(st.text(min_size=2, max_size=2))
def test_a_country_code_is_one_of_the_table(raw: str) -> None:
    assume(raw.strip().upper() not in COUNTRIES)
    with pytest.raises(ValidationError):
        CountryCode(raw)


# ---------------------------------------------------------------------------- money


def test_money_keeps_the_amount_exactly() -> None:
    price = Money("19.90", "eur")
    assert price.amount == Decimal("19.90")
    assert str(price.amount) == "19.90"
    assert price.currency == "EUR"
    assert str(price) == "19.90 EUR"
    assert Money(5, "JPY").amount == Decimal(5)


def test_money_arithmetic_within_one_currency() -> None:
    a, b = Money("10.10", "EUR"), Money("0.20", "EUR")
    assert a + b == Money("10.30", "EUR")
    assert a - b == Money("9.90", "EUR")
    assert -a == Money("-10.10", "EUR")
    assert abs(Money("-3", "EUR")) == Money("3", "EUR")
    assert a * 3 == Money("30.30", "EUR")
    assert 3 * a == a * 3
    assert a * Decimal("0.5") == Money("5.05", "EUR")
    assert b < a
    assert a > b
    assert a >= Money("10.10", "EUR")
    assert b <= a
    assert sum([a, b, b], Money.zero("EUR")) == Money("10.50", "EUR")


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_money_of_two_currencies_does_not_mix(operation: object) -> None:
    with pytest.raises(CurrencyMismatch) as caught:
        operation(Money("1", "EUR"), Money("1", "USD"))  # type: ignore[operator]
    assert caught.value.field == "currency"
    assert caught.value.value == "USD"
    assert "EUR and USD" in str(caught.value)


def test_money_of_two_currencies_is_never_equal() -> None:
    assert Money("1", "EUR") != Money("1", "USD")


def test_money_refuses_floats_and_other_numbers() -> None:
    with pytest.raises(ValidationError, match="floats") as caught:
        Money(0.1, "EUR")  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("amount", 0.1)
    with pytest.raises(TypeError):
        Money("1", "EUR") * 0.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money("1", "EUR") + 1  # type: ignore[operator]
    with pytest.raises(ValidationError):
        Money(True, "EUR")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-inf", "1,50", "abc", ""])
def test_money_amount_must_be_a_finite_decimal(amount: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Money(amount, "EUR")
    assert caught.value.field == "amount"


@pytest.mark.parametrize("currency", ["", "EURO", "XXX", "XAU", "ABC", "€", "eu"])
def test_money_currency_must_be_iso_4217(currency: str) -> None:
    with pytest.raises(ValidationError, match="4217") as caught:
        Money("1", currency)
    assert (caught.value.field, caught.value.value) == ("currency", currency)


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("2.345", "EUR", "2.34"),
        ("2.355", "EUR", "2.36"),
        ("1234.5", "JPY", "1234"),
        ("1.2345", "KWD", "1.234"),
        ("7", "EUR", "7.00"),
    ],
)
def test_rounding_to_minor_units_is_half_even(amount: str, currency: str, rounded: str) -> None:
    result = Money(amount, currency).rounded()
    assert str(result.amount) == rounded
    assert result.minor_units == CURRENCIES[currency]


@given(st.data(), cst.currencies())
def test_money_addition_is_exact_and_invertible(data: st.DataObject, currency: str) -> None:
    a, b, c = (data.draw(cst.money(currency)) for _ in range(3))
    assert (a + b) - b == a
    assert (a + b) + c == a + (b + c)
    assert a + Money.zero(currency) == a
    assert a + b == b + a


# ---------------------------------------------------------------------------- tags & custom


def test_tags_are_trimmed_collapsed_and_deduplicated() -> None:
    assert normalise_tags([" vip ", "vip", "big   fish"]) == frozenset({"vip", "big fish"})


@pytest.mark.parametrize("value", ["vip", [""], ["  "], [1], ["x" * 65], ["a\tb\x07"], None, 3])
def test_invalid_tags_are_rejected(value: object) -> None:
    with pytest.raises(ValidationError):
        normalise_tags(value)  # type: ignore[arg-type]


def test_custom_fields_are_an_immutable_hashable_mapping() -> None:
    custom = CustomFields({"plan": "pro", "seats": 12, "trial": False, "mrr": 99.5, "ref": None})
    assert custom["plan"] == "pro"
    assert dict(custom) == {"plan": "pro", "seats": 12, "trial": False, "mrr": 99.5, "ref": None}
    assert custom == {"plan": "pro", "seats": 12, "trial": False, "mrr": 99.5, "ref": None}
    assert hash(custom) == hash(CustomFields(dict(custom)))
    assert custom.set(seats=13)["seats"] == 13
    assert custom["seats"] == 12
    assert "plan" not in custom.without("plan")
    with pytest.raises(TypeError):
        custom["plan"] = "free"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"Plan": "pro"}, "Plan"),
        ({"1st": 1}, "['1st']"),
        ({"has space": 1}, "['has space']"),
        ({"x" * 64: 1}, "x" * 64),
        ({"plan": ["a"]}, "plan"),
        ({"plan": {"nested": 1}}, "plan"),
        ({"nan": float("nan")}, "nan"),
        ({"big": 2**63}, "big"),
        ({"nul": "a\x00b"}, "nul"),
        ({"amount": Decimal("1.5")}, "amount"),
    ],
)
def test_invalid_custom_fields_name_the_key(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CustomFields(data)  # type: ignore[arg-type]
    assert caught.value.field == field


@given(cst.custom_fields())
def test_generated_custom_fields_round_trip_through_dict(custom: CustomFields) -> None:
    assert CustomFields(dict(custom)) == custom


def test_money_reports_amount_and_currency_together() -> None:
    with pytest.raises(ValidationError) as caught:
        Money(1.5, "EURO")  # type: ignore[arg-type]
    assert {p.field: p.value for p in caught.value.problems} == {"amount": 1.5, "currency": "EURO"}


def test_money_accepts_decimal_subclasses() -> None:
    class Exact(Decimal):
        pass

    assert Money(Exact("1.5"), "EUR").amount == Decimal("1.5")


def test_custom_field_names_that_are_not_identifiers_are_bracketed() -> None:
    with pytest.raises(ValidationError) as caught:
        CustomFields({"Shoe Size": 44})
    assert caught.value.within("custom").field == "custom['Shoe Size']"


# ---------------------------------------------------------------------------- review findings


@pytest.mark.parametrize(
    ("spelling_a", "spelling_b"),
    [
        ("ada@bücher.de", "ada@xn--bcher-kva.de"),
        ("ada@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "ada@example.com"),
        ("cafe\u0301@example.com", "caf\u00e9@example.com"),
    ],
)
def test_one_mailbox_has_one_address(spelling_a: str, spelling_b: str) -> None:
    assert EmailAddress(spelling_a) == EmailAddress(spelling_b)


def test_idna_2003_mappings_do_not_change_the_domain() -> None:
    assert EmailAddress("ada@straße.de").domain == "straße.de"


@pytest.mark.parametrize(
    "raw",
    ["ada@ex\u200bample.com", "ada@xn--zz.com", "\u0301ada@example.com", "ada@exa\u2603mple.com"],
)
def test_invisible_or_malformed_domain_characters_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        EmailAddress(raw)


@pytest.mark.parametrize(
    "raw",
    ["+-49 30 901820", "+49((30))901820", "+49 30 901820-", "+49..30 901820", "+49 30 9O1820"],
)
def test_phone_separators_stand_only_between_digits(raw: str) -> None:
    with pytest.raises(ValidationError):
        PhoneNumber(raw)


@pytest.mark.parametrize(
    ("cls", "raw"),
    [
        (CountryCode, "ß"),
        (CountryCode, "\u212aE"),
        (LanguageCode, "\u212aa"),
        (LanguageCode, "\u017fv"),
    ],
)
def test_iso_codes_are_ascii(cls: type, raw: str) -> None:
    with pytest.raises(ValidationError):
        cls(raw)


@pytest.mark.parametrize("currency", ["ßp", "eur\u0131"])
def test_currency_codes_are_ascii(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money("1", currency)


@given(st.text(max_size=5))
def test_anything_outside_the_iso_4217_table_is_not_a_currency(raw: str) -> None:
    assume(not (raw.isascii() and raw.strip().upper() in CURRENCIES))
    with pytest.raises(ValidationError) as caught:
        Money("1", raw)
    assert caught.value.field == "currency"


@pytest.mark.parametrize("amount", ["1_000", " 12 ", "\u0661\u0662", "1e19", "0.0000000000001"])
def test_money_amounts_are_plain_bounded_decimals(amount: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Money(amount, "EUR")
    assert caught.value.field == "amount"


def test_money_arithmetic_is_exact_or_refused() -> None:
    big = Money("999999999999999999.99", "EUR")
    assert big - Money("0.01", "EUR") == Money("999999999999999999.98", "EUR")
    assert Money("12345678901234567.89", "EUR") + Money("0.01", "EUR") == Money(
        "12345678901234567.90", "EUR"
    )
    with pytest.raises(ValidationError, match="integer digits"):
        big + big
    with pytest.raises(ValidationError):
        big * 10**30
    assert Money("999999999999999999.125", "EUR").rounded().amount == Decimal(
        "999999999999999999.12"
    )


def test_custom_fields_keep_json_types_apart() -> None:
    assert CustomFields({"trial": True}) != CustomFields({"trial": 1})
    assert CustomFields({"seats": 1}) != CustomFields({"seats": 1.0})
    assert CustomFields({"seats": 1}) == {"seats": 1}
    assert CustomFields({"trial": True}) != {"trial": 1}


def test_custom_fields_store_enum_values_as_plain_json() -> None:
    from enum import IntEnum, StrEnum  # noqa: PLC0415

    class Plan(StrEnum):
        PRO = "pro"

    class Seats(IntEnum):
        TEN = 10

    custom = CustomFields({"plan": Plan.PRO, "seats": Seats.TEN})
    assert type(custom["plan"]) is str
    assert type(custom["seats"]) is int


@pytest.mark.parametrize("value", ["a\ud800b", "\udfff"])
def test_lone_surrogates_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="surrogate"):
        CustomFields({"note": value})


def test_tags_are_not_read_from_a_mapping() -> None:
    with pytest.raises(ValidationError):
        normalise_tags({"vip": True})  # type: ignore[arg-type]
