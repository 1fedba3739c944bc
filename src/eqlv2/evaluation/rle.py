"""Mask IoU on COCO run-length encodings, compiled, with pycocotools' exact numbers.

pycocotools' ``mask.iou`` is C, but it is called from Python once per (image, category) pair and decodes
every RLE string again on each call; on LVIS-scale results that Python loop costs more than the IoUs.
Here every mask is decoded once into one array of run lengths, and all pairs' IoUs are computed in one
numba kernel.

The numbers are pycocotools' own: the string format is pycocotools' (``rleFrString``: 5-bit groups with a
continuation bit, counts after the second stored as differences from the count two places back), and the
IoU of two masks is ``intersection / union`` of their pixel counts (0 when they share no pixel), both exact
integers, divided in float64 as pycocotools does.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _decode(text, text_begin, text_end, escaped, counts_start, counts):  # pragma: no cover
    """Decode the RLE strings ``text[text_begin[i]:text_end[i]]`` into ``counts`` (int64 runs).

    ``escaped``: the strings are as JSON wrote them, each backslash (a valid RLE byte) written twice.
    """
    for r in range(len(text_begin)):
        p, end = text_begin[r], text_end[r]
        m = counts_start[r]
        first = m
        while p < end:
            x = 0
            k = 0
            more = True
            while more:
                if escaped and text[p] == 92:
                    p += 1
                c = text[p] - 48
                x |= (c & 0x1F) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if not more and (c & 0x10) != 0:
                    x |= -1 << (5 * k)
            if m - first > 2:
                x += counts[m - 2]
            counts[m] = x
            m += 1


@numba.njit(cache=True, nogil=True)
def _count_runs(text, text_begin, text_end, escaped, out):  # pragma: no cover
    """Number of runs in each string: one per byte without the continuation bit."""
    for r in range(len(text_begin)):
        n = 0
        p = text_begin[r]
        while p < text_end[r]:
            if escaped and text[p] == 92:
                p += 1
            if ((text[p] - 48) & 0x20) == 0:
                n += 1
            p += 1
        out[r] = n


def decode(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of compressed RLE strings: ``counts[start[i]:start[i + 1]]`` is mask ``i``'s."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    text_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return decode_text(np.frombuffer(b"".join(strings), np.uint8), text_start[:-1], text_start[1:], False)


def decode_text(
    text: np.ndarray, begin: np.ndarray, end: np.ndarray, escaped: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``decode`` of the strings ``text[begin[i]:end[i]]`` of a byte buffer (uint8), JSON-escaped or not."""
    runs = np.empty(len(begin), np.int64)
    _count_runs(text, begin, end, escaped, runs)
    counts_start = np.concatenate([[0], np.cumsum(runs)]).astype(np.int64)
    counts = np.empty(int(counts_start[-1]), np.int64)
    _decode(text, begin, end, escaped, counts_start, counts)
    return counts, counts_start


@numba.njit(cache=True, nogil=True)
def _extent(counts, start, end):  # pragma: no cover
    """First and last foreground pixel (column-major index) and the area of one mask; (-1, -1, 0) if empty."""
    pos = 0
    first, last, area = -1, -1, 0
    for j in range(start, end):
        if (j - start) % 2 == 1 and counts[j] > 0:
            if first < 0:
                first = pos
            last = pos + counts[j] - 1
            area += counts[j]
        pos += counts[j]
    return first, last, area


@numba.njit(cache=True, nogil=True)
def areas(counts, start):  # pragma: no cover
    """Foreground pixels of each decoded mask (the odd runs), as pycocotools' ``area``."""
    out = np.zeros(len(start) - 1, np.int64)
    for r in range(len(start) - 1):
        for j in range(start[r] + 1, start[r + 1], 2):
            out[r] += counts[j]
    return out


@numba.njit(cache=True, nogil=True)
def _intersection(counts_a, a0, a1, counts_b, b0, b1):  # pragma: no cover
    """Pixels two masks share, walking both run lists once."""
    shared = 0
    i, j = a0, b0
    ra, rb = counts_a[i], counts_b[j]  # what is left of the current runs
    fa, fb = False, False  # whether the current runs are foreground
    while i < a1 and j < b1:
        step = min(ra, rb)
        if fa and fb:
            shared += step
        ra -= step
        rb -= step
        while ra == 0 and i < a1:
            i += 1
            fa = not fa
            if i < a1:
                ra = counts_a[i]
        while rb == 0 and j < b1:
            j += 1
            fb = not fb
            if j < b1:
                rb = counts_b[j]
    return shared


@numba.njit(cache=True, nogil=True)
def _decode_some(text, text_begin, text_end, escaped, which, runs_out):  # pragma: no cover
    """Decode strings ``which`` into one run store: (counts, start)."""
    n = len(which)
    sizes = np.empty(n, np.int64)
    _count_runs(text, text_begin[which], text_end[which], escaped, sizes)
    start = np.empty(n + 1, np.int64)
    start[0] = 0
    for r in range(n):
        start[r + 1] = start[r] + sizes[r]
    if len(runs_out) < start[n]:
        runs_out = np.empty(2 * start[n], np.int64)
    _decode(text, text_begin[which], text_end[which], escaped, start, runs_out)
    return runs_out, start


@numba.njit(cache=True, nogil=True, parallel=True)
def pair_ious(
    dt_text,
    dt_begin,
    dt_end_text,
    dt_escaped,
    dt_order,
    gt_text,
    gt_begin,
    gt_end_text,
    dt_start,
    dt_end,
    gt_start,
    gt_end,
    iou_start,
    ious,
):  # pragma: no cover
    """Mask IoU of every (detection, annotation) of every pair, in the layout of the box kernel.

    Pair ``p`` holds detections ``dt_order[dt_start[p]:dt_end[p]]`` (detection d's string is
    ``dt_text[dt_begin[d]:dt_end_text[d]]``) and annotations ``gt_start[p]:gt_end[p]`` (likewise in
    ``gt_text``); each mask is decoded once, when its pair comes.
    """
    for p in numba.prange(len(dt_start)):  # pairs are independent: both cores
        dt_runs = np.empty(0, np.int64)
        gt_runs = np.empty(0, np.int64)
        nd = dt_end[p] - dt_start[p]
        ng = gt_end[p] - gt_start[p]
        if nd == 0 or ng == 0:
            continue
        dt_runs, ds = _decode_some(
            dt_text, dt_begin, dt_end_text, dt_escaped, dt_order[dt_start[p] : dt_end[p]], dt_runs
        )
        gt_runs, gs = _decode_some(
            gt_text, gt_begin, gt_end_text, False, np.arange(gt_start[p], gt_end[p]), gt_runs
        )
        dt_first = np.empty(nd, np.int64)
        dt_last = np.empty(nd, np.int64)
        dt_area = np.empty(nd, np.int64)
        for i in range(nd):
            dt_first[i], dt_last[i], dt_area[i] = _extent(dt_runs, ds[i], ds[i + 1])
        for j in range(ng):
            g_first, g_last, g_area = _extent(gt_runs, gs[j], gs[j + 1])
            for i in range(nd):
                out = iou_start[p] + i * ng + j
                ious[out] = 0.0
                if dt_area[i] == 0 or g_area == 0 or dt_last[i] < g_first or g_last < dt_first[i]:
                    continue
                shared = _intersection(dt_runs, ds[i], ds[i + 1], gt_runs, gs[j], gs[j + 1])
                if shared:
                    ious[out] = shared / (dt_area[i] + g_area - shared)
