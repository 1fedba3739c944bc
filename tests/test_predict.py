"""Inference writes one COCO-style result file per result type its config's test evaluator names."""

from __future__ import annotations

import pytest

from eqlv2.tools.test import result_types


def test_mask_configs_give_boxes_and_masks_box_configs_boxes_only():
    assert result_types({"type": "LVISMetric", "metric": ["bbox", "segm"]}) == ["bbox", "segm"]
    assert result_types({"type": "CocoMetric", "metric": "bbox"}) == ["bbox"]
    assert result_types({"type": "CocoMetric", "metric": ["proposal", "bbox"]}) == ["bbox"]


def test_an_evaluator_without_a_result_type_is_an_error_naming_it():
    with pytest.raises(ValueError, match="test_evaluator.metric 'proposal' names none of bbox, segm"):
        result_types({"type": "CocoMetric", "metric": "proposal"})
