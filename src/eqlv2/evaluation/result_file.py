"""Reading a COCO-style result file into arrays, without building a Python object per detection.

An LVIS result file holds a few hundred thousand detections (``image_id``, ``category_id``, ``score``,
``bbox`` and, for masks, ``segmentation: {size, counts}``).  Parsed with a JSON library, each becomes a
dict of floats, lists and strings: on 2 cores that alone takes longer than the rest of the evaluation.  The
numba scanner below reads that layout straight into arrays (keys in any order, unknown keys skipped; the
RLE strings stay in the file's buffer, where JSON wrote each backslash twice, which the RLE decoder of
:mod:`eqlv2.evaluation.rle` undoes); numbers are converted, correctly rounded as Python's
``float`` does, by :mod:`eqlv2.evaluation.float_text`.  Any other layout (polygon masks, ``NaN``
literals, ids written as floats, ...) makes the scanner give up, and :func:`read_results` falls back to
a JSON library, so what a file means never depends on which path read it.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numba
import numpy as np

from eqlv2.evaluation.float_text import exact_float, parse_number

NUMBER_WIDTH = 32  # bytes kept of a number's text; a longer number sends the file to the JSON library

# Which fields a detection had, as bits of ``Results.fields``.
IMAGE_ID, CATEGORY_ID, SCORE, BBOX, SEGMENTATION = 1, 2, 4, 8, 16


@dataclass
class Results:
    """The detections of a result file, in file order."""

    image_id: np.ndarray  # (N,) int64
    category_id: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float64
    bbox: np.ndarray  # (N, 4) float64, NaN where absent
    fields: np.ndarray  # (N,) bits: which of the fields each detection had
    mask_size: np.ndarray  # (N, 2) int64 height, width; -1 where absent
    mask_text: np.ndarray  # uint8, a buffer holding the compressed RLE strings
    mask_begin: np.ndarray  # (N,) detection i's string is mask_text[mask_begin[i]:mask_end[i]]
    mask_end: np.ndarray  # (N,)
    mask_escaped: bool  # the strings are as JSON wrote them: a backslash is written twice
    polygons: dict  # detection index -> a segmentation given as polygons or uncompressed RLE


_KEYS = tuple(
    np.frombuffer(k, np.uint8) for k in (b"image_id", b"category_id", b"score", b"bbox", b"segmentation")
)
_SIZE = np.frombuffer(b"size", np.uint8)
_COUNTS = np.frombuffer(b"counts", np.uint8)


@numba.njit(cache=True, nogil=True)
def _ws(buf, i):  # pragma: no cover
    while i < len(buf) and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _key_is(buf, start, end, key):  # pragma: no cover
    if end - start != len(key):
        return False
    for k in range(len(key)):
        if buf[start + k] != key[k]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _string_end(buf, i):  # pragma: no cover
    """Index after the closing quote of the string opening at ``i``; -1 if unterminated."""
    i += 1
    while i < len(buf):
        if buf[i] == 92:  # backslash: skip the escaped byte
            i += 2
            continue
        if buf[i] == 34:
            return i + 1
        i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _number_end(buf, i):  # pragma: no cover
    while i < len(buf):
        c = buf[i]
        if (48 <= c <= 57) or c == 45 or c == 43 or c == 46 or c == 101 or c == 69:
            i += 1
        else:
            break
    return i


@numba.njit(cache=True, nogil=True)
def _skip_value(buf, i):  # pragma: no cover
    """Index after the JSON value at ``i`` (any kind); -1 on malformed input."""
    depth = 0
    while i < len(buf):
        i = _ws(buf, i)
        if i >= len(buf):
            return -1
        c = buf[i]
        if c == 34:
            i = _string_end(buf, i)
            if i < 0:
                return -1
        elif c == 91 or c == 123:
            depth += 1
            i += 1
            continue
        elif c == 93 or c == 125:
            depth -= 1
            i += 1
        elif c == 44 or c == 58:
            i += 1
            continue
        elif c == 116 or c == 110:  # true, null
            i += 4
        elif c == 102:  # false
            i += 5
        else:
            end = _number_end(buf, i)
            if end == i:
                return -1
            i = end
        if depth <= 0:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def _integer(buf, start, end):  # pragma: no cover
    """A JSON integer; (value, ok)."""
    sign = 1
    if start < end and buf[start] == 45:
        sign = -1
        start += 1
    if start >= end or end - start > 18:
        return 0, False
    value = 0
    for k in range(start, end):
        if not 48 <= buf[k] <= 57:
            return 0, False
        value = value * 10 + (buf[k] - 48)
    return sign * value, True


@numba.njit(cache=True, nogil=True)
def _number(buf, start, end, values, undecided, row, column):  # pragma: no cover
    """Convert the number ``buf[start:end]`` into ``values[row, column]``; one the compiled parser cannot
    prove is marked in ``undecided`` (its start offset, for numpy's conversion).  False: no number here,
    or one longer than NUMBER_WIDTH (for the JSON library)."""
    if end - start > NUMBER_WIDTH or end == start:
        return False
    value, ok = parse_number(buf, start, end)
    if ok:
        values[row, column] = value
    else:
        undecided[row, column] = start
    return True


@numba.njit(cache=True, nogil=True)
def _rle_string_end(buf, i):  # pragma: no cover
    """Index after the closing quote of the RLE string opening at ``i``, -1 if it is not one as JSON writes
    them (bytes 48..111, a backslash written twice)."""
    i += 1
    while i < len(buf):
        c = buf[i]
        if c == 34:
            return i + 1
        if c == 92:
            if i + 1 >= len(buf) or buf[i + 1] != 92:
                return -1
            i += 2
        elif 48 <= c <= 111:
            i += 1
        else:
            return -1
    return -1


@numba.njit(cache=True, nogil=True)
def _scan(buf, capacity, k_image, k_category, k_score, k_bbox, k_segm, k_size, k_counts):  # pragma: no cover
    """Scan a result list; (count, ok) plus the arrays.  ok False: leave the file to the JSON library."""
    ints = np.zeros((capacity, 4), np.int64)  # image_id, category_id, height, width
    fields = np.zeros(capacity, np.int64)
    values = np.full((capacity, 5), np.nan)  # score, x, y, w, h (NaN: absent)
    undecided = np.full((capacity, 5), -1, np.int64)  # where a number left to numpy starts
    mask_begin = np.zeros(capacity, np.int64)
    mask_end = np.zeros(capacity, np.int64)
    n = 0
    i = _ws(buf, 0)
    if i >= len(buf) or buf[i] != 91:
        return 0, False, ints, fields, values, undecided, mask_begin, mask_end
    i = _ws(buf, i + 1)
    if i < len(buf) and buf[i] == 93:
        return 0, _ws(buf, i + 1) == len(buf), ints, fields, values, undecided, mask_begin, mask_end
    while True:
        if n >= capacity or i >= len(buf) or buf[i] != 123:
            return n, False, ints, fields, values, undecided, mask_begin, mask_end
        i = _ws(buf, i + 1)
        while i < len(buf) and buf[i] != 125:
            if buf[i] != 34:
                return n, False, ints, fields, values, undecided, mask_begin, mask_end
            key_end = _string_end(buf, i)
            if key_end < 0:
                return n, False, ints, fields, values, undecided, mask_begin, mask_end
            k0, k1 = i + 1, key_end - 1
            for k in range(k0, k1):
                if buf[k] == 92:  # an escaped key: for the JSON library
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
            i = _ws(buf, key_end)
            if i >= len(buf) or buf[i] != 58:
                return n, False, ints, fields, values, undecided, mask_begin, mask_end
            i = _ws(buf, i + 1)
            if _key_is(buf, k0, k1, k_image) or _key_is(buf, k0, k1, k_category):
                column = 0 if _key_is(buf, k0, k1, k_image) else 1
                end = _number_end(buf, i)
                value, ok = _integer(buf, i, end)
                if not ok:
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
                ints[n, column] = value
                fields[n] |= 1 << column
                i = end
            elif _key_is(buf, k0, k1, k_score):
                end = _number_end(buf, i)
                if not _number(buf, i, end, values, undecided, n, 0):
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
                fields[n] |= 4
                i = end
            elif _key_is(buf, k0, k1, k_bbox):
                if buf[i] != 91:
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
                i += 1
                for column in range(1, 5):
                    i = _ws(buf, i)
                    end = _number_end(buf, i)
                    if not _number(buf, i, end, values, undecided, n, column):
                        return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    i = _ws(buf, end)
                    if i >= len(buf) or buf[i] != (44 if column < 4 else 93):
                        return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    i += 1
                fields[n] |= 8
            elif _key_is(buf, k0, k1, k_segm):
                if buf[i] != 123:  # polygons: for the JSON library
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
                i = _ws(buf, i + 1)
                got = 0
                while i < len(buf) and buf[i] != 125:
                    if buf[i] != 34:
                        return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    key_end = _string_end(buf, i)
                    if key_end < 0:
                        return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    s0, s1 = i + 1, key_end - 1
                    i = _ws(buf, key_end)
                    if i >= len(buf) or buf[i] != 58:
                        return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    i = _ws(buf, i + 1)
                    if _key_is(buf, s0, s1, k_size):
                        if buf[i] != 91:
                            return n, False, ints, fields, values, undecided, mask_begin, mask_end
                        i += 1
                        for column in range(2, 4):
                            i = _ws(buf, i)
                            end = _number_end(buf, i)
                            value, ok = _integer(buf, i, end)
                            if not ok:
                                return n, False, ints, fields, values, undecided, mask_begin, mask_end
                            ints[n, column] = value
                            i = _ws(buf, end)
                            if i >= len(buf) or buf[i] != (44 if column < 3 else 93):
                                return n, False, ints, fields, values, undecided, mask_begin, mask_end
                            i += 1
                        got |= 1
                    elif _key_is(buf, s0, s1, k_counts):
                        if buf[i] != 34:  # uncompressed RLE: for the JSON library
                            return n, False, ints, fields, values, undecided, mask_begin, mask_end
                        end = _rle_string_end(buf, i)
                        if end < 0:
                            return n, False, ints, fields, values, undecided, mask_begin, mask_end
                        mask_begin[n], mask_end[n] = i + 1, end - 1  # kept in the file's buffer, escaped
                        i = end
                        got |= 2
                    else:
                        i = _skip_value(buf, i)
                        if i < 0:
                            return n, False, ints, fields, values, undecided, mask_begin, mask_end
                    i = _ws(buf, i)
                    if i < len(buf) and buf[i] == 44:
                        i = _ws(buf, i + 1)
                if got != 3 or i >= len(buf):
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
                i += 1
                fields[n] |= 16
            else:
                i = _skip_value(buf, i)
                if i < 0:
                    return n, False, ints, fields, values, undecided, mask_begin, mask_end
            i = _ws(buf, i)
            if i < len(buf) and buf[i] == 44:
                i = _ws(buf, i + 1)
            elif i < len(buf) and buf[i] != 125:
                return n, False, ints, fields, values, undecided, mask_begin, mask_end
        if i >= len(buf):
            return n, False, ints, fields, values, undecided, mask_begin, mask_end
        n += 1
        i = _ws(buf, i + 1)
        if i < len(buf) and buf[i] == 44:
            i = _ws(buf, i + 1)
            continue
        if i < len(buf) and buf[i] == 93:
            return n, _ws(buf, i + 1) == len(buf), ints, fields, values, undecided, mask_begin, mask_end
        return n, False, ints, fields, values, undecided, mask_begin, mask_end


@numba.njit(cache=True, nogil=True)
def _count_byte(buf, byte):  # pragma: no cover
    n = 0
    for c in buf:
        n += c == byte
    return n


def map_file(path) -> bytes | mmap.mmap:
    """A file's bytes, mapped read-only from the page cache; an empty file as empty bytes.

    Reading 100 MB into a new bytes object costs more than scanning it (a copy, and a page fault per 4 KiB
    of fresh memory, which also stalls the thread reading the ground truth meanwhile); a mapping costs a
    fault per 64 KiB of file (the kernel maps the pages around each fault) and no copy.
    """
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def scan_results(data: bytes | mmap.mmap) -> Results | None:
    """The detections of a result file read by the scanner, or None where it leaves the file alone."""
    buf = np.frombuffer(data, np.uint8)
    capacity = _count_byte(buf, 123) + 1  # an upper bound: every detection opens with "{"
    n, ok, ints, fields, values, undecided, mask_begin, mask_end = _scan(
        buf, capacity, *_KEYS, _SIZE, _COUNTS
    )
    if not ok:
        return None
    values = values[:n]
    for row, column in zip(*np.nonzero(undecided[:n] >= 0), strict=True):
        start = int(undecided[row, column])
        try:
            values[row, column] = exact_float(bytes(data[start : _number_end(buf, start)]))
        except ValueError:  # not a number after all
            return None
    fields = fields[:n]
    size = np.where((fields & SEGMENTATION)[:, None] > 0, ints[:n, 2:4], -1)
    return Results(
        image_id=ints[:n, 0],
        category_id=ints[:n, 1],
        score=values[:, 0],
        bbox=values[:, 1:],
        fields=fields,
        mask_size=size,
        mask_text=buf,
        mask_begin=mask_begin[:n],
        mask_end=mask_end[:n],
        mask_escaped=True,
        polygons={},
    )


def results_from_objects(dets: list, path) -> Results:
    """The same arrays from parsed JSON (the fallback path)."""
    n = len(dets)
    image_id = np.zeros(n, np.int64)
    category_id = np.zeros(n, np.int64)
    score = np.full(n, np.nan)
    bbox = np.full((n, 4), np.nan)
    fields = np.zeros(n, np.int64)
    size = np.full((n, 2), -1, np.int64)
    strings, polygons = [], {}
    for i, det in enumerate(dets):
        if not isinstance(det, dict):
            raise ValueError(f"{path}: detection {i} is not a JSON object")
        try:
            for bit, key, target in (
                (IMAGE_ID, "image_id", image_id),
                (CATEGORY_ID, "category_id", category_id),
            ):
                if key in det:
                    target[i] = det[key]
                    fields[i] |= bit
            if "score" in det:
                score[i] = det["score"]
                fields[i] |= SCORE
            if "bbox" in det:
                bbox[i] = det["bbox"]
                fields[i] |= BBOX
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{path}: detection {i} has a malformed field ({err})") from None
        segmentation = det.get("segmentation")
        if "segmentation" in det:
            fields[i] |= SEGMENTATION
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str | bytes):
            counts = segmentation["counts"]
            strings.append(counts.encode() if isinstance(counts, str) else counts)
            size[i] = segmentation.get("size", (-1, -1))
        else:
            strings.append(b"")
            if segmentation is not None:
                polygons[i] = segmentation
    lengths = np.fromiter(map(len, strings), np.int64, n)
    return Results(
        image_id=image_id, category_id=category_id, score=score, bbox=bbox, fields=fields, mask_size=size,
        mask_text=np.frombuffer(b"".join(strings), np.uint8),
        mask_begin=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        mask_end=np.cumsum(lengths).astype(np.int64),
        mask_escaped=False,
        polygons=polygons,
    )  # fmt: skip
