"""The report as GitHub-flavoured markdown, sized for a pull-request comment.

GitHub refuses comments over 65,536 characters. Sections are added in order of importance (warnings,
the comparison, the summary, then the record lists and provenance) and record lists row by row while
they fit; whatever does not fit is named in a closing note, so a truncated comment says so.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from evalsuite.report.content import RecordList, Report
from evalsuite.report.format import difference, interval, number, p_value

__all__ = ["GITHUB_COMMENT_LIMIT", "render_markdown"]

GITHUB_COMMENT_LIMIT = 65_536
_SPARK = "▁▂▃▄▅▆▇█"
_SPARK_BARS = 10
_VERDICT = {"better": "🟢 better", "worse": "🔴 worse"}
_TEXT_CHARS = 160


@dataclass
class _Section:
    """A heading, rows that may be dropped from the end to fit, and a closing line."""

    head: str
    rows: list[str] = field(default_factory=list)
    tail: str = ""
    what: str = "rows"  # what a dropped row is, for the truncation note


def render_markdown(report: Report, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """The report as markdown of at most ``limit`` characters (a note says what was left out)."""
    sections = [
        _header(report),
        *_warnings(report),
        *_comparison(report),
        _summary(report),
        *(_record_section(group, report, worsened=True) for group in report.worsened),
        *(_record_section(group, report, worsened=False) for group in report.worst),
        _provenance(report),
        _Section(
            f"<sub>Full report with charts and evidence: `evalsuite report {report.run.path.name}"
            + (f" --versus {report.base.path.name}" if report.base else "")
            + " -o report.html`</sub>\n"
        ),
    ]
    return _fit(sections, limit)


def _fit(sections: Sequence[_Section], limit: int) -> str:
    note_room = 400
    budget = limit - note_room
    parts: list[str] = []
    used = 0
    dropped: dict[str, int] = {}
    for section in sections:
        rows = [row + "\n" for row in section.rows]
        block = section.head + (rows[0] if rows else "") + section.tail
        if used + len(block) > budget:
            dropped[section.what] = dropped.get(section.what, 0) + max(len(rows), 1)
            continue
        parts.append(section.head)
        used += len(section.head) + len(section.tail)
        for index, row in enumerate(rows):
            if used + len(row) > budget:
                dropped[section.what] = dropped.get(section.what, 0) + len(rows) - index
                break
            parts.append(row)
            used += len(row)
        parts.append(section.tail)
    text = "".join(parts)
    if dropped:
        left_out = ", ".join(f"{count} {what}" for what, count in dropped.items())
        text += (
            f"\n> [!NOTE]\n> Truncated to fit GitHub's {GITHUB_COMMENT_LIMIT:,}-character comment limit: "
            f"left out {left_out}. The HTML report has everything.\n"
        )
    if len(text) > limit:  # only when the required sections alone are larger than the limit
        cut = "\n\n… (truncated at the comment limit)\n"
        text = text[: limit - len(cut)] + cut
    return text


def cell(value: object, chars: int = _TEXT_CHARS) -> str:
    """Text for one table cell: one line, at most ``chars`` characters, HTML and pipes escaped."""
    text = re.sub(r"\s+", " ", str(value if value is not None else "")).strip()
    if len(text) > chars:
        text = text[: chars - 1].rstrip() + "…"
    return html.escape(text, quote=False).replace("|", "\\|")


def _table(header: Sequence[str], align: str) -> str:
    return (
        "| " + " | ".join(header) + " |\n|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|\n"
    )


def _header(report: Report) -> _Section:
    run = report.run
    if report.base is not None:
        subject = (
            f"B = `{run.path.name}` ({run.records:,} records) vs A = `{report.base.path.name}` "
            f"({report.base.records:,} records)"
        )
    else:
        subject = f"`{run.path.name}` · {run.records:,} records"
    return _Section(f"## evalsuite report: {cell(report.title)}\n\n{subject}\n\n")


def _warnings(report: Report) -> list[_Section]:
    if not report.warnings:
        return []
    lines = "".join(f"> - {cell(line, 600)}\n" for line in report.warnings)
    return [_Section(f"> [!WARNING]\n{lines}\n")]


def _comparison(report: Report) -> list[_Section]:
    comparison = report.comparison
    if comparison is None:
        return []
    level = f"{comparison.confidence * 100:g}% CI"
    head = "### Comparison: B − A, paired on record id\n\n" + _table(
        ["score", "better", "n", "mean A", "mean B", "B − A", level, "p", "W/T/L", "verdict"], "llrrrrrrrl"
    )
    rows = [
        f"| {row['score']} | {'↑' if row['higher_is_better'] else '↓'} | {row['n']} | {number(row['mean_a'])} | "
        f"{number(row['mean_b'])} | {difference(row['diff'])} | "
        f"{interval(row['ci_low'], row['ci_high'], signed=True)} | {p_value(row['p_value'])} | "
        f"{row['wins']}/{row['ties']}/{row['losses']} | {_VERDICT.get(row['verdict'], row['verdict'])} |"
        for row in comparison.table.iter_rows(named=True)
    ]
    options = report.options
    tail = (
        f"\n<sub>{comparison.paired.height:,} records paired on id. CI: paired bootstrap "
        f"({options['resamples']} resamples, seed {options['seed']}); p: two-sided Wilcoxon signed-rank; "
        "W/T/L: records where B is better / equal / worse.</sub>\n\n"
    )
    return [_Section(head, rows, tail, what="comparison rows")]


def _sparkline(counts: pl.DataFrame | None) -> str:
    if counts is None or counts.is_empty():
        return ""
    first_run = counts["run"][0]
    counts_per_bin = counts.filter(pl.col("run") == first_run)["count"].to_list()
    # At most _SPARK_BARS bars: neighbouring bins summed, so the cell stays short.
    width = -(-len(counts_per_bin) // _SPARK_BARS)
    values = [sum(counts_per_bin[i : i + width]) for i in range(0, len(counts_per_bin), width)]
    top = max(values) or 1
    return "".join(
        _SPARK[min(int(value / top * (len(_SPARK) - 1) + 0.999), len(_SPARK) - 1)] for value in values
    )


def _summary(report: Report) -> _Section:
    level = f"{report.options['confidence'] * 100:g}% CI"
    which = "B" if report.base is not None else "the run"
    head = f"### Summary of {which}\n\n" + _table(
        ["score", "better", "mean", "std", level, "n", "errors", "distribution"], "llrrrrrl"
    )
    rows = [
        f"| {row['score']} | {'↑' if report.direction(row['score']) else '↓'} | {number(row['mean'])} | "
        f"{number(row['std'])} | {interval(row['ci_low'], row['ci_high'])} | {row['n']} | {row['errors']} | "
        f"{_sparkline(report.histograms.get(row['score']))} |"
        for row in report.summary.iter_rows(named=True)
    ]
    return _Section(head, rows, "\n", what="summary rows")


def _record_section(group: RecordList, report: Report, *, worsened: bool) -> _Section:
    column = group.column
    if worsened:
        title = f"{group.metric.name}: records that got worse the most (by {column})"
        head = _table(["id", "A", "B", "B − A", "prediction in B"], "lrrrl")
    else:
        title = f"{group.metric.name}: worst records (by {column})"
        head = _table(["id", column, "prediction"], "lrl")
    rows = []
    for record in group.rows:
        key = str(record.get("id", ""))
        if worsened:
            before = group.base_rows.get(key, {})
            rows.append(
                f"| {cell(key, 60)} | {number(before.get(column))} | {number(record.get(column))} | "
                f"{difference(group.differences.get(key))} | {cell(record.get('prediction'))} |"
            )
        else:
            rows.append(
                f"| {cell(key, 60)} | {number(record.get(column))} | {cell(record.get('prediction'))} |"
            )
    return _Section(
        f"<details><summary>{html.escape(title)}</summary>\n\n{head}",
        rows,
        "\n</details>\n\n",
        what="records",
    )


def _provenance(report: Report) -> _Section:
    runs = [report.base, report.run] if report.base is not None else [report.run]
    rows = []
    for info in runs:
        prefix = f"{info.label}: " if report.base is not None else ""
        rows += [f"| {prefix}{fact} | {cell(value, 300)} |" for fact, value in info.provenance]
        rows += [
            f"| {prefix}{row['metric']} | {cell(row['config'], 300)} (hash {row['config hash'] or '–'}) |"
            for row in info.metric_configs
        ]
    return _Section(
        "<details><summary>Provenance</summary>\n\n" + _table(["fact", "value"], "ll"),
        rows,
        "\n</details>\n\n",
        what="provenance rows",
    )
