"""The run manifest, typed: the provenance written beside every result file (``run.manifest.json``).

One module builds, writes, reads, validates and diffs manifests; the JSON file format is the one
evalsuite has always written, so older result files still read. :class:`RunManifest` holds a scoring
run's facts (``evalsuite score``, :class:`~evalsuite.api.Scorer`, :meth:`Results.write
<evalsuite.results.Results.write>`) and a generation run's (``evalsuite generate``); every field is
optional, and keys this module does not know are kept and written back.

Build a manifest from keyword arguments, with sub-models as models (what mypy checks), or from a
mapping with :meth:`RunManifest.model_validate` (sub-models as plain dicts, the JSON keys)::

    manifest = RunManifest(
        evalsuite_version="0.1.0",
        runtime=RuntimeInfo.model_validate(runtime.describe()),  # or RuntimeInfo(device="cpu", ...)
        metrics=[
            MetricEntry(name="pii", metric_class="metrics.pii:PII", config={"region": "US"},
                        config_hash="ab12", columns=["pii_total"], higher_is_better=False),
        ],
        models={"minilm": ModelInfo(**runtime.describe_model("minilm"))},
        input=InputInfo(path="answers.jsonl", sha256="d7e6...", records=40, errors=0),
        started_at=timestamp(started), finished_at=timestamp(finished),
    )
    manifest = RunManifest.model_validate(json_dict)  # the metric class under its JSON key "class"
    manifest = RunManifest.coerce(manifest_or_mapping)  # either; invalid input raises ConfigError
    manifest.score_columns = ["pii_total"]  # assignments are validated (dicts become sub-models)
    write_manifest("out/run.parquet", manifest)  # writes out/run.manifest.json (a mapping works too)
    RunManifest.read("out/run.parquet").to_json_dict()  # the exact dict on disk

What is written: every field that was given (to the constructor, by assignment, or read from a file),
an explicit ``None`` as ``null`` (``errors_file: null`` says "no errors file", which differs from an
older manifest without the key), and any field whose value differs from its default (an
``InputInfo`` default changed in place). Unset fields stay out of the file, so a manifest read and
written back keeps its keys. The one normalisation on reading: ``metrics`` written in an older form
(``{name: config}`` or ``[name, ...]``) becomes the list of :class:`MetricEntry` evalsuite writes now.

Example:
    >>> m = RunManifest.model_validate({"metrics": {"bertscore": {"idf": True}}, "note": "kept"})
    >>> m.metrics[0].name, m.metrics[0].config, m.to_json_dict()["note"]
    ('bertscore', {'idf': True}, 'kept')
"""

from evalsuite.manifest.meaning import (
    config_differences,
    higher_is_better_of,
    metric_entries,
    metric_names,
    metric_of_column,
    score_columns_of,
)
from evalsuite.manifest.model import (
    MANIFEST_SUFFIX,
    CacheInfo,
    EngineInfo,
    GeneratorInfo,
    InputInfo,
    ManifestLike,
    MetricEntry,
    ModelInfo,
    RunManifest,
    RuntimeInfo,
    SummaryRow,
    manifest_path,
    read_manifest,
    sibling_path,
    timestamp,
    write_manifest,
)

__all__ = [
    "MANIFEST_SUFFIX",
    "CacheInfo",
    "EngineInfo",
    "GeneratorInfo",
    "InputInfo",
    "ManifestLike",
    "MetricEntry",
    "ModelInfo",
    "RunManifest",
    "RuntimeInfo",
    "SummaryRow",
    "config_differences",
    "higher_is_better_of",
    "manifest_path",
    "metric_entries",
    "metric_names",
    "metric_of_column",
    "read_manifest",
    "score_columns_of",
    "sibling_path",
    "timestamp",
    "write_manifest",
]
