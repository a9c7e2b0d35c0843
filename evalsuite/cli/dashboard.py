"""``evalsuite dashboard``: serve result files in the Streamlit dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalsuite.cli_common import console, err_console, exit_on_error, print_warning


def dashboard_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Result files, or directories searched for runs (with manifests).")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
) -> None:
    """Open result files in the Streamlit dashboard: runs, distributions, comparisons, records.

    Needs the dashboard extra (pip install 'evalsuite\\[dashboard]'). Prints the URL and serves
    until interrupted (Ctrl+C). Exit codes: 0 stopped, 1 the server failed, 2 a usage error.
    """
    from dashboards.server import check_dependencies, find_runs, serve

    with exit_on_error():  # a missing extra, no runs, a busy port: usage errors (exit 2)
        check_dependencies()
        files, problems = find_runs(paths)
    for problem in problems:
        print_warning(problem)
    console.print(f"{len(files)} run{'s' if len(files) != 1 else ''} found.", highlight=False)
    with exit_on_error():
        code = serve(
            paths,
            host=host,
            port=port,
            announce=lambda url: console.print(
                f"Dashboard: [bold]{url}[/]  (Ctrl+C to stop)", highlight=False, soft_wrap=True
            ),
        )
    if code:
        err_console.print(f"[bold red]error:[/] the dashboard server stopped with exit code {code}")
        raise typer.Exit(1)
