"""The judge-proxy file format: writing and safely reading the archive, knowing nothing of predictors.

A proxy file is a zip archive of two members:

- ``meta.json``: the format and its version, the evalsuite / scikit-learn / MAPIE / skops versions it
  was written with, and whatever the writer adds (a predictor's parameters, classes, fit report and
  feature schema);
- ``model.skops``: the fitted scikit-learn and MAPIE objects in skops' format, which rebuilds
  objects from a description instead of unpickling them.

Reading checks ``meta.json`` first and refuses other versions of scikit-learn or MAPIE (their fitted
objects are not portable), then lists the types ``model.skops`` would build and refuses any type
outside :data:`ALLOWED_TYPES` (types skops already trusts, such as scikit-learn estimators and numpy
arrays, need no listing). Only then are the objects built, with exactly those types trusted. No
pickle is read at any point.

:mod:`proxies.predictor` builds on this module (``JudgePredictor.save`` / ``load``);
:mod:`proxies.persistence` is the public face (``save_predictor`` / ``load_predictor``).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

from evalsuite.errors import ConfigError, MissingDependencyError

__all__ = [
    "ALLOWED_TYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "META_MEMBER",
    "MODEL_MEMBER",
    "UnsafeModelFileError",
    "read_archive",
    "read_meta",
    "write_archive",
]

FORMAT = "evalsuite-judge-proxy"
FORMAT_VERSION = 1
META_MEMBER = "meta.json"
MODEL_MEMBER = "model.skops"
_MAX_META_BYTES = 16 << 20
# The types a proxy holds that skops does not trust by default; nothing else is ever built on load.
ALLOWED_TYPES = frozenset(
    {
        "mapie.classification.SplitConformalClassifier",
        "mapie.classification._MapieClassifier",
        "mapie.conformity_scores.bounds.absolute.AbsoluteConformityScore",
        "mapie.conformity_scores.sets.lac.LACConformityScore",
        "mapie.estimator.classifier.EnsembleClassifier",
        "mapie.estimator.regressor.EnsembleRegressor",
        "mapie.regression.regression.SplitConformalRegressor",
        "mapie.regression.regression._MapieRegressor",
        "numpy.dtype",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.model_selection._split.StratifiedKFold",
    }
)


class UnsafeModelFileError(ConfigError):
    """A proxy file that is not one evalsuite wrote, or that would build types outside the allow-list."""


def write_archive(
    path: str | os.PathLike[str], meta: Mapping[str, Any], payload: Mapping[str, Any]
) -> pathlib.Path:
    """Write ``meta`` (plus the format, its version, a timestamp and library versions) and the fitted
    objects of ``payload`` to ``path``, atomically: readers never see half a file."""
    skops_io = _skops()
    written = {
        **meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    model_bytes = skops_io.dumps(dict(payload), compression=zipfile.ZIP_DEFLATED)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(META_MEMBER, json.dumps(written, indent=2, sort_keys=True, default=_json_default))
        archive.writestr(MODEL_MEMBER, model_bytes)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(target)  # readers never see half a file
    return target


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``meta.json`` of a proxy file (format checked; nothing else is read)."""
    meta, _ = _read_archive(pathlib.Path(path), model=False)
    return meta


def read_archive(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any]:
    """``(meta, payload)`` of a proxy file; no code from the file is executed.

    Raises :class:`UnsafeModelFileError` for a file evalsuite did not write (not a zip archive,
    missing members, a pickle) or one that would build a type outside :data:`ALLOWED_TYPES`, and
    :class:`ConfigError` when it was written with another scikit-learn or MAPIE version.
    """
    source = pathlib.Path(path)
    meta, model_bytes = _read_archive(source, model=True)
    _check_versions(source, meta)
    skops_io = _skops()
    try:
        found = set(skops_io.get_untrusted_types(data=model_bytes))
    except Exception as error:
        raise UnsafeModelFileError(f"{source}: {MODEL_MEMBER} is not a valid skops file ({error})") from error
    refused = sorted(found - ALLOWED_TYPES)
    if refused:
        raise UnsafeModelFileError(
            f"{source}: refusing to load: {MODEL_MEMBER} would build types that a judge proxy never holds: "
            f"{', '.join(refused)}. The file was not written by evalsuite proxy or was altered."
        )
    try:
        payload = skops_io.loads(model_bytes, trusted=sorted(found))
    except Exception as error:
        raise UnsafeModelFileError(f"{source}: {MODEL_MEMBER} could not be loaded ({error})") from error
    return meta, payload


def _read_archive(source: pathlib.Path, *, model: bool) -> tuple[dict[str, Any], bytes]:
    if not source.is_file():
        raise ConfigError(f"proxy file {str(source)!r} does not exist")
    if not zipfile.is_zipfile(source):
        raise UnsafeModelFileError(
            f"{source}: not a judge proxy file (expected a zip archive holding {META_MEMBER} and {MODEL_MEMBER}; "
            "pickles and other formats are never loaded)"
        )
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        if not {META_MEMBER, MODEL_MEMBER} <= names:
            raise UnsafeModelFileError(
                f"{source}: not a judge proxy file: it lacks {META_MEMBER} or {MODEL_MEMBER}"
            )
        if archive.getinfo(META_MEMBER).file_size > _MAX_META_BYTES:
            raise UnsafeModelFileError(f"{source}: {META_MEMBER} is implausibly large")
        try:
            meta = json.loads(archive.read(META_MEMBER).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UnsafeModelFileError(f"{source}: {META_MEMBER} is not valid JSON ({error})") from error
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UnsafeModelFileError(
                f"{source}: not a judge proxy file ({META_MEMBER} does not say format {FORMAT!r})"
            )
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{source}: proxy file format version {meta.get('format_version')!r}; this evalsuite reads "
                f"version {FORMAT_VERSION}: refit the proxy with this evalsuite"
            )
        return meta, archive.read(MODEL_MEMBER) if model else b""


def _check_versions(source: pathlib.Path, meta: dict[str, Any]) -> None:
    written = meta.get("versions")
    if not isinstance(written, dict):
        raise UnsafeModelFileError(f"{source}: {META_MEMBER} has no versions")
    current = _versions()
    for package in ("scikit-learn", "mapie"):
        if written.get(package) != current.get(package):
            raise ConfigError(
                f"{source}: the proxy was fitted with {package} {written.get(package)}, this environment has "
                f"{current.get(package)}; fitted models do not carry across versions: install "
                f"{package}=={written.get(package)} or refit the proxy"
            )


def _versions() -> dict[str, str | None]:
    import evalsuite

    versions: dict[str, str | None] = {"evalsuite": evalsuite.__version__}
    for package in ("scikit-learn", "mapie", "skops", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _skops() -> Any:
    try:
        import skops.io as skops_io
    except ImportError as error:
        raise MissingDependencyError(
            "saving and loading judge proxies needs skops: pip install 'skops>=0.16' (or the evalsuite extra that lists it)"
        ) from error
    return skops_io


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to a proxy file's metadata")
