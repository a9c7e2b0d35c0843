"""Tests of evalsuite.runtime.device: device and dtype policy, out-of-memory recognition."""

from __future__ import annotations

import pytest
import torch

from evalsuite.errors import ConfigError
from evalsuite.runtime.device import is_out_of_memory, resolve_device, resolve_dtype

requires_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only policy")
requires_no_accelerator = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="checks the CPU-only policy"
)


@requires_no_accelerator
def test_auto_is_cpu_without_an_accelerator() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")


def test_cpu_is_always_available() -> None:
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("name", ["gpu", "CUDA", "tpu", "", "cpu0", "xla:0"])
def test_unknown_device_names_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match=r"device must be one of .*got"):
        resolve_device(name)


@requires_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_requested_without_cuda_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the no-MPS message")
def test_mps_requested_without_mps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


def test_auto_dtype_is_float32_on_cpu() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32


def test_auto_dtype_is_float16_on_cuda() -> None:
    # The policy only reads the device type, so no GPU is needed to check it.
    assert resolve_dtype("auto", torch.device("cuda")) is torch.float16


@pytest.mark.parametrize(
    ("name", "expected"),
    [("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)],
)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_dtypes(name: str, expected: torch.dtype, device: str) -> None:
    assert resolve_dtype(name, torch.device(device)) is expected


@pytest.mark.parametrize("name", ["fp16", "half", "float64", "int8", "", "Float32"])
def test_unknown_dtypes_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match=r"dtype must be one of .*got"):
        resolve_dtype(name, torch.device("cpu"))


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
    ],
    ids=["torch-oom", "cuda-message", "mps-message"],
)
def test_out_of_memory_errors_are_recognised(error: BaseException) -> None:
    assert is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("shape mismatch"),
        ValueError("out of memory"),  # not a device error type
        KeyError("memory"),
    ],
    ids=["other-runtime-error", "value-error", "key-error"],
)
def test_other_errors_are_not_out_of_memory(error: BaseException) -> None:
    assert not is_out_of_memory(error)
