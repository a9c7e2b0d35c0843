"""The factuality benchmark files: readers, the XSumFaith join, and each set's binary "supported" label.

Every path is relative to the data directory (``--data DIR`` or ``$EVALSUITE_DATA``); nothing is
copied into the repository. A loader returns a :class:`Benchmark`: the (document, claim) records to
score once, and the binary tasks (table rows) read off their scores. How each set's labels become
"supported" (positive) or not is stated once, in :data:`BINARISATION`, and printed with the tables.

>>> sample(["a", "b", "c", "d"], 2, seed=0)
['b', 'd']
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from evalsuite.errors import InputError

FACTUALITY = Path("factuality")
SUMMAC_SUBSETS = ("factcc", "summeval", "xsumfaith", "polytope")
XSUMFAITH_SCORES = FACTUALITY / "xsumfaith_eval_scores_xsum_summaries.csv"
XSUMFAITH_SUMMARIES = FACTUALITY / "xsumfaith_hallucination_annotations_xsum_summaries.csv"
# The scores CSV and the annotation CSVs name the systems differently. Checked on the data: under this
# pairing a summary's Factual score equals the mean is_factual vote of its annotations for over 99% of
# summaries, under any other pairing for about 70%.
XSUMFAITH_SYSTEMS = {
    "bert_withckpt": "BERTS2S",
    "bert_nockpt": "TranS2S",
    "ptgen": "PtGen",
    "tconvs2s": "TConvS2S",
}
WICE_DEV = FACTUALITY / "wice_claim_dev.jsonl"
WICE_TEST = FACTUALITY / "wice_claim_test.jsonl"
FACTCHECK_GPT = FACTUALITY / "factcheck_gpt_claim_evidence_stance.jsonl"
BEGIN_SOURCES = ("wow", "cmu", "tc")

# 1 = supported, 0 = not; None = left out of the main row.
WICE_LABELS = {"supported": 1, "partially_supported": 0, "not_supported": 0}
FACTCHECK_GPT_STANCES = {"completely-support": 1, "partially-support": 0, "refute": 0, "irrelevant": None}
BEGIN_LABELS = {"Fully attributable": 1, "Not fully attributable": 0, "Generic": None}

BINARISATION = {
    "wice": "WiCE: supported = positive; partially_supported and not_supported = negative "
    "(LLM-AggreFact's convention). Threshold chosen on dev, scored on test.",
    "factcheck-gpt": "Factcheck-GPT: completely-support = positive; partially-support and refute = negative; "
    "irrelevant evidence left out (it neither supports nor refutes). The row 'factcheck-gpt +irrelevant' "
    "also counts irrelevant evidence as unsupported (a checker must not call it supporting); "
    "that row is not in the mean.",
    "begin": "BEGIN: Fully attributable = positive; Not fully attributable = negative; Generic responses "
    "left out (they state nothing to attribute; BEGIN labels them as a class of their own). "
    "Document = knowledge, claim = response; wow, cmu-dog and topicalchat pooled into one set.",
    "summac": "SummaC benchmark (factcc, summeval, xsumfaith, polytope): label 1 (consistent) = positive.",
    "xsumfaith": "XSumFaith: Spearman with the human Faithful score per summary; not binarised, not in the mean.",
}

Record = dict[str, str]  # id, source (the evidence document), prediction (the claim)
Item = TypeVar("Item")


@dataclass(frozen=True)
class Split:
    """Some of a benchmark's records (indices into ``Benchmark.records``) with their binary labels."""

    indices: list[int]
    labels: list[int]  # 1 = supported


@dataclass(frozen=True)
class BinaryTask:
    """One row of the table: balanced accuracy and ROC AUC on ``scored``.

    The threshold is chosen on ``tuning`` (another split); without one, on each half of ``scored``
    in turn and applied to the other half.
    """

    name: str
    scored: Split
    tuning: Split | None = None
    in_mean: bool = True


@dataclass
class Benchmark:
    """Records scored once per checker, and what is read off their scores."""

    name: str
    records: list[Record]
    whole_claims: bool  # each prediction is one claim: scored whole where the checker allows it
    tasks: list[BinaryTask] = field(default_factory=list)
    human_scores: list[float] | None = None  # correlated with the scores (XSumFaith), instead of tasks
    notes: list[str] = field(default_factory=list)  # what was matched, left out, sampled


@dataclass(frozen=True)
class Dataset:
    """A benchmark's files and its loader ``load(data_dir, limit, seed)``."""

    name: str
    files: tuple[Path, ...]
    load: Callable[[Path, int | None, int], Benchmark]


@dataclass
class XSumFaithJoin:
    """XSumFaith summaries with their text and BBC document, beside the scores CSV row of each."""

    matched: list[tuple[dict[str, str], Record]]  # (scores CSV row, record)
    summaries_total: int  # in the scores CSV
    bbcids_with_document: int
    bbcids_total: int


def sample(items: Sequence[Item], limit: int | None, seed: int) -> list[Item]:
    """``limit`` items drawn at random (seeded), in their file order; all of them without a limit."""
    if limit is None or limit >= len(items):
        return list(items)
    return [items[index] for index in sorted(random.Random(seed).sample(range(len(items)), limit))]


def binary(labels: Mapping[str, int | None], value: str, where: str) -> int | None:
    """The binary label of a file's label ``value`` (None: left out); an InputError names an unknown one."""
    if value not in labels:
        raise InputError(f"label {value!r} is not one of {sorted(labels)}", location=where)
    return labels[value]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summac_path(subset: str) -> Path:
    return FACTUALITY / f"summac_pr15_{subset}.json"


def read_summac(path: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def xsumfaith_summaries(path: Path) -> dict[tuple[str, str], str]:
    """Summary text by (bbcid, annotation system name); one text per summary in this file."""
    with path.open(encoding="utf-8", newline="") as handle:
        # This CSV stores apostrophes escaped as \' (the factuality annotations CSV does not).
        return {
            (row["bbcid"], row["system"]): row["summary"].replace("\\'", "'")
            for row in csv.DictReader(handle)
        }


def join_xsumfaith(data: Path) -> XSumFaithJoin:
    """Join the scores CSV (summaries named ``<system>_<bbcid>``, no text) to the summary texts of the
    hallucination annotations CSV and the BBC documents of the SummaC XSumFaith file (by ``bbcid``).
    Summaries whose text or document is missing are left out."""
    documents = {
        str(item["bbcid"]): item["document"] for item in read_summac(data / summac_path("xsumfaith")).values()
    }
    summaries = xsumfaith_summaries(data / XSUMFAITH_SUMMARIES)
    with (data / XSUMFAITH_SCORES).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    matched: list[tuple[dict[str, str], Record]] = []
    for row in rows:
        system, bbcid = row["system_bbcid"].rsplit("_", 1)
        summary = summaries.get((bbcid, XSUMFAITH_SYSTEMS.get(system, "")))
        if summary is not None and bbcid in documents:
            matched.append(
                (row, {"id": row["system_bbcid"], "source": documents[bbcid], "prediction": summary})
            )
    bbcids = {row["system_bbcid"].rsplit("_", 1)[1] for row in rows}
    return XSumFaithJoin(matched, len(rows), len(bbcids & documents.keys()), len(bbcids))


def load_wice(data: Path, limit: int | None, seed: int) -> Benchmark:
    dev = sample(read_jsonl(data / WICE_DEV), limit, seed)
    test = sample(read_jsonl(data / WICE_TEST), limit, seed)
    rows = dev + test
    records = [{"id": row["id"], "source": row["document"], "prediction": row["claim"]} for row in rows]
    labels = [int(binary(WICE_LABELS, row["label"], f"WiCE {row['id']}") == 1) for row in rows]
    tuning = Split(list(range(len(dev))), labels[: len(dev)])
    scored = Split(list(range(len(dev), len(rows))), labels[len(dev) :])
    return Benchmark("wice", records, whole_claims=True, tasks=[BinaryTask("wice", scored, tuning)])


def load_factcheck_gpt(data: Path, limit: int | None, seed: int) -> Benchmark:
    lines = sample(list(enumerate(read_jsonl(data / FACTCHECK_GPT), start=1)), limit, seed)
    records = [
        {"id": f"line {line}", "source": row["evidence"], "prediction": row["claim"]} for line, row in lines
    ]
    labels = [binary(FACTCHECK_GPT_STANCES, row["stance"], f"{FACTCHECK_GPT}:{line}") for line, row in lines]
    relevant = [index for index, label in enumerate(labels) if label is not None]
    main = Split(relevant, [labels[index] or 0 for index in relevant])
    with_irrelevant = Split(list(range(len(labels))), [label or 0 for label in labels])
    tasks = [
        BinaryTask("factcheck-gpt", main),
        BinaryTask("factcheck-gpt +irrelevant", with_irrelevant, in_mean=False),
    ]
    return Benchmark("factcheck-gpt", records, whole_claims=True, tasks=tasks)


def read_begin(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a BEGIN TSV; fields hold quotes as plain text."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(enumerate(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=2))


def load_begin(data: Path, limit: int | None, seed: int) -> Benchmark:
    records: list[Record] = []
    labels: list[int] = []
    generic = 0
    for source in BEGIN_SOURCES:
        path = FACTUALITY / f"begin_dev_{source}.tsv"
        kept = []
        for line, row in read_begin(data / path):
            label = binary(BEGIN_LABELS, row["begin_label"], f"{path}:{line}")
            if label is None:
                generic += 1
            else:
                kept.append((line, row, label))
        for line, row, label in sample(kept, limit, seed):
            records.append(
                {"id": f"{source} line {line}", "source": row["knowledge"], "prediction": row["response"]}
            )
            labels.append(label)
    task = BinaryTask("begin", Split(list(range(len(records))), labels))
    notes = [f"begin: {generic} Generic responses left out"]
    return Benchmark("begin", records, whole_claims=True, tasks=[task], notes=notes)


def load_summac(subset: str, data: Path, limit: int | None, seed: int) -> Benchmark:
    items = sample(list(read_summac(data / summac_path(subset)).items()), limit, seed)
    records = [{"id": key, "source": item["document"], "prediction": item["claim"]} for key, item in items]
    labels = [int(item["label"]) for _, item in items]
    name = f"summac-{subset}"
    task = BinaryTask(name, Split(list(range(len(records))), labels))
    return Benchmark(name, records, whole_claims=False, tasks=[task])


def load_xsumfaith(data: Path, limit: int | None, seed: int) -> Benchmark:
    join = join_xsumfaith(data)
    scored = sample(join.matched, limit, seed)
    note = (
        f"xsumfaith: {len(join.matched)} of {join.summaries_total} summaries matched to a text and a document "
        f"(documents for {join.bbcids_with_document} of {join.bbcids_total} BBC ids); {len(scored)} scored"
    )
    return Benchmark(
        "xsumfaith",
        [record for _, record in scored],
        whole_claims=False,
        human_scores=[float(row["Faithful"]) for row, _ in scored],
        notes=[note],
    )


DATASETS = (
    Dataset("wice", (WICE_DEV, WICE_TEST), load_wice),
    Dataset("factcheck-gpt", (FACTCHECK_GPT,), load_factcheck_gpt),
    Dataset("begin", tuple(FACTUALITY / f"begin_dev_{source}.tsv" for source in BEGIN_SOURCES), load_begin),
    *(
        Dataset(f"summac-{subset}", (summac_path(subset),), partial(load_summac, subset))
        for subset in SUMMAC_SUBSETS
    ),
    Dataset("xsumfaith", (summac_path("xsumfaith"), XSUMFAITH_SCORES, XSUMFAITH_SUMMARIES), load_xsumfaith),
)
