"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

OnError = Literal["fail", "skip"]

_EXAMPLE_RECORD: dict[str, JsonValue] = {
    "id": "q1",
    "prediction": "The capital of France is Paris.",
    "references": ["Paris is the capital of France."],
}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_error, unknown_metric.")
    message: str
    field: str | None = Field(
        default=None, description="The request field at fault, e.g. records[3].prediction."
    )


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail


class ScoreRequest(BaseModel):
    """Records to score now, with some or all of the served metrics."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"records": [_EXAMPLE_RECORD], "metrics": ["toxicity"]}]},
    )

    records: list[dict[str, Any]] = Field(
        min_length=1,
        description="Records with canonical fields (id, prompt, source, prediction, references, samples, "
        "sample_logprobs); other keys are kept as metadata.",
    )
    metrics: list[str] | None = Field(
        default=None, min_length=1, description="Served metric names; null scores with every served metric."
    )
    fields: dict[str, str] | None = Field(
        default=None,
        description="Map canonical fields to the record keys holding them: {prediction: output}.",
    )
    on_error: OnError = Field(
        default="fail",
        description="fail: one invalid record fails the request (422); skip: it is listed in errors.",
    )


class SummaryRow(BaseModel):
    score: str
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    errors: int


class RecordError(BaseModel):
    """A record skipped because it failed validation (on_error=skip): the error row every run writes
    (a file run's ``.errors.jsonl``, ``Results.errors``), located in the request."""

    index: int = Field(description="Position of the record in the request's records (0-based).")
    location: str = Field(description="Where the record is: records[3].")
    field: str | None = Field(
        description="The record's field at fault (prediction, id, ...), when one is: the 422 of "
        "on_error=fail names it as records[3].prediction."
    )
    reason: str = Field(description="What is wrong with it.")
    record: dict[str, Any] | None = Field(
        description="The record as validated (after the field mapping); null if it was not an object."
    )


class ScoreResponse(BaseModel):
    scores: list[dict[str, Any]] = Field(
        description="One row per valid record: id, score and detail columns."
    )
    summary: list[SummaryRow]
    errors: list[RecordError]
    config_hashes: dict[str, str] = Field(description="Config hash of each metric used.")
    model_hashes: dict[str, str] = Field(description="sha256 of the weights of each model used.")


class MetricInfo(BaseModel):
    name: str
    columns: list[str]
    detail_columns: list[str]
    fields: list[str]
    optional_fields: list[str]
    higher_is_better: bool
    config: dict[str, Any]
    config_hash: str


class MetricsResponse(BaseModel):
    metrics: list[MetricInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    metrics: list[str]


class JobPathRequest(BaseModel):
    """A job over a file already on the server, under a root the operator allowed (--allow-path)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    metrics: list[str] | None = Field(default=None, min_length=1)
    on_error: OnError = "skip"
    fields: dict[str, str] | None = None
