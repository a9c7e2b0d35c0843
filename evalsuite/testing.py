"""Helpers for tests of evalsuite and of metrics written for it.

Floats computed with other batch shapes, thread counts or CPU kernels (Intel or AMD) differ in
their last bits, so scores are compared with a tolerance derived from their dtype, never exactly::

    torch.testing.assert_close(batched, one_by_one, **float_tolerance(torch.float32))
    assert got == pytest.approx(expected, **float_tolerance("float32", style="approx"))
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["float_tolerance"]

# Batched reductions (softmax, layer norms, a mean over token log-probabilities) accumulate a few
# hundred roundings at most on the inputs a test uses.
DEFAULT_ULPS = 256


def float_tolerance(
    dtype: Any = "float32", *, ulps: int = DEFAULT_ULPS, style: Literal["torch", "approx"] = "torch"
) -> dict[str, float]:
    """Relative and absolute tolerance of ``ulps`` units of ``dtype``'s machine epsilon.

    ``style="torch"`` gives ``rtol``/``atol`` (``torch.testing.assert_close``, ``numpy.allclose``),
    ``style="approx"`` gives ``rel``/``abs`` (``pytest.approx``).

    >>> float_tolerance("float32")
    {'rtol': 3.0517578125e-05, 'atol': 3.0517578125e-05}
    """
    import torch

    resolved = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tolerance = ulps * torch.finfo(resolved).eps
    if style == "approx":
        return {"rel": tolerance, "abs": tolerance}
    return {"rtol": tolerance, "atol": tolerance}
