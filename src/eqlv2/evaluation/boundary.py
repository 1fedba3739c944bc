"""Boundary IoU (Cheng et al. 2021, "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation"; bowenc0221/boundary-iou-api), on COCO run-length encodings, compiled.

The LVIS Challenge 2021 scored masks by IoU = min(mask IoU, boundary IoU).  A mask's boundary is the mask
minus its erosion, as the API's ``mask_to_boundary`` computes it: the mask padded by one pixel of
background (``cv2.copyMakeBorder``), eroded ``d`` times by a 3x3 square (``cv2.erode``, whose own border
never erodes), the padding cut off again.  ``d`` erosions by a 3x3 square are one erosion by a
(2d + 1) x (2d + 1) square, and the background pad stays background, so a pixel survives when every pixel
within ``d`` rows and ``d`` columns of it is inside the image and in the mask: the image border counts
as boundary.  ``d = max(1, round(0.02 * sqrt(h^2 + w^2)))`` (Python's rounding, half to even).

A mask's pixels lie inside its bounding box, and so does its boundary, so each mask is decoded only over
its box (padding outside it is background either way), eroded by two passes of window sums (rows, then
columns), and its boundary encoded back as runs over the whole image, column-major like the masks.
"""

from __future__ import annotations

import numba
import numpy as np

from eqlv2.evaluation import rle

DILATION_RATIO = 0.02


def dilation(height: int, width: int, ratio: float = DILATION_RATIO) -> int:
    """``mask_to_boundary``'s erosion count for an image: ``max(1, int(round(ratio * diagonal)))``."""
    return max(1, int(round(ratio * float(np.sqrt(height**2 + width**2)))))


@numba.njit(cache=True, nogil=True)
def _boundary_runs(counts, begin, end, height, width, d):  # pragma: no cover
    """The boundary of one mask (runs ``counts[begin:end]``, column-major, background first) as runs."""
    x0, x1, y0, y1 = width, -1, height, -1
    pos = 0
    for j in range(begin, end):
        run = counts[j]
        if (j - begin) % 2 == 1 and run > 0:
            first, last = pos, pos + run - 1
            x0, x1 = min(x0, first // height), max(x1, last // height)
            if first // height != last // height:
                y0, y1 = 0, height - 1
            else:
                y0, y1 = min(y0, first % height), max(y1, last % height)
        pos += run
    if x1 < 0:
        return np.array([height * width], np.int64)
    cw, ch = x1 - x0 + 1, y1 - y0 + 1
    mask = np.zeros((cw, ch), np.bool_)
    pos = 0
    for j in range(begin, end):
        run = counts[j]
        if (j - begin) % 2 == 1:
            for p in range(pos, pos + run):
                mask[p // height - x0, p % height - y0] = True
        pos += run
    # Erosion: a pixel stays when its (2d + 1)-window holds no background; outside the box is background.
    vertical = np.zeros((cw, ch), np.bool_)
    zeros = np.zeros(max(cw, ch) + 1, np.int64)
    for x in range(cw):
        for y in range(ch):
            zeros[y + 1] = zeros[y] + (0 if mask[x, y] else 1)
        for y in range(d, ch - d):
            vertical[x, y] = zeros[y + d + 1] - zeros[y - d] == 0
    eroded = np.zeros((cw, ch), np.bool_)
    for y in range(ch):
        for x in range(cw):
            zeros[x + 1] = zeros[x] + (0 if vertical[x, y] else 1)
        for x in range(d, cw - d):
            eroded[x, y] = zeros[x + d + 1] - zeros[x - d] == 0
    runs = np.empty(2 * cw * ch + 2, np.int64)
    n = 0
    current = False  # runs start with background
    length = x0 * height + y0
    for x in range(cw):
        for y in range(ch):
            inside = mask[x, y] and not eroded[x, y]
            if inside != current:
                runs[n] = length
                n += 1
                current = inside
                length = 0
            length += 1
        if x < cw - 1:  # the rows outside the box, to the next column's first row of the box
            if current:
                runs[n] = length
                n += 1
                current = False
                length = 0
            length += height - ch
    runs[n] = length
    n += 1
    covered = 0
    for j in range(n):
        covered += runs[j]
    if current:  # close a foreground run with the background after it
        runs[n] = height * width - covered
        n += 1
    else:
        runs[n - 1] += height * width - covered
    return runs[:n].copy()


@numba.njit(cache=True, nogil=True)
def boundaries(counts, start, heights, widths, dilations):  # pragma: no cover
    """Boundary runs of every decoded mask: (counts, start) in the layout of ``rle.decode_text``."""
    parts = [_boundary_runs(counts, start[i], start[i + 1], heights[i], widths[i], dilations[i])
             for i in range(len(start) - 1)]  # fmt: skip
    out_start = np.zeros(len(parts) + 1, np.int64)
    for i in range(len(parts)):
        out_start[i + 1] = out_start[i] + len(parts[i])
    out = np.empty(out_start[-1], np.int64)
    for i in range(len(parts)):
        out[out_start[i] : out_start[i + 1]] = parts[i]
    return out, out_start


@numba.njit(cache=True, nogil=True, parallel=True)
def min_with_boundary_ious(
    dt_runs, dt_runs_start, gt_runs, gt_runs_start, dt_start, dt_end, gt_start, gt_end, iou_start, ious
):  # pragma: no cover
    """``ious[k] = min(ious[k], boundary IoU)`` for every (detection, annotation) of every pair.

    Detection ``dt_start[p] + i`` (pair order) has boundary runs ``dt_runs[dt_runs_start[..]:..]`` (and so
    annotation ``gt_start[p] + j``); the buffer layout is the box kernel's.  The boundary IoU is
    intersection over union of pixel counts, 0 when they share none (pycocotools' ``rleIou``).
    """
    for p in numba.prange(len(dt_start)):  # pairs are independent: both cores
        ng = gt_end[p] - gt_start[p]
        for i in range(dt_end[p] - dt_start[p]):
            d = dt_start[p] + i
            d_first, d_last, d_area = rle._extent(dt_runs, dt_runs_start[d], dt_runs_start[d + 1])
            for j in range(ng):
                g = gt_start[p] + j
                out = iou_start[p] + i * ng + j
                if ious[out] == 0.0:
                    continue
                g_first, g_last, g_area = rle._extent(gt_runs, gt_runs_start[g], gt_runs_start[g + 1])
                shared = 0
                if d_area and g_area and d_last >= g_first and g_last >= d_first:
                    shared = rle._intersection(
                        dt_runs, dt_runs_start[d], dt_runs_start[d + 1],
                        gt_runs, gt_runs_start[g], gt_runs_start[g + 1], min(d_last, g_last),
                    )  # fmt: skip
                ious[out] = min(ious[out], shared / (d_area + g_area - shared) if shared else 0.0)


def mask_boundaries(
    text: np.ndarray, begin: np.ndarray, end: np.ndarray, escaped: bool, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Boundary runs of the compressed RLE strings ``text[begin[i]:end[i]]`` of images ``sizes[i]``
    (height, width): ``(counts, start)`` as :func:`eqlv2.evaluation.rle.decode_text` gives masks."""
    counts, start = rle.decode_text(text, begin, end, escaped)
    heights, widths = (np.ascontiguousarray(sizes[:, k], np.int64) for k in (0, 1))
    table = {(h, w): dilation(h, w) for h, w in set(zip(heights.tolist(), widths.tolist(), strict=True))}
    dilations = np.array(
        [table[h, w] for h, w in zip(heights.tolist(), widths.tolist(), strict=True)], np.int64
    )
    return boundaries(counts, start, heights, widths, dilations)
