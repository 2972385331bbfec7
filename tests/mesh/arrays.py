"""Exact array comparison for the converters' tests: same dtype, same shape, same values."""

from __future__ import annotations

import numpy as np


def assert_same(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), (a.dtype, b.dtype, a.shape, b.shape)
