"""Decimal text to float64, correctly rounded, compiled: a result file's numbers without a Python float each.

Python's ``float`` (and numpy's string cast, which rounds the same way) returns the float64 nearest to the
decimal, ties to even.  Two ways to get exactly that here, else a number is left to numpy:

* Clinger's fast path: a decimal ``w * 10**q`` with ``w <= 2**53`` and ``|q| <= 22`` is one correctly
  rounded IEEE multiplication or division of two exactly representable numbers.
* A candidate and a proof, for the 16- and 17-digit numbers that Python's ``repr`` writes for most floats
  (``0.5123456789012345``, ``123.45670318603516``): ``c * 2**e`` from a float division, its neighbours,
  and an exact 128-bit integer comparison of ``w * 2**(1 - e)`` with ``(2c -/+ 1) * 10**k`` (``k = -q``)
  that shows which one is within half a unit in the last place.  Where the integers would not fit in 128
  bits, or the decimal is exactly halfway, the number is left to numpy.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_POW10 = np.array([10.0**i for i in range(23)])
_POW10_INT = np.array([10**i for i in range(20)], np.uint64)


@numba.njit(cache=True, nogil=True)
def _mul(a, b):  # pragma: no cover
    """The 128-bit product of two uint64, as (high, low)."""
    a_lo, a_hi = a & _M32, a >> np.uint64(32)
    b_lo, b_hi = b & _M32, b >> np.uint64(32)
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> np.uint64(32)) + (p1 & _M32) + (p2 & _M32)
    low = (p0 & _M32) | (mid << np.uint64(32))
    high = p3 + (p1 >> np.uint64(32)) + (p2 >> np.uint64(32)) + (mid >> np.uint64(32))
    return high, low


@numba.njit(cache=True, nogil=True)
def _bits(x):  # pragma: no cover
    n = 0
    while x:
        x >>= np.uint64(1)
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _less(a_hi, a_lo, b_hi, b_lo):  # pragma: no cover
    return a_hi < b_hi or (a_hi == b_hi and a_lo < b_lo)


@numba.njit(cache=True, nogil=True)
def _nearest(w, k):  # pragma: no cover
    """The float64 nearest to w / 10**k (w < 2**64, 0 < k <= 19), and whether it was proven."""
    guess = float(w) / _POW10[k]
    if not (1e-300 < guess < 2.0**52):
        return 0.0, False
    fraction, exponent = math.frexp(guess)
    m = np.uint64(fraction * 2.0**53)
    e = exponent - 53  # guess = m * 2**e, 2**52 <= m < 2**53, e < 0
    shift = 1 - e
    if _bits(w) + shift > 127:
        return 0.0, False
    # A = w * 2**shift as (high, low)
    if shift >= 64:
        a_hi, a_lo = w << np.uint64(shift - 64), np.uint64(0)
    else:
        a_hi, a_lo = w >> np.uint64(64 - shift), w << np.uint64(shift)
    scale = _POW10_INT[k]
    for step in (0, -1, 1):
        c = np.uint64(np.int64(m) + step)
        if c < np.uint64(1 << 52) or c >= np.uint64(1 << 53):
            continue
        lo_hi, lo_lo = _mul(np.uint64(2) * c - np.uint64(1), scale)
        hi_hi, hi_lo = _mul(np.uint64(2) * c + np.uint64(1), scale)
        if _less(lo_hi, lo_lo, a_hi, a_lo) and _less(a_hi, a_lo, hi_hi, hi_lo):
            return math.ldexp(float(c), e), True
    return 0.0, False


@numba.njit(cache=True, nogil=True)
def parse_number(text, start, end):  # pragma: no cover
    """(value, ok) of the JSON number text[start:end]."""
    i = start
    negative = False
    if i < end and text[i] == 45:
        negative = True
        i += 1
    w = np.uint64(0)
    digits = 0
    q = 0
    seen = False
    while i < end and 48 <= text[i] <= 57:
        seen = True
        if w or text[i] != 48:
            if digits >= 19:
                return 0.0, False
            w = w * np.uint64(10) + np.uint64(text[i] - 48)
            digits += 1
        i += 1
    if i < end and text[i] == 46:
        i += 1
        while i < end and 48 <= text[i] <= 57:
            seen = True
            if w or text[i] != 48:
                if digits >= 19:
                    return 0.0, False
                w = w * np.uint64(10) + np.uint64(text[i] - 48)
                digits += 1
            q -= 1
            i += 1
    if not seen:
        return 0.0, False
    if i < end and (text[i] == 101 or text[i] == 69):
        i += 1
        sign = 1
        if i < end and (text[i] == 45 or text[i] == 43):
            sign = -1 if text[i] == 45 else 1
            i += 1
        exponent = 0
        any_digit = False
        while i < end and 48 <= text[i] <= 57:
            exponent = exponent * 10 + (text[i] - 48)
            any_digit = True
            i += 1
            if exponent > 100000:
                return 0.0, False
        if not any_digit:
            return 0.0, False
        q += sign * exponent
    if i != end:
        return 0.0, False
    if w == 0:
        return (-0.0 if negative else 0.0), True
    value = 0.0
    ok = False
    if w <= np.uint64(1 << 53) and -22 <= q <= 22:
        value = float(w) * _POW10[q] if q >= 0 else float(w) / _POW10[-q]
        ok = True
    elif -19 <= q < 0:
        value, ok = _nearest(w, -q)
    return (-value if negative else value), ok


def exact_float(text: bytes) -> float:
    """Python's ``float`` of a number's text: the compiled parser where it proves its result, else numpy's
    string cast, which rounds the same way (and raises ``ValueError`` on text that is not a number)."""
    value, ok = parse_number(np.frombuffer(text, np.uint8), 0, len(text))
    return value if ok else float(np.array([text]).astype(np.float64)[0])
