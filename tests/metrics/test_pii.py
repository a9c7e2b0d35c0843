"""PII: each detector on well-known test values and near-misses, overlaps, the metric and the Scorer."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import polars as pl
import pytest
from stdnum import iban, luhn, numdb

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


def reference_cards(run: str) -> list[str]:
    """Cards in one run of digit groups by brute force: the leftmost start, then its longest valid end."""
    groups = [group.span() for group in re.finditer(r"\d+", run)]
    cards, first = [], 0
    while first < len(groups):
        for last in range(len(groups) - 1, first - 1, -1):
            window = run[groups[first][0] : groups[last][1]]
            if is_credit_card(re.sub("[ -]", "", window)):
                cards.append(window)
                first = last
                break
        first += 1
    return cards


@pytest.mark.parametrize("seed", range(5))
def test_cards_in_runs_of_digit_groups_agree_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    prefixes = ["4", "51", "2221", "2200", "34", "36", "3095", "3528", "6011", "65", "62", "5018", "1", "9"]
    for _ in range(200):
        digits = ""
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:  # a Luhn-valid number with an issuer prefix, of any card length
                prefix = rng.choice(prefixes)
                body = prefix + "".join(rng.choices("0123456789", k=rng.randint(12, 18) - len(prefix)))
                digits += luhn_valid(body)
            else:
                digits += "".join(rng.choices("0123456789", k=rng.randint(1, 8)))
        cuts = sorted(rng.sample(range(1, len(digits)), k=rng.randint(0, min(12, len(digits) - 1))))
        groups = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
        run = "".join(group + rng.choice(" -") for group in groups)[:-1]
        assert texts(find_credit_cards(run)) == reference_cards(run), run


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


def test_every_country_in_the_registry_is_found() -> None:
    """An IBAN of each country python-stdnum knows, built from the registry's BBAN format."""
    rng = random.Random(0)
    pools = {
        "n": "0123456789",
        "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "c": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    }
    registry = numdb.get("iban")
    countries = [a + b for a in pools["a"] for b in pools["a"] if registry.info(a + b)[0][1]]
    assert len(countries) > 50
    for country in countries:
        fields = re.findall(r"(\d+)!([nac])", registry.info(country)[0][1]["bban"])
        bban = "".join("".join(rng.choices(pools[kind], k=int(count))) for count, kind in fields)
        number = country + iban.calc_check_digits(country + "00" + bban) + bban
        if not iban.is_valid(number):  # a country-specific check (e.g. a national checksum) refuses it
            continue
        grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        assert texts(find_ibans(f"pay to {grouped}.")) == [grouped]
        assert texts(find_ibans(f"pay to {number} now")) == [number]
        assert find_ibans(f"pay to {number}0 now") == []  # a wrong length


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


def reference_resolve_overlaps(spans: list[Span]) -> list[Span]:
    """The first, pairwise resolution: each candidate, best first, against every span kept so far."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (PII_TYPES.index(s["type"]), s["start"] - s["end"], s["start"])):
        if all(span["end"] <= other["start"] or other["end"] <= span["start"] for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s["start"])


@pytest.mark.parametrize("seed", range(10))
def test_resolve_overlaps_agrees_with_the_pairwise_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        spans: list[Span] = []
        for number in range(rng.randint(0, 60)):
            start = rng.randint(0, 100)
            end = start + rng.choice([0, *range(1, 25)])  # empty spans and exact duplicates too
            # Unique texts, so the comparison also checks which of two equal spans is kept.
            spans.append({"type": rng.choice(PII_TYPES), "start": start, "end": end, "text": str(number)})
        assert resolve_overlaps(spans) == reference_resolve_overlaps(spans)


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


# -- long texts -----------------------------------------------------------------------------------
def find_pii_in_subprocess(text: str, timeout: float) -> dict[str, int]:
    """Counts per type of :func:`find_pii` on ``text``, run in a child killed after ``timeout`` seconds.

    A child, so that a regression to quadratic time fails at the deadline instead of hanging the run.
    """
    code = (
        "import json, sys; from metrics.pii import count_by_type, find_pii; "
        "print(json.dumps(count_by_type(find_pii(sys.stdin.read()))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True, timeout=timeout
    )
    counts: dict[str, int] = json.loads(completed.stdout)
    return counts


FIVE_MB = 5_000_000
# Generous for a slow machine (these take 1-15 s); the quadratic versions took minutes to hours.
LONG_TEXT_SECONDS = 60


@pytest.mark.slow
def test_five_megabytes_of_email_addresses_take_seconds() -> None:
    # The pairwise overlap resolution took over 300 s here; now a few seconds.
    addresses = [f"user{i}.name@mail{i % 97}.example.com" for i in range(FIVE_MB // 34)]
    counts = find_pii_in_subprocess(" ".join(addresses), timeout=LONG_TEXT_SECONDS)
    assert counts == {**dict.fromkeys(PII_TYPES, 0), "email": len(addresses)}


@pytest.mark.slow
def test_five_megabytes_of_every_kind_take_seconds() -> None:
    repeats = FIVE_MB // len(SENTENCE)
    counts = find_pii_in_subprocess(" ".join([SENTENCE] * repeats), timeout=LONG_TEXT_SECONDS)
    assert counts == {
        "email": repeats,
        "iban": repeats,
        "credit_card": repeats,
        "ssn": repeats,
        "ip_address": 2 * repeats,
        # phonenumbers gives up on a text after 65,535 rejected candidates (see the module docstring).
        "phone": counts["phone"],
    }
    assert 0 < counts["phone"] <= repeats


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "spans"),
    [
        # Every group starts windows of 13-19 digits, and each copied the rest of the run: minutes.
        ("4 " * 300_000, 0),
        # Every group starts an IBAN candidate, and each was tried against every later group: hours.
        ("GB82 " * 40_000 + "GB82 WEST 1234 5698 7654 32", 1),
        # Each address was compared with every kept span: minutes.
        ("1.2.3.4 " * 50_000, 50_000),
        # Long runs that backtracking regular expressions could make quadratic (never were).
        ("a@" * 100_000, 0),
        (":" * 200_000, 0),
        ("7" * 200_000, 0),
    ],
    ids=["digit-groups", "iban-groups", "ipv4", "at-signs", "colons", "digits"],
)
def test_pathological_texts_take_linear_time(text: str, spans: int) -> None:
    assert sum(find_pii_in_subprocess(text, timeout=LONG_TEXT_SECONDS).values()) == spans
