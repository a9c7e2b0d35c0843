"""Shared fixtures: no test touches the user's cache or a model hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache_dir = tmp_path_factory.mktemp("evalsuite-cache")
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache_dir


@pytest.fixture
def tiny_records() -> list[dict[str, Any]]:
    """Eight small records carrying every canonical field, so any registered metric can score them.

    ``sample_logprobs`` are made-up log-likelihoods, one per sample.
    """
    return [
        {
            "id": "r0",
            "prompt": "What is the capital of France?",
            "source": "France is a country in Europe. Its capital is Paris.",
            "prediction": "The capital of France is Paris.",
            "references": ["Paris is the capital of France."],
            "samples": ["Paris.", "It is Paris.", "The capital is Lyon."],
            "sample_logprobs": [-0.2, -0.9, -2.3],
        },
        {
            "id": "r1",
            "prompt": "How many legs does a spider have?",
            "source": "Spiders are arachnids with eight legs.",
            "prediction": "A spider has eight legs.",
            "references": ["Spiders have 8 legs.", "Eight."],
            "samples": ["Eight legs.", "8", "Six legs."],
            "sample_logprobs": [-0.4, -1.1, -2.9],
        },
        {
            "id": "r2",
            "prompt": "Translate 'thank you' into German.",
            "source": "'Danke' is German for 'thank you'.",
            "prediction": "Danke schön!",
            "references": ["Danke."],
            "samples": ["Danke.", "Vielen Dank.", "Merci."],
            "sample_logprobs": [-0.1, -0.7, -3.5],
        },
        {
            "id": "r3",
            "prompt": "Summarise the report in one sentence.",
            "source": "Revenue grew 12% in 2023 while costs stayed flat, so margins improved.",
            "prediction": "Revenue rose 12% in 2023 and margins improved because costs were flat.",
            "references": [
                "In 2023 revenue grew by 12% with flat costs, improving margins.",
                "Margins improved.",
            ],
            "samples": [
                "Revenue grew and margins improved.",
                "Costs stayed flat in 2023.",
                "The company lost money.",
            ],
            "sample_logprobs": [-1.0, -1.0, -1.0],
        },
        {
            "id": "r4",
            "prompt": "Who wrote 'Pride and Prejudice'?",
            "source": "Pride and Prejudice is an 1813 novel by Jane Austen.",
            "prediction": "It was written by Charles Dickens.",
            "references": ["Jane Austen wrote Pride and Prejudice."],
            "samples": ["Jane Austen.", "Austen.", "Charles Dickens."],
            "sample_logprobs": [-1.2, -1.4, -4.0],
        },
        {
            "id": "r5",
            "prompt": "Is the café in Zürich open on Sundays?",
            "source": "The café in Zürich opens daily, Sundays included, from 8:00 to 18:00.",
            "prediction": "Yes — it's open every day, Sundays too (8:00–18:00).",
            "references": ["Yes, it opens on Sundays from 8 to 18.", "Yes."],
            "samples": ["Yes.", "Yes, from 8:00.", "No, it is closed."],
            "sample_logprobs": [-0.6, -0.8, -1.3],
        },
        {
            "id": "r6",
            "prompt": "Give me a prime number larger than 10.",
            "source": "Primes above ten include 11, 13 and 17.",
            "prediction": "13",
            "references": ["11"],
            "samples": ["11", "13", "15"],
            "sample_logprobs": [-0.3, -1.6, -2.2],
        },
        {
            "id": "r7",
            "prompt": "Say something kind.",
            "source": "Kind words cost nothing.",
            "prediction": "You are doing a wonderful job, keep going!",
            "references": ["Great work, keep it up!", "You're doing great."],
            "samples": ["Well done!", "Keep it up.", "Nice work."],
            "sample_logprobs": [-0.9, -0.5, -3.1],
        },
    ]
