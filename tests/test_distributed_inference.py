"""Inference under torchrun (the `predict` rule with N > 1 processes) writes what one process writes.

mmengine's ``DefaultSampler`` pads the split to a multiple of the world size by repeating its first
images, and hands rank r the images r, r + W, r + 2W, ...; the evaluator gathers the ranks' results in that
interleaved order and cuts them back to the split's size.  So an image is neither scored twice (which would
double its detections in the LVIS protocol) nor missing.  This is checked on a split of 7 images with 2
processes: rank 1's last image is rank 0's first one again.
"""

from __future__ import annotations

import json
from pathlib import Path

from .launch_helpers import run_eqlv2, save_initial_weights

CONFIG = "toy/mask-rcnn_r18_fpn_ce_toy.py"
NUM_IMAGES = 7  # not a multiple of 2: the sampler pads


def _split_of(small_toy: Path, root: Path, num_images: int) -> Path:
    """A data root whose validation split is the first ``num_images`` images of the small toy's."""
    root.mkdir()
    for entry in small_toy.iterdir():
        if entry.name != "annotations":
            (root / entry.name).symlink_to(entry)
    (root / "annotations").mkdir()
    (root / "annotations/lvis_v1_train.json").symlink_to(small_toy / "annotations/lvis_v1_train.json")
    val = json.loads((small_toy / "annotations/lvis_v1_val.json").read_text())
    keep = {image["id"] for image in val["images"][:num_images]}
    val["images"] = [image for image in val["images"] if image["id"] in keep]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] in keep]
    (root / "annotations/lvis_v1_val.json").write_text(json.dumps(val))
    return root


def test_two_processes_write_the_result_files_of_one_on_a_split_they_do_not_divide(small_toy, tmp_path):
    root = _split_of(small_toy, tmp_path / "data", NUM_IMAGES)
    val = json.loads((root / "annotations/lvis_v1_val.json").read_text())
    image_ids = [image["id"] for image in val["images"]]
    checkpoint = save_initial_weights(CONFIG, small_toy, tmp_path / "model.pth")
    results = {}
    for nproc in (1, 2):
        prefix = tmp_path / f"{nproc}proc" / "predictions"
        # One image per batch and one thread per process (launch_helpers): each image's forward pass is
        # then the same computation in both runs, so the files can be compared exactly.
        run_eqlv2(
            nproc, "test", CONFIG, "--checkpoint", str(checkpoint), "--data-root", str(root),
            "--out-prefix", str(prefix), "--cfg-options", "test_dataloader.batch_size=1",
        )  # fmt: skip
        results[nproc] = {k: json.loads(Path(f"{prefix}.{k}.json").read_text()) for k in ("bbox", "segm")}

    for kind in ("bbox", "segm"):
        one, two = results[1][kind], results[2][kind]
        # The untrained model detects something in every image, so a missing image would show.
        assert {d["image_id"] for d in one} == set(image_ids), kind
        # No image twice: the padded repeat of the first image is dropped, its detections counted once.
        first = image_ids[0]
        assert sum(d["image_id"] == first for d in two) == sum(d["image_id"] == first for d in one) > 0
        assert len(two) == len(one)
        assert two == one, kind  # same detections, same order, same numbers
