"""What every ``evalsuite`` command shares: its common options, and how it reports a failure.

A failure is one line on stderr and an exit code. Exit codes: 2 a usage or input error (bad option, bad record, a model or extra to install), 1 any
other evalsuite failure (or a failed threshold, set by the command itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from evalsuite.errors import (
    ConfigError,
    EvalsuiteError,
    InputError,
    MissingDependencyError,
    ModelUnavailableError,
    ResumeError,
)

USAGE_ERROR = 2
FAILURE = 1
# What the user can fix by changing the command, the input or the installation.
USAGE_ERRORS = (ConfigError, InputError, ResumeError, ModelUnavailableError, MissingDependencyError)

err_console = Console(stderr=True)

DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOption = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")]
OverwriteOption = Annotated[bool, typer.Option(help="Start afresh instead of resuming a partial output.")]


def print_error(error: BaseException | str) -> None:
    """``error: <message>`` on stderr; the message is escaped (``evalsuite[ray]`` is not markup)."""
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn evalsuite errors raised inside into a printed message and the matching exit code."""
    try:
        yield
    except USAGE_ERRORS as error:
        print_error(error)
        raise typer.Exit(USAGE_ERROR) from None
    except EvalsuiteError as error:
        print_error(error)
        raise typer.Exit(FAILURE) from None
