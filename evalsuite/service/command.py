"""``evalsuite serve``: the scoring service over HTTP, and ``evalsuite serve keys add`` for its API keys.

Registered on the CLI app with ``app.add_typer(serve_app, name="serve")``.
Exit codes: 0 stopped, 1 an unexpected failure, 2 a usage or configuration error (as ``evalsuite score``).

    evalsuite serve keys add keys.txt --name ci        # prints the new key once
    evalsuite serve --metrics toxicity,pii --api-keys keys.txt --port 8080
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from evalsuite.cli_common import CachePathOption, DeviceOption, DtypeOption, err_console, exit_on_error
from evalsuite.errors import ConfigError
from evalsuite.service.settings import DEFAULT_METRICS, ServiceSettings

__all__ = ["keys_app", "serve_app"]


serve_app = typer.Typer(
    name="serve",
    help="Serve metrics over HTTP: POST /v1/score, jobs, /metrics and /healthz (docs at /docs). "
    "The models load once, at start.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(
    name="keys",
    help="API keys of the service (only their hashes are stored).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
serve_app.add_typer(keys_app, name="keys")


@serve_app.callback()
def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    metrics: Annotated[str, typer.Option(help="Comma-separated metrics to load and serve.")] = ",".join(
        DEFAULT_METRICS
    ),
    api_keys: Annotated[
        Path | None,
        typer.Option("--api-keys", help="Keys file (see `serve keys add`); without it, no authentication."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Jobs and their database. Default: <evalsuite cache>/service.")
    ] = None,
    allow_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-path",
            metavar="DIR",
            help="A directory jobs may read server-side files from. Repeatable.",
        ),
    ] = None,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to share its model batch.")
    ] = 5.0,
    max_batch_records: Annotated[
        int,
        typer.Option(help="Most records in one merged model batch (1: no merging, one request at a time)."),
    ] = 256,
    read_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds a client has to send a request's headers, then its body (slower: 408).",
        ),
    ] = 30.0,
    upload_timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds a client has to send a job upload (POST /v1/jobs)."),
    ] = 600.0,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    cache: Annotated[bool, typer.Option(help="Reuse and store scores in the score cache.")] = True,
    cache_path: CachePathOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the metrics until interrupted (Ctrl+C); ``serve keys add`` creates API keys."""
    if ctx.invoked_subcommand is not None:
        return
    from evalsuite.service import check_dependencies

    with exit_on_error():
        check_dependencies()
        options: dict[str, object] = {
            "host": host,
            "port": port,
            "metrics": {name: {} for name in _metric_names(metrics)},
            "api_keys_file": api_keys,
            "allowed_paths": tuple(allow_path or ()),
            "max_wait_ms": max_wait_ms,
            "max_batch_records": max_batch_records,
            "read_timeout_s": read_timeout,
            "upload_timeout_s": upload_timeout,
            "device": device,
            "dtype": dtype,
            "cache": cache,
            "cache_path": cache_path,
        }
        if data_dir is not None:
            options["data_dir"] = data_dir
        settings = _settings(options)
        logging.basicConfig(level=log_level.upper(), format="%(levelname)-9s %(name)s: %(message)s")
        from evalsuite.service.app import create_app
        from evalsuite.service.server import server_options

        app = create_app(settings)
    import uvicorn

    uvicorn.run(app, **server_options(settings, log_level=log_level))


@keys_app.command("add")
def add_key_command(
    file: Annotated[Path, typer.Argument(help="Keys file (created if missing, readable by its owner only).")],
    name: Annotated[str, typer.Option("--name", help="Who the key is for, e.g. ci or alice.")],
) -> None:
    """Create an API key: prints it once on stdout and stores only its SHA-256 hash in FILE."""
    from evalsuite.service.auth import add_api_key

    with exit_on_error():
        key = add_api_key(file, name=name)
    typer.echo(key)
    err_console.print(
        f"Added key {escape(name)!r} to {escape(str(file))}. It is shown only now: give it to its user.",
        highlight=False,
    )


def _metric_names(spec: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--metrics needs at least one metric name, got {spec!r}")
    return names


def _settings(options: dict[str, object]) -> ServiceSettings:
    try:
        return ServiceSettings.model_validate(options)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(part) for part in item['loc'][:1]).replace('_', '-')}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise ConfigError(problems) from None
