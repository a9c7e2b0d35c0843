"""Starting the dashboard: what ``evalsuite dashboard`` runs (Streamlit in a child process).

Kept free of Streamlit imports, so the CLI can check the paths and the port, and say which extra is
missing, before anything starts.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from dashboards import APP
from dashboards.data import PATHS_ENV, discover
from evalsuite.errors import ConfigError, MissingDependencyError
from evalsuite.manifest import manifest_path, read_manifest

READY_TIMEOUT_S = 90.0


def check_dependencies() -> None:
    """Raise :class:`MissingDependencyError` naming the extra when Streamlit or Altair is missing."""
    missing = [name for name in ("streamlit", "altair") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"the dashboard needs {' and '.join(missing)}: pip install 'evalsuite[dashboard]'"
        )


def find_runs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """The result files under ``paths`` and one line per manifest that cannot be read (the dashboard
    shows those runs as errors). Raises :class:`ConfigError` when a path has no run."""
    files = discover(paths)
    problems = []
    for file in files:
        manifest = manifest_path(file)
        if manifest.is_file():
            try:
                read_manifest(manifest)
            except ConfigError as error:
                problems.append(str(error))
    return files, problems


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"cannot serve on {host}:{port} ({error.strerror or error}); choose another --port or --host"
            ) from None


def url_for(host: str, port: int) -> str:
    """The address a browser on this machine opens (all-interfaces binds map to loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line: headless, no usage statistics, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--theme.base",
        "light",
        "--client.toolbarMode",
        "minimal",
    ]


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_S) -> bool:
    """Poll Streamlit's health endpoint until it answers; False when the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def serve(
    paths: Sequence[str | os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    announce: Callable[[str], None] = print,
) -> int:
    """Run the dashboard over ``paths`` until interrupted; returns the server's exit code (0 on Ctrl+C).

    ``announce`` gets the URL once the server answers.
    """
    if port == 0:
        port = free_port(host)
    elif not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535 (or 0 for any free port), got {port}")
    _check_port(host, port)
    environment = dict(os.environ)
    environment[PATHS_ENV] = os.pathsep.join(str(Path(path).expanduser().resolve()) for path in paths)
    url = url_for(host, port)
    process = subprocess.Popen(streamlit_command(host, port), env=environment)
    # A SIGTERM (a service manager, a test) must stop the server too, not leave it orphaned.
    previous = _on_sigterm(_interrupt) if threading_is_main() else None
    try:
        # Announce once it answers (or, if it is slow to answer, once it is still alive at the deadline).
        if wait_until_ready(url, process) or process.poll() is None:
            announce(url)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if previous is not None:
            _on_sigterm(previous)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    return signal.signal(signal.SIGTERM, handler)


def threading_is_main() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()
