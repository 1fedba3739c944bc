"""Decimal text to float64 exactly as Python's ``float``: numbers must not depend on how the file was read."""

from __future__ import annotations

import random

import numpy as np

from eqlv2.evaluation.float_text import exact_float


def _parse(texts: list[str]) -> np.ndarray:
    return np.array([exact_float(text.encode()) for text in texts])


def test_numbers_as_mmdet_and_python_write_them_round_as_float_does():
    rng = random.Random(0)
    texts = []
    for _ in range(20000):
        texts.append(repr(rng.random()))  # scores: 16-17 digits
        texts.append(repr(float(np.float32(rng.uniform(0, 640)))))  # boxes from float32 tensors
        texts.append(repr(rng.random() * 10 ** rng.randint(-8, 8)))
        digits = rng.randint(1, 19)
        texts.append(f"{rng.randint(0, 10**17 - 1) / 10 ** rng.randint(1, 19):.{digits}f}")  # not shortest
    texts += ["0", "-0.0", "1e-05", "12", "1E+2", "-3.5", "5e-324", "1.7976931348623157e308", "0.1",
              "0.30000000000000004", "9007199254740993", "9007199254740993.0", "0.00012345678901234567",
              "2.5000000000000000000000001"]  # fmt: skip
    got = _parse(texts)
    expected = np.array([float(t) for t in texts])
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))  # bit for bit, signed zero included


def test_halfway_decimals_round_to_even():
    # 2**53 + 1 and 2**53 + 3 lie halfway between two floats; float() rounds to the even one.
    texts = ["9007199254740993", "9007199254740995", "0.50000000000000005551115123125783"]
    got = _parse(texts)
    assert got.tolist() == [float(t) for t in texts]
