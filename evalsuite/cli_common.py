"""What every ``evalsuite`` command shares: its common options, and how it reports a failure.

A failure is one line on stderr and an exit code:

- 0 ok;
- 1 a quality gate failed (``--fail-under``, ``--fail-if-worse``: set by the command itself);
- 2 a usage or input error: a bad option or record, a model or extra to install — what the user
  can fix by changing the command, the input or the installation;
- 3 an unexpected failure (a bug, or the machine: a full disk): the line says what failed and where
  the full traceback was written, so CI can tell a crash from a quality regression.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from evalsuite.errors import (
    ConfigError,
    InputError,
    MissingDependencyError,
    ModelUnavailableError,
    ResumeError,
    ThresholdError,
)

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

THRESHOLD_FAILED = 1
USAGE_ERROR = 2
UNEXPECTED_FAILURE = 3
# What the user can fix by changing the command, the input or the installation.
USAGE_ERRORS = (ConfigError, InputError, ResumeError, ModelUnavailableError, MissingDependencyError)
# Where crash reports go (default: the user log directory).
LOG_DIR_ENV = "EVALSUITE_LOG_DIR"
# Typer's own control flow: exits, aborts and usage errors (a missing argument). Typer ships its own
# copy of click, so its ClickException is found through a public subclass rather than imported.
_CLICK_EXCEPTION: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
_COMMAND_FLOW: tuple[type[Exception], ...] = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)

console = Console()
err_console = Console(stderr=True)

# The options several commands take, defined once so their names and help read the same everywhere.
DeviceOption = Annotated[
    str, typer.Option(help="Device to run the models on: auto, cpu, cuda, cuda:N or mps.")
]
DtypeOption = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")]
OverwriteOption = Annotated[bool, typer.Option(help="Start afresh instead of resuming a partial output.")]
CachePathOption = Annotated[Path | None, typer.Option(help="SQLite score cache file.")]

# Input names whose extension a default output name replaces (``answers.jsonl`` → ``answers.scores.jsonl``).
_INPUT_SUFFIXES = (".jsonl.gz", ".ndjson.gz", ".jsonl", ".ndjson", ".parquet", ".csv")


def default_output(source: Path, kind: str) -> Path:
    """The output a command writes beside its input when none is given: ``IN.<kind>.jsonl``.

    >>> default_output(Path("runs/answers.jsonl.gz"), "scores").as_posix()
    'runs/answers.scores.jsonl'
    """
    name = source.name
    for suffix in _INPUT_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return source.with_name(f"{name}.{kind}.jsonl")


def progress_bar(*rate_columns: ProgressColumn) -> Progress:
    """The progress bar of a long command, on stderr and only on a terminal (never in CI logs);
    ``rate_columns`` (rich ``ProgressColumn``s) go between the count and the elapsed time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *rate_columns,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def print_error(error: BaseException | str) -> None:
    """``error: <message>`` on stderr; the message is escaped (``evalsuite[ray]`` is not markup)."""
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)


def print_warning(message: object) -> None:
    """``warning: <message>`` on stderr, escaped like :func:`print_error`."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn errors raised inside into a printed line and the matching exit code (see the module doc)."""
    try:
        yield
    except _COMMAND_FLOW:
        raise  # the command chose its exit already (click's own usage errors exit 2)
    except USAGE_ERRORS as error:
        print_error(error)
        raise typer.Exit(USAGE_ERROR) from None
    except ThresholdError as error:
        print_error(error)
        raise typer.Exit(THRESHOLD_FAILED) from None
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        report = write_crash_report(error)
        where = f"the full traceback is in {report}" if report else "the traceback could not be written"
        print_error(f"unexpected failure: {type(error).__name__}: {error} ({where})")
        raise typer.Exit(UNEXPECTED_FAILURE) from None


def write_crash_report(error: BaseException) -> Path | None:
    """Write ``error``'s traceback to a new file in the log directory; ``None`` when nothing is writable."""
    import platformdirs

    text = "".join(traceback.format_exception(error))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    folders = [os.environ.get(LOG_DIR_ENV) or platformdirs.user_log_dir("evalsuite"), tempfile.gettempdir()]
    for folder in folders:
        try:
            path = Path(folder).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            report = path / name
            report.write_text(text, encoding="utf-8", errors="backslashreplace")
        except OSError:
            continue
        return report
    return None


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show the warnings a command raises (a damaged cache, a column stored as JSON text) as one
    ``warning:`` line each, not as Python's two-line source listing."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print_warning(message)

    with warnings.catch_warnings():
        for category in (UserWarning, RuntimeWarning):
            warnings.simplefilter("default", category)
        warnings.showwarning = show
        yield


class EvalsuiteGroup(TyperGroup):
    """The command group of every ``evalsuite`` Typer app: any command's failure goes through
    :func:`exit_on_error`, so no traceback ever reaches the terminal and the exit code says what kind
    of failure it was; warnings are printed as lines."""

    def invoke(self, ctx: Any) -> Any:  # click's Context, of the copy Typer ships
        with exit_on_error(), warnings_as_lines():
            return super().invoke(ctx)
