"""PII detection on long texts of pathological shapes: every finder, the overlap resolution and ``find_pii``.

Builds one text per shape (``--size`` characters, 5 MB by default) and prints the seconds each
finder takes on it, then ``resolve_overlaps`` on all their candidates and ``find_pii`` end to end,
with the number of spans found. Every step is linear in the text (resolution O(n log n) in the
candidates), so doubling ``--size`` should roughly double each time. Not a test: nothing here fails
on a number.

    .venv/bin/python bench/pii.py                           # every shape, 5 MB each
    .venv/bin/python bench/pii.py --size 1000000 --shape emails --shape digit-groups
"""

from __future__ import annotations

import argparse
import random
import string
import time
from collections.abc import Callable
from typing import Any

from metrics import pii

SENTENCE = (
    "Mail jane.doe@example.com or call +1 202-555-0143, card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, SSN 536-90-4399, from 192.168.0.1 or 2001:db8::1. "
)
# Each shape's text is its unit repeated to the size asked for.
SHAPES: dict[str, Callable[[random.Random], str]] = {
    "emails": lambda rng: " ".join(f"user{i}.name@mail{i % 97}.example.com" for i in range(300)) + " ",
    "phones": lambda rng: "call +1 202-555-0143 or (212) 555-0199; ",
    "mixed": lambda rng: SENTENCE,
    "digits": lambda rng: "7",
    "digit-groups": lambda rng: " ".join(rng.choices(string.digits, k=10_000)) + " ",
    "fours": lambda rng: "4 ",
    "at-signs": lambda rng: "a@",
    "ipv4": lambda rng: "1.2.3.4 ",
    "colons": lambda rng: ":",
    "iban-groups": lambda rng: "GB82 ",
    "ibans": lambda rng: "GB82 WEST 1234 5698 7654 32 ",
    "timestamps": lambda rng: "2012-01-02 08:00 ",
    "random": lambda rng: "".join(rng.choices(string.printable, k=10_000)),
}
FINDERS: dict[str, Callable[[str], list[pii.Span]]] = {
    "email": pii.find_emails,
    "iban": pii.find_ibans,
    "card": pii.find_credit_cards,
    "ssn": pii.find_ssns,
    "ip": pii.find_ip_addresses,
    "phone": pii.find_phone_numbers,
}


def timed(step: Callable[[Any], list[pii.Span]], argument: Any) -> tuple[float, list[pii.Span]]:
    started = time.perf_counter()
    spans = step(argument)
    return time.perf_counter() - started, spans


def measure(text: str) -> tuple[list[float], int]:
    """Seconds for each finder, the resolution of all their candidates and find_pii; spans found."""
    seconds: list[float] = []
    candidates: list[pii.Span] = []
    for finder in FINDERS.values():
        elapsed, spans = timed(finder, text)
        seconds.append(elapsed)
        candidates += spans
    seconds.append(timed(pii.resolve_overlaps, candidates)[0])
    elapsed, found = timed(pii.find_pii, text)
    return [*seconds, elapsed], len(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=5_000_000, help="characters per text")
    parser.add_argument("--shape", action="append", dest="shapes", choices=sorted(SHAPES))
    args = parser.parse_args()
    columns = [*FINDERS, "resolve", "find_pii"]
    print(f"{'shape':<14}" + "".join(f"{name:>10}" for name in columns) + f"{'spans':>10}")
    for shape in args.shapes or SHAPES:
        unit = SHAPES[shape](random.Random(0))
        seconds, found = measure((unit * (args.size // len(unit) + 1))[: args.size])
        print(f"{shape:<14}" + "".join(f"{value:10.2f}" for value in seconds) + f"{found:>10}")


if __name__ == "__main__":
    main()
