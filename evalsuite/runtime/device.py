"""Device and dtype policy: the one place that decides where models run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalsuite.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


def check_device(device: str) -> str:
    """A device name checked against the choices, without importing torch (or asking the hardware).

    >>> check_device("cuda:1")
    'cuda:1'
    """
    if device.split(":")[0] not in DEVICE_CHOICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or 'cuda:N'), got {device!r}")
    return device


def check_dtype(dtype: str) -> str:
    """A dtype name checked against the choices, without importing torch.

    >>> check_dtype("bfloat16")
    'bfloat16'
    """
    if dtype not in DTYPE_CHOICES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"``, as the manifest writes it."""
    return str(dtype).removeprefix("torch.")


def resolve_device(device: str = "auto") -> torch.device:
    """Map ``"auto"`` to the best device present (cuda → mps → cpu); validate explicit choices.

    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    name = check_device(device).split(":")[0]
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was requested but CUDA is not available; use --device auto or cpu"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was requested but MPS is not available; use --device auto or cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` is float32 on CPU and MPS (exact, reproducible scores) and float16 on CUDA (speed).

    Scores computed in half precision differ from float32 in the 3rd–4th decimal; the manifest
    records the dtype so two runs are only compared when it matches.
    """
    import torch

    if check_dtype(dtype) == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def is_out_of_memory(error: BaseException) -> bool:
    """True for the device out-of-memory errors that a smaller batch can avoid."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    message = str(error).lower()
    # CUDA/MPS say "out of memory"; the CPU allocator says "can't allocate memory".
    return isinstance(error, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


def release_cached_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error, before retrying smaller."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
