"""The result-file scanner reads what a JSON library reads, and leaves to it what it does not know."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqlv2.evaluation.result_file import results_from_objects, scan_results
from tests.lvis_cases import CaseSize, make_case


def _masks(results) -> list[bytes]:
    """Each detection's RLE string, JSON escapes undone (the scanner keeps them in the file's buffer)."""
    strings = [
        results.mask_text[a:b].tobytes() for a, b in zip(results.mask_begin, results.mask_end, strict=True)
    ]
    return [s.replace(b"\\\\", b"\\") for s in strings] if results.mask_escaped else strings


def _assert_same(scanned, parsed) -> None:
    for field in ("image_id", "category_id", "fields", "mask_size"):
        np.testing.assert_array_equal(getattr(scanned, field), getattr(parsed, field), err_msg=field)
    for field in ("score", "bbox"):  # bit for bit, NaN where absent
        np.testing.assert_array_equal(getattr(scanned, field), getattr(parsed, field), err_msg=field)
    assert scanned.mask_escaped and not parsed.mask_escaped
    assert _masks(scanned) == _masks(parsed)


@pytest.mark.parametrize("indent", [None, 2])
def test_scanner_reads_what_json_reads(indent):
    _, results = make_case(0, CaseSize(images=20, categories=30))
    for k, det in enumerate(results[:50]):  # other layouts mmdet or people write
        det["extra"] = {"nested": [1, 2.5, "x\\"], "flag": k % 2 == 0, "none": None}
        if k % 3 == 0:
            det.pop("bbox")
        if k % 5 == 0:
            det["segmentation"] = dict(reversed(det["segmentation"].items()))
    data = json.dumps(results, indent=indent).encode()
    assert b"\\\\" in data  # RLE strings hold backslashes, which JSON escapes
    scanned = scan_results(data)
    assert scanned is not None
    _assert_same(scanned, results_from_objects(json.loads(data), "results.json"))


@pytest.mark.parametrize(
    "text",
    [
        '[{"image_id": 1, "category_id": 2, "score": NaN, "bbox": [0, 0, 1, 1]}]',  # Python's json writes NaN
        '[{"image_id": 1.0, "category_id": 2, "score": 0.5, "bbox": [0, 0, 1, 1]}]',  # a float id
        '[{"image_id": 1, "category_id": 2, "score": 0.5, "segmentation": [[0, 0, 1, 0, 1, 1]]}]',  # polygon
        '[{"image_id": 1, "category_id": 2, "score": 0.5, "segmentation": {"size": [2, 2], "counts": [4]}}]',
        '[{"image\\u005fid": 1, "category_id": 2, "score": 0.5}]',  # an escaped key
        '[{"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [0, 0, 1]}]',  # three numbers
        '[{"image_id": 1, "category_id": 2, "score": 0.5}',  # truncated
        '{"image_id": 1}',  # not a list
    ],
)
def test_scanner_leaves_other_layouts_to_the_json_library(text):
    assert scan_results(text.encode()) is None


def test_numbers_the_compiled_parser_cannot_prove_are_rounded_as_python_rounds_them():
    """Long mantissas, extreme exponents and an exact halfway case go through numpy, bit for bit json's."""
    scores = ["0.30000000000000004441", "5e-324", "1.7976931348623157e308", "9007199254740993",
              "2.2250738585072011e-308"]  # fmt: skip
    text = ", ".join(
        f'{{"image_id": {k}, "category_id": 1, "score": {s}, "bbox": [{s}, 0, 1, 1]}}'
        for k, s in enumerate(scores)
    )
    data = f"[{text}]".encode()
    scanned = scan_results(data)
    assert scanned is not None
    expected = [float(s) for s in scores]
    assert scanned.score.tolist() == expected and scanned.bbox[:, 0].tolist() == expected


@pytest.mark.parametrize("score", ["0.5.5", "0.1000000000000000055511151231257827"])  # not a number; too long
def test_a_number_the_scanner_does_not_take_sends_the_file_to_the_json_library(score):
    text = f'[{{"image_id": 1, "category_id": 2, "score": {score}, "bbox": [0, 0, 1, 1]}}]'
    assert scan_results(text.encode()) is None
