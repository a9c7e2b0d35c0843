"""Shareable reports of a run, or of a run against a baseline: one self-contained HTML file that opens
offline, or markdown sized for a pull-request comment.

- :mod:`~evalsuite.report.content`: :func:`build_report`, what a report says (one model, two renderings)
- :mod:`~evalsuite.report.html`: :func:`render_html`, the page with its charts and scripts inlined
- :mod:`~evalsuite.report.markdown`: :func:`render_markdown`, capped at GitHub's comment limit
- :mod:`~evalsuite.report.evidence`: the evidence HTML the dashboard shows too

Example:
    >>> from evalsuite.report import write_report
    >>> write_report("pr.parquet", "report.html", versus="main.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from evalsuite.errors import ConfigError
from evalsuite.report.content import Report, build_report
from evalsuite.report.html import render_html
from evalsuite.report.markdown import GITHUB_COMMENT_LIMIT, render_markdown

__all__ = [
    "GITHUB_COMMENT_LIMIT",
    "Report",
    "ReportFormat",
    "build_report",
    "render",
    "render_html",
    "render_markdown",
    "report_format",
    "save_report",
    "write_report",
]

ReportFormat = Literal["html", "markdown"]
_SUFFIXES: dict[str, ReportFormat] = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
}


def report_format(output: str | os.PathLike[str] | None, fmt: str | None) -> ReportFormat:
    """The format asked for, else the one the output's suffix names, else HTML."""
    if fmt is not None:
        if fmt not in ("html", "markdown"):
            raise ConfigError(f"report format must be 'html' or 'markdown', got {fmt!r}")
        return "html" if fmt == "html" else "markdown"
    suffix = Path(output).suffix.lower() if output is not None else ""
    return _SUFFIXES.get(suffix, "html")


def write_report(
    run: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    versus: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    **options: Any,
) -> Path:
    """Build the report of ``run`` (against ``versus``) and write it to ``output``, atomically.

    ``fmt``: ``"html"`` or ``"markdown"`` (default: from the suffix, ``.md`` → markdown, else HTML);
    ``options`` go to :func:`build_report` (``worst``, ``max_records``, ``confidence``...) and, for
    markdown, ``limit`` (default :data:`GITHUB_COMMENT_LIMIT`).
    """
    chosen = report_format(output, fmt)
    limit = options.pop("limit", GITHUB_COMMENT_LIMIT)
    report = build_report(run, versus=versus, **options)
    return save_report(render(report, chosen, limit=limit), output)


def render(report: Report, fmt: ReportFormat, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """The report as HTML (the report extra) or as markdown of at most ``limit`` characters."""
    return render_html(report) if fmt == "html" else render_markdown(report, limit=limit)


def save_report(text: str, output: str | os.PathLike[str]) -> Path:
    """Write a rendered report atomically (a reader never sees half a page), creating its folder."""
    from evalsuite.records.writers import write_bytes_atomically

    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(target, text.encode("utf-8"))
    return target
