"""Records: the only place that knows file formats — readers, validation and writers.

A record is a mapping with some of the canonical fields (``id``, ``prompt``, ``source``,
``prediction``, ``references``, ``samples``, ``sample_logprobs``: one log-probability per sample);
every other key is metadata and is kept as it is. Inputs are read lazily, in chunks, so a file of any
size is never held in memory::

    for chunk in iter_chunks("answers.jsonl", fields={"prediction": "output"}, chunk_size=500):
        for raw in chunk:
            record = validate_record(raw, required=("prediction", "references"))
"""

from evalsuite.records.formats import SUPPORTED_EXTENSIONS, file_sha256
from evalsuite.records.readers import count_records, iter_chunks, iter_records
from evalsuite.records.schema import (
    CANONICAL_FIELDS,
    TEXT_FIELDS,
    RawRecord,
    Source,
    apply_field_mapping,
    parse_field_mapping,
)
from evalsuite.records.tables import table_from_rows, warn_json_text
from evalsuite.records.validation import content_key, error_entry, read_error_rows, validate_record
from evalsuite.records.writers import (
    OUTPUT_FORMATS,
    commit_file,
    json_line,
    output_format,
    write_table,
    write_table_atomically,
)

__all__ = [
    "CANONICAL_FIELDS",
    "OUTPUT_FORMATS",
    "SUPPORTED_EXTENSIONS",
    "TEXT_FIELDS",
    "RawRecord",
    "Source",
    "apply_field_mapping",
    "commit_file",
    "content_key",
    "count_records",
    "error_entry",
    "file_sha256",
    "iter_chunks",
    "iter_records",
    "json_line",
    "output_format",
    "parse_field_mapping",
    "read_error_rows",
    "table_from_rows",
    "validate_record",
    "warn_json_text",
    "write_table",
    "write_table_atomically",
]
