"""The arithmetic that checks a string tensor's lengths without a Python object per string."""

from __future__ import annotations

import random

import pytest

from modelmorph_tfckpt.bundle.strings import _ascii_sum


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1 << 18])
def test_ascii_sum_is_the_sum_of_the_bytes(size):
    rng = random.Random(size)
    for data in (bytes([127]) * size, bytes(rng.randrange(128) for _ in range(size)), bytes(size)):
        assert _ascii_sum(data) == sum(data)
