"""Evaluation as a service: the served metrics behind an HTTP API (``evalsuite serve``).

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client, python-multipart)::

    from evalsuite.service import ServiceSettings, create_app
    app = create_app(ServiceSettings(metrics={"toxicity": {}, "pii": {}}))

Importing this package imports none of them; :func:`check_dependencies` says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from evalsuite._lazy import lazy_exports
from evalsuite.errors import MissingDependencyError

__all__ = ["ServiceSettings", "check_dependencies", "create_app"]

# module to import → distribution to install
SERVE_DEPENDENCIES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "python_multipart": "python-multipart",
}
_EXPORTS = {"create_app": "evalsuite.service.app", "ServiceSettings": "evalsuite.service.settings"}

if TYPE_CHECKING:
    from evalsuite.service.app import create_app
    from evalsuite.service.settings import ServiceSettings


def check_dependencies() -> None:
    """Raise :class:`MissingDependencyError` naming the ``serve`` extra when a server package is missing."""
    missing = [
        package for module, package in SERVE_DEPENDENCIES.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise MissingDependencyError(
            f"evalsuite serve needs {', '.join(missing)}: pip install 'evalsuite[serve]'"
        )


__getattr__ = lazy_exports(globals(), _EXPORTS)
