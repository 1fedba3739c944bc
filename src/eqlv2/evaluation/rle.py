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
def _decode(text, text_begin, text_end, escaped, which, counts, start):  # pragma: no cover
    """Decode the RLE strings ``text[text_begin[r]:text_end[r]]`` of ``r`` in ``which``, one after the
    other, into ``counts`` (int64 runs): string ``which[i]``'s runs are ``counts[start[i]:start[i + 1]]``.

    ``counts`` must hold the strings' total length: a run takes at least one byte, so no counting pass
    over the text is needed first.  ``escaped``: the strings are as JSON wrote them, each backslash (a
    valid RLE byte) written twice.
    """
    m = 0
    start[0] = 0
    for i in range(len(which)):
        r = which[i]
        p, end = text_begin[r], text_end[r]
        first = m
        while p < end:
            x = 0
            shift = 0
            while True:
                c = np.int64(text[p])
                if c == 92 and escaped:
                    p += 1
                c -= 48
                x |= (c & 0x1F) << shift
                p += 1
                shift += 5
                if (c & 0x20) == 0:
                    if (c & 0x10) != 0:
                        x |= -1 << shift
                    break
            if m - first > 2:
                x += counts[m - 2]
            counts[m] = x
            m += 1
        start[i + 1] = m


@numba.njit(cache=True, nogil=True)
def _text_length(text_begin, text_end, which):  # pragma: no cover
    total = 0
    for r in which:
        total += text_end[r] - text_begin[r]
    return total


def decode_text(
    text: np.ndarray, begin: np.ndarray, end: np.ndarray, escaped: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of the compressed RLE strings ``text[begin[i]:end[i]]`` of a byte buffer (uint8),
    JSON-escaped or not: ``counts[start[i]:start[i + 1]]`` is mask ``i``'s."""
    which = np.arange(len(begin), dtype=np.int64)
    counts = np.empty(int(np.sum(end - begin)), np.int64)
    start = np.empty(len(begin) + 1, np.int64)
    _decode(text, begin, end, escaped, which, counts, start)
    return counts[: start[-1]], start


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
def _intersection(counts_a, a0, a1, counts_b, b0, b1, stop):  # pragma: no cover
    """Pixels two masks share, walking both run lists once, up to pixel ``stop`` (the last one both
    masks could share)."""
    shared = 0
    pos = 0  # pixel at which the current runs start
    i, j = a0, b0
    ra, rb = counts_a[i], counts_b[j]  # what is left of the current runs
    fa, fb = False, False  # whether the current runs are foreground
    while i < a1 and j < b1 and pos <= stop:
        step = min(ra, rb)
        if fa and fb:
            shared += step
        pos += step
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
def _decode_some(text, text_begin, text_end, escaped, which):  # pragma: no cover
    """Decode strings ``which`` into one run store: (counts, start)."""
    counts = np.empty(_text_length(text_begin, text_end, which), np.int64)
    start = np.empty(len(which) + 1, np.int64)
    _decode(text, text_begin, text_end, escaped, which, counts, start)
    return counts, start


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
        nd = dt_end[p] - dt_start[p]
        ng = gt_end[p] - gt_start[p]
        if nd == 0 or ng == 0:
            continue
        dt_runs, ds = _decode_some(
            dt_text, dt_begin, dt_end_text, dt_escaped, dt_order[dt_start[p] : dt_end[p]]
        )
        gt_runs, gs = _decode_some(gt_text, gt_begin, gt_end_text, False, np.arange(gt_start[p], gt_end[p]))
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
                stop = min(dt_last[i], g_last)
                shared = _intersection(dt_runs, ds[i], ds[i + 1], gt_runs, gs[j], gs[j + 1], stop)
                if shared:
                    ious[out] = shared / (dt_area[i] + g_area - shared)
