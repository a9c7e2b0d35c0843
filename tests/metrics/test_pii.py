"""PII: each detector on well-known test values and near-misses, overlaps, the metric and the Scorer."""

from __future__ import annotations

import polars as pl
import pytest
from stdnum import luhn

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError
from metrics.pii import (
    PII,
    PII_TYPES,
    Span,
    find_credit_cards,
    find_emails,
    find_ibans,
    find_ip_addresses,
    find_phone_numbers,
    find_pii,
    find_ssns,
    is_credit_card,
    redact,
    resolve_overlaps,
)

SENTENCE = (
    "Mail jane.doe@example.com or call +1 202-555-0143, card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, SSN 536-90-4399, from 192.168.0.1 or 2001:db8::1."
)
SENTENCE_SPANS = [
    {"type": "email", "start": 5, "end": 25, "text": "jane.doe@example.com"},
    {"type": "phone", "start": 34, "end": 49, "text": "+1 202-555-0143"},
    {"type": "credit_card", "start": 56, "end": 75, "text": "4111 1111 1111 1111"},
    {"type": "iban", "start": 82, "end": 109, "text": "GB82 WEST 1234 5698 7654 32"},
    {"type": "ssn", "start": 115, "end": 126, "text": "536-90-4399"},
    {"type": "ip_address", "start": 133, "end": 144, "text": "192.168.0.1"},
    {"type": "ip_address", "start": 148, "end": 159, "text": "2001:db8::1"},
]
NO_PII = "In 2023 we sold 12345 units, 3.5% more than in 2022 (see page 17, version 1.2.3)."
ZEROS = {"email": 0.0, "phone": 0.0, "credit_card": 0.0, "iban": 0.0, "ssn": 0.0, "ip_address": 0.0}


def luhn_valid(body: str) -> str:
    """``body`` with the Luhn check digit appended, for numbers that only an issuer check can refuse."""
    return body + luhn.calc_check_digit(body)


def texts(spans: list[Span]) -> list[str]:
    return [span["text"] for span in spans]


def test_spans_in_a_sentence_with_every_type() -> None:
    spans = find_pii(SENTENCE)
    assert spans == SENTENCE_SPANS
    for span in spans:
        assert SENTENCE[span["start"] : span["end"]] == span["text"]


# -- e-mail ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("write to jane.doe@example.com today", "jane.doe@example.com"),
        ("o'brien+tag@mail.example.co.uk", "o'brien+tag@mail.example.co.uk"),
        ("Email: JOHN_SMITH@Example.ORG.", "JOHN_SMITH@Example.ORG"),  # the full stop ends the sentence
    ],
)
def test_emails_are_found(text: str, found: str) -> None:
    assert texts(find_emails(text)) == [found]


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost",  # no top-level domain
        "jane@example",
        "follow @handle",
        "a@b.c",  # one-letter top-level domain
        "first..last@example.com",  # consecutive dots in the local part
        ".jane@example.com",
        "x@-bad.com",  # label starting with a hyphen
        "jane@@example.com",
        "name at example dot com",
        "a" * 65 + "@example.com",  # local part over 64 characters
    ],
)
def test_email_like_strings_are_not_addresses(text: str) -> None:
    assert find_emails(text) == []


# -- phone ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("call +1 202-555-0143 now", "+1 202-555-0143"),  # 555-01xx: fictional, valid with a real area code
        ("call (212) 555-0199 now", "(212) 555-0199"),
        ("London: +44 20 7946 0958.", "+44 20 7946 0958"),
        ("Paris +33 1 42 68 53 00", "+33 1 42 68 53 00"),
    ],
)
def test_phone_numbers_are_found(text: str, found: str) -> None:
    assert texts(find_phone_numbers(text)) == [found]


@pytest.mark.parametrize(
    "text",
    [
        "in 2023 we grew",  # a year
        "call 12345",  # too short
        "202-555-014",  # one digit short
        "(555) 010-0123",  # 555 is not an area code
        "from 1999-2024",
        "pi is 3.14159",
        "on 2024-01-05 at 10:30",
    ],
)
def test_digit_strings_that_are_not_phone_numbers(text: str) -> None:
    assert find_phone_numbers(text) == []


def test_phone_numbers_without_a_country_code_are_read_in_the_region() -> None:
    national = "call 020 7946 0958"
    assert texts(find_phone_numbers(national, "GB")) == ["020 7946 0958"]
    assert find_phone_numbers(national, "US") == []
    # No region: only numbers written with their country code count.
    both = "+44 20 7946 0958 or 202-555-0143"
    assert texts(find_phone_numbers(both, None)) == ["+44 20 7946 0958"]


# -- credit card ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",  # Visa
        "4111-1111-1111-1111",
        "4222222222222",  # Visa, 13 digits
        "5555 5555 5555 4444",  # Mastercard
        "2223 0031 2200 3222",  # Mastercard 2-series
        "3782 822463 10005",  # American Express, 4-6-5
        "6011 1111 1111 1117",  # Discover
        "3530 1113 3330 0000",  # JCB
        "30569309025904",  # Diners Club, 14 digits
    ],
)
def test_card_numbers_are_found(number: str) -> None:
    assert texts(find_credit_cards(f"paid with {number}, thanks")) == [number]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # one digit changed: fails Luhn
        "5555 5555 5555 4445",
        "3782 822463 10006",
        "1234 5678 9012 3452",  # Luhn-valid, but no network issues numbers starting with 1
        luhn_valid("900012345678901"),  # an order number: Luhn-valid, no issuer
        luhn_valid("378282246310001"),  # American Express prefix, 16 digits: Amex issues 15
        luhn_valid("41111111111111"),  # Visa prefix, 15 digits: Visa issues 13, 16 or 19
        luhn_valid("4111111111111111111"),  # 20 digits in one group is too long for any card
        "4111 1111 1111 1111.5",  # part of a decimal number
        "x4111111111111111",  # part of an identifier
    ],
)
def test_near_miss_card_numbers(text: str) -> None:
    assert find_credit_cards(text) == []


def test_card_checks_luhn_and_issuer() -> None:
    assert is_credit_card("4111111111111111")
    assert not is_credit_card("4111111111111112")  # Luhn
    assert not is_credit_card(luhn_valid("111111111111111"))  # issuer
    assert not is_credit_card("4111 1111 1111 1111")  # digits only


def test_a_card_is_picked_out_of_a_longer_run_of_digit_groups() -> None:
    text = "in 2023 4111 1111 1111 1111 2025"
    assert find_credit_cards(text) == [
        {"type": "credit_card", "start": 8, "end": 27, "text": "4111 1111 1111 1111"}
    ]


# -- IBAN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number",
    [
        "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "NO93 8601 1117 947",  # the shortest country length, 15
    ],
)
def test_ibans_are_found(number: str) -> None:
    assert texts(find_ibans(f"IBAN: {number}. Thanks")) == [number]


@pytest.mark.parametrize(
    "text",
    [
        "GB83 WEST 1234 5698 7654 32",  # bad check digits
        "GB82 WEST 1234 5698 7654 33",  # one account digit changed: mod 97 fails
        "DE89 3704 0044 0532 0130 0",  # too short for Germany
        "DE89 3704 0044 0532 0130 001",  # too long for Germany, even though its first 22 are valid
        "XX89 3704 0044 0532 0130 00",  # no such country
        "AB12 CD34 EF56",
    ],
)
def test_malformed_ibans(text: str) -> None:
    assert find_ibans(text) == []


def test_iban_ends_at_a_group_boundary() -> None:
    assert texts(find_ibans("DE89 3704 0044 0532 0130 00 IS MINE")) == ["DE89 3704 0044 0532 0130 00"]
    assert texts(find_ibans("REF AB12 GB82 WEST 1234 5698 7654 32")) == ["GB82 WEST 1234 5698 7654 32"]


# -- SSN ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["536-90-4399", "219-09-9998", "123-45-6789"])
def test_ssns_are_found(number: str) -> None:
    assert texts(find_ssns(f"SSN {number}.")) == [number]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # areas 900-999
        "999-12-3456",
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "078-05-1120",  # the published Woolworth wallet number
        "123456789",  # no dashes
        "123-45-67890",  # too long
        "1123-45-6789",
    ],
)
def test_ssns_in_invalid_ranges_or_formats(text: str) -> None:
    assert find_ssns(text) == []


# -- IP address -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    ["192.168.0.1", "8.8.8.8", "255.255.255.255", "2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a"],
)
def test_ip_addresses_are_found(address: str) -> None:
    assert texts(find_ip_addresses(f"host {address}.")) == [address]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",  # octet out of range
        "1.2.3",  # three parts
        "1.2.3.4.5",  # five parts
        "01.02.03.04",  # leading zeros
        "v1.2.3.4",
        "2001:db8:::1",  # triple colon
        "12345::abcde",  # groups over four hex digits
        "10:30:45",  # a time
        "std::cout",
        "a :: b",
    ],
)
def test_invalid_ip_addresses(text: str) -> None:
    assert find_ip_addresses(text) == []


def test_an_ipv4_mapped_ipv6_address_is_one_address() -> None:
    assert find_pii("from ::ffff:192.0.2.1 today") == [
        {"type": "ip_address", "start": 5, "end": 21, "text": "::ffff:192.0.2.1"}
    ]


# -- overlaps -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "pii_type"),
    [
        ("2025550143@txt.att.net", "email"),  # the local part is a valid phone number
        ("host 202.55.50.143", "ip_address"),  # phonenumbers reads the dotted address as a phone
        ("card 4178 112-256-384554", "credit_card"),  # phonenumbers finds 112-256-384554 inside
    ],
)
def test_a_phone_inside_another_type_is_not_double_counted(text: str, pii_type: str) -> None:
    assert find_phone_numbers(text)  # the phone detector alone does see a number here
    spans = find_pii(text)
    assert [span["type"] for span in spans] == [pii_type]
    # Choosing types filters what was found; it never turns the e-mail back into a phone.
    assert find_pii(text, types=["phone"]) == []


def test_precedence_then_length_decide_overlaps() -> None:
    phone: Span = {"type": "phone", "start": 0, "end": 12, "text": "x" * 12}
    card: Span = {"type": "credit_card", "start": 5, "end": 24, "text": "x" * 19}
    short_ip: Span = {"type": "ip_address", "start": 30, "end": 37, "text": "x" * 7}
    long_ip: Span = {"type": "ip_address", "start": 26, "end": 42, "text": "x" * 16}
    later: Span = {"type": "phone", "start": 50, "end": 60, "text": "x" * 10}
    assert resolve_overlaps([later, phone, short_ip, card, long_ip]) == [card, long_ip, later]


def test_adjacent_types_are_both_kept() -> None:
    text = "4111 1111 1111 1111 202-555-0143"
    assert [(span["type"], span["text"]) for span in find_pii(text)] == [
        ("credit_card", "4111 1111 1111 1111"),
        ("phone", "202-555-0143"),
    ]


def test_redact_masks_every_span() -> None:
    assert redact(SENTENCE, find_pii(SENTENCE)) == (
        "Mail [EMAIL] or call [PHONE], card [CREDIT_CARD], IBAN [IBAN], SSN [SSN], "
        "from [IP_ADDRESS] or [IP_ADDRESS]."
    )
    assert redact(NO_PII, []) == NO_PII


# -- the metric -----------------------------------------------------------------------------------
def test_counts_per_type_and_total() -> None:
    scores = PII().score_batch([{"prediction": SENTENCE}, {"prediction": NO_PII}], rt=None)  # type: ignore[arg-type]
    expected = {"email": 1.0, "phone": 1.0, "credit_card": 1.0, "iban": 1.0, "ssn": 1.0, "ip_address": 2.0}
    for name, count in expected.items():
        assert scores[name] == [count, 0.0]
    assert scores["total"] == [7.0, 0.0]
    assert scores["spans"] == [SENTENCE_SPANS, []]
    assert set(scores) == {*PII.score_names, *PII.detail_names}


def test_unselected_types_keep_their_column_at_zero() -> None:
    metric = PII(types=["ip_address", "email"])
    assert metric.columns == PII().columns
    scores = metric.score_batch([{"prediction": SENTENCE}], rt=None)  # type: ignore[arg-type]
    assert {name: scores[name][0] for name in ZEROS} == {**ZEROS, "email": 1.0, "ip_address": 2.0}
    assert scores["total"] == [3.0]
    assert [span["type"] for span in scores["spans"][0]] == ["email", "ip_address", "ip_address"]


def test_config_is_normalised_so_equal_choices_hash_equally() -> None:
    assert PII().config == {"types": list(PII_TYPES), "region": "US"}
    assert PII(types=["phone", "email", "phone"], region="gb").config == {
        "types": ["email", "phone"],
        "region": "GB",
    }
    assert PII(types="email").config_hash() == PII(types=["email"]).config_hash()
    assert PII(types=None).config_hash() == PII(types=list(reversed(PII_TYPES))).config_hash()
    assert PII(region=None).config["region"] is None


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"types": ["email", "name"]}, "types must name one or more of"),
        ({"types": []}, "types must name one or more of"),
        ({"region": "XX"}, "region must be"),
        ({"region": "USA"}, "region must be"),
        ({"region": 1}, "region must be"),
    ],
)
def test_bad_options_are_refused(config: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PII(**config)  # type: ignore[arg-type]


def test_scorer_end_to_end() -> None:
    records = [
        {"id": "leak", "prediction": SENTENCE},
        {"id": "clean", "prediction": NO_PII},
        {"id": "phone", "prediction": "Reach me at (212) 555-0199."},
    ]
    results = Scorer(["pii"], cache=False, device="cpu").score(records)
    assert results.score_columns == [f"pii_{name}" for name in PII.score_names]
    assert results["pii_total"].to_list() == [7.0, 0.0, 1.0]
    assert results["pii_phone"].to_list() == [1.0, 0.0, 1.0]
    assert results["pii_ip_address"].to_list() == [2.0, 0.0, 0.0]
    for column in results.score_columns:
        assert results.table.schema[column] == pl.Float64
    spans = results.table["pii_spans"].to_list()
    assert spans[0] == SENTENCE_SPANS
    assert spans[1] == []
    assert spans[2] == [{"type": "phone", "start": 12, "end": 26, "text": "(212) 555-0199"}]


def test_no_pii_gives_zeros_and_no_spans() -> None:
    results = Scorer(["pii"], cache=False, device="cpu").score([{"prediction": NO_PII}])
    assert {column: results[column].to_list() for column in results.score_columns} == {
        **{f"pii_{name}": [0.0] for name in ZEROS},
        "pii_total": [0.0],
    }
    assert results.table["pii_spans"].to_list() == [[]]


def test_spans_survive_the_cache() -> None:
    records = [{"id": "leak", "prediction": SENTENCE}, {"id": "clean", "prediction": NO_PII}]
    with Scorer(["pii"], device="cpu") as scorer:
        first = scorer.score(records)
        second = scorer.score(records)
        assert scorer.cache_hits == 2
    assert second.table["pii_spans"].to_list() == first.table["pii_spans"].to_list() == [SENTENCE_SPANS, []]
    assert second["pii_total"].to_list() == [7.0, 0.0]
