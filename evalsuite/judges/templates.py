"""Judge prompt templates: what the judge reads, which record fields fill it, and its answer labels.

A template is an ``input`` (the record, with ``{field}`` placeholders naming record fields) and a
``question`` (the instruction, which may use ``{scale}``). The plain prompt is the input then the
question; a SuperICL prompt (:mod:`evalsuite.judges.supericl`) repeats the input for each in-context
example. Its hash (text and labels) goes into the judge's config, so a changed template never reuses
cached verdicts.

Example:
    >>> template = builtin_template("groundedness")
    >>> template.kind, template.fields, template.labels
    ('binary', ('source', 'prediction'), ('yes', 'no'))
    >>> print(template.render({"source": "Paris is in France.", "prediction": "Paris is in Spain."}))
    Source:
    Paris is in France.
    <BLANKLINE>
    Claim:
    Paris is in Spain.
    <BLANKLINE>
    Is every statement of the claim supported by the source? Answer yes or no.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from evalsuite.errors import ConfigError

__all__ = [
    "BUILTIN_TEMPLATES",
    "KINDS",
    "JudgeTemplate",
    "Kind",
    "builtin_template",
    "load_template",
    "rating_labels",
]

Kind = Literal["direct", "binary", "pairwise"]
KINDS: tuple[Kind, ...] = ("direct", "binary", "pairwise")
# Pairwise templates name the second response with this field; the judge swaps it with prediction.
SECOND_RESPONSE = "prediction_b"
RESERVED = ("scale",)  # placeholders filled by the judge, not by the record
EXPLAIN_SUFFIX = "Put the answer first; then, on a new line, explain it in one sentence."
DEFAULT_SYSTEM = "You are a strict, impartial evaluator of AI-generated text."


def rating_labels(scale: int) -> tuple[str, ...]:
    """The labels of a 1..``scale`` rating: one digit each, so one token in every tokenizer.

    >>> rating_labels(5)
    ('1', '2', '3', '4', '5')
    """
    if not isinstance(scale, int) or isinstance(scale, bool) or not 2 <= scale <= 9:
        raise ConfigError(f"scale must be an integer from 2 to 9 (one digit per rating), got {scale!r}")
    return tuple(str(rating) for rating in range(1, scale + 1))


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge prompt. ``labels``: binary (positive, negative), pairwise (first, second response);
    for ``direct`` they are the ratings, set from the judge's scale by :meth:`with_scale`."""

    name: str
    kind: Kind
    input: str
    question: str
    labels: tuple[str, ...] = ()
    system: str = DEFAULT_SYSTEM

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"template kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "direct" and len(self.labels) != 2:
            raise ConfigError(f"a {self.kind} template needs exactly two labels, got {list(self.labels)}")
        if len({label.lower() for label in self.labels}) != len(self.labels):
            raise ConfigError(f"template labels must differ (ignoring case), got {list(self.labels)}")
        if self.kind == "pairwise" and SECOND_RESPONSE not in self.fields:
            raise ConfigError(
                f"a pairwise template must show both responses: {{prediction}} and {{{SECOND_RESPONSE}}}"
            )
        for text in (self.input, self.question):
            _placeholders(text)  # malformed braces fail here, not at the first record

    @property
    def fields(self) -> tuple[str, ...]:
        """The record fields the template reads, in order of first use."""
        names = [*_placeholders(self.input), *_placeholders(self.question)]
        return tuple(dict.fromkeys(name for name in names if name not in RESERVED))

    def with_scale(self, scale: int) -> JudgeTemplate:
        """A direct template's rating labels for a 1..``scale`` rating (other kinds are returned as is)."""
        return replace(self, labels=rating_labels(scale)) if self.kind == "direct" else self

    def sha256(self) -> str:
        """Hash of everything the judge reads from the template (not its name)."""
        payload = json.dumps([self.kind, self.system, self.input, self.question, list(self.labels)])
        return hashlib.sha256(payload.encode()).hexdigest()

    def render_input(self, record: Mapping[str, Any]) -> str:
        return self.input.format_map(_Fields(record, len(self.labels)))

    def render_question(self, *, explain: bool = False) -> str:
        question = self.question.format_map(_Fields({}, len(self.labels)))
        return f"{question} {EXPLAIN_SUFFIX}" if explain else question

    def render(self, record: Mapping[str, Any], *, explain: bool = False) -> str:
        """The plain prompt for one record: its input, then the question."""
        return f"{self.render_input(record)}\n\n{self.render_question(explain=explain)}"


class _Fields(dict[str, Any]):
    """Record values for ``str.format_map``; a field the record lacks is a clear error."""

    def __init__(self, record: Mapping[str, Any], scale: int) -> None:
        super().__init__(record)
        self["scale"] = scale

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def _placeholders(text: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ConfigError(f"malformed judge template ({error}): {text[:80]!r}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(
                f"template placeholders must be plain record field names like {{prediction}}, got {{{name}}}"
            )
        names.append(name)
    return names


BUILTIN_TEMPLATES: dict[str, JudgeTemplate] = {
    "groundedness": JudgeTemplate(
        "groundedness",
        "binary",
        input="Source:\n{source}\n\nClaim:\n{prediction}",
        question="Is every statement of the claim supported by the source? Answer yes or no.",
        labels=("yes", "no"),
        system="You are a careful fact-checker.",
    ),
    "quality": JudgeTemplate(
        "quality",
        "direct",
        input="Question:\n{prompt}\n\nAnswer:\n{prediction}",
        question="Rate the overall quality of the answer (correct, helpful, clear) on a scale from 1 "
        "(very poor) to {scale} (excellent). Reply with the number only.",
    ),
    "pairwise": JudgeTemplate(
        "pairwise",
        "pairwise",
        input="Question:\n{prompt}\n\nResponse A:\n{prediction}\n\nResponse B:\n{prediction_b}",
        question="Which response answers the question better? Reply with A or B only.",
        labels=("A", "B"),
    ),
}
DEFAULT_TEMPLATE: dict[Kind, str] = {"direct": "quality", "binary": "groundedness", "pairwise": "pairwise"}


def builtin_template(name: str) -> JudgeTemplate:
    if name not in BUILTIN_TEMPLATES:
        raise ConfigError(
            f"unknown judge template {name!r}; built-in: {', '.join(BUILTIN_TEMPLATES)} "
            "(or pass a path to a .json template file)"
        )
    return BUILTIN_TEMPLATES[name]


def load_template(spec: str | Mapping[str, Any] | JudgeTemplate | None, kind: Kind) -> JudgeTemplate:
    """A template from a built-in name, a ``.json`` file (keys: ``input``, ``question``, optional
    ``labels``, ``system``, ``kind``), a mapping with those keys, or ``None`` (the kind's default)."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(spec, JudgeTemplate):
        template = spec
    elif spec is None:
        template = builtin_template(DEFAULT_TEMPLATE[kind])
    elif isinstance(spec, Mapping):
        template = _from_mapping(dict(spec), kind, name="custom")
    elif spec in BUILTIN_TEMPLATES:
        template = BUILTIN_TEMPLATES[spec]
    else:
        path = Path(spec)
        if path.suffix.lower() != ".json" or not path.is_file():
            raise ConfigError(
                f"judge template {spec!r} is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) "
                "nor an existing .json template file"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read judge template {path}: {error}") from None
        template = _from_mapping(data, kind, name=path.stem)
    if template.kind != kind:
        raise ConfigError(f"template {template.name!r} is for kind {template.kind!r}, not {kind!r}")
    return template


def _from_mapping(data: dict[str, Any], kind: Kind, *, name: str) -> JudgeTemplate:
    unknown = set(data) - {"input", "question", "labels", "system", "kind", "name"}
    if unknown or not {"input", "question"} <= set(data):
        raise ConfigError(
            "a judge template needs 'input' and 'question' (optional: labels, system, kind, name); "
            f"got keys {sorted(data)}"
        )
    defaults: dict[str, tuple[str, ...]] = {"binary": ("yes", "no"), "pairwise": ("A", "B")}
    labels = data.get("labels") or defaults.get(kind, ())
    return JudgeTemplate(
        str(data.get("name", name)),
        data.get("kind", kind),
        input=str(data["input"]),
        question=str(data["question"]),
        labels=tuple(str(label) for label in labels),
        system=str(data.get("system", DEFAULT_SYSTEM)),
    )
