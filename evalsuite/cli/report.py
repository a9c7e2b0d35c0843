"""``evalsuite report``: a run, or a run against a baseline, as a shareable HTML page or a PR comment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from evalsuite.cli_common import console, err_console, exit_on_error, print_warning
from evalsuite.manifest import sibling_path


def report_command(
    run: Annotated[
        Path, typer.Argument(help="Result file to report on (B with --versus): .parquet, .jsonl or .csv.")
    ],
    versus: Annotated[
        Path | None,
        typer.Option(
            help="Baseline result file (A): adds the paired comparison, as `evalsuite compare A RUN`."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write it; '-' prints it. Default: RUN.report.html (or .md)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="html: one self-contained page (the report extra); markdown: a pull-request comment, "
            "capped at GitHub's 65,536 characters. Default: from -o's suffix, else html.",
        ),
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="Heading of the report (default: the file names).")
    ] = None,
    worst: Annotated[
        int, typer.Option(help="Records listed per metric: the worst, and those that got worse.")
    ] = 5,
    max_records: Annotated[
        int, typer.Option(help="Rows of the record table; larger runs are sampled (statistics never are).")
    ] = 200,
    confidence: Annotated[
        float, typer.Option(help="Confidence level of the comparison's bootstrap CIs.")
    ] = 0.95,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the comparison.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the record sample.")] = 0,
) -> None:
    """Write a shareable report of RUN: provenance, summary with CIs, histograms, the worst records with
    their evidence and, with --versus, the paired comparison and the records that got worse the most.

    The HTML file inlines its scripts, styles and data, so it opens offline (a CI artifact, an e-mail).
    Problems that leave a report meaningful (no manifest, no common record ids, different metric
    configs) are warnings printed here and shown in the report. Exit codes: 0 written, 2 a usage error
    (a missing or unreadable file, a missing extra).
    """
    from evalsuite.report import build_report, render, report_format, save_report

    to_stdout = output is not None and str(output) == "-"
    with exit_on_error():
        chosen = report_format(None if to_stdout else output, fmt)
        with err_console.status("reading the runs") as status:
            report = build_report(
                run,
                versus=versus,
                title=title,
                worst=worst,
                max_records=max_records,
                confidence=confidence,
                resamples=resamples,
                seed=seed,
                step=status.update,
            )
            status.update(f"rendering {chosen}")
            text = render(report, chosen)
    for line in report.warnings:
        print_warning(line)
    if to_stdout:
        sys.stdout.write(text)
        return
    target = save_report(
        text, output or sibling_path(run, ".report.html" if chosen == "html" else ".report.md")
    )
    console.print(f"report: {target} ({len(text):,} characters)", highlight=False)
