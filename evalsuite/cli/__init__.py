"""The ``evalsuite`` command line: score files, compare runs, list metrics and models, and more.

One module per command (group); this package only assembles them into :data:`app`. Importing it
imports no model stack (torch, transformers, scikit-learn, scipy): each command imports what it
needs when it runs, so ``evalsuite --help`` and a run served from the score cache start fast.

Exit codes: 0 ok, 1 a threshold failed, 2 a usage or input error, 3 an unexpected failure (see
:mod:`evalsuite.cli_common`).
"""

from __future__ import annotations

import typer

from evalsuite.cli.catalog import list_metrics_command, list_models_command
from evalsuite.cli.compare import compare_command
from evalsuite.cli.dashboard import dashboard_command
from evalsuite.cli.factuality_fit import factuality_fit_command
from evalsuite.cli.generate import generate_command
from evalsuite.cli.nli_eval import nli_eval_command
from evalsuite.cli.proxy import proxy_app
from evalsuite.cli.report import report_command
from evalsuite.cli.score import _score_engine as _score_engine  # the Ray engine tests reach it here
from evalsuite.cli.score import score_command
from evalsuite.cli_common import EvalsuiteGroup
from evalsuite.service.command import serve_app

__all__ = ["app"]

app = typer.Typer(
    name="evalsuite",
    help="Evaluate LLM outputs with small models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=EvalsuiteGroup,
)

# In the order `evalsuite --help` lists them.
app.command("score")(score_command)
app.command("metrics")(list_metrics_command)
app.command("models")(list_models_command)
app.command("nli-eval")(nli_eval_command)
app.command("factuality-fit")(factuality_fit_command)
app.command("compare")(compare_command)
app.command("report")(report_command)
app.command("dashboard")(dashboard_command)
# Command groups; `serve` lives beside the service it starts.
app.command("generate")(generate_command)
app.add_typer(proxy_app, name="proxy")
app.add_typer(serve_app, name="serve")
