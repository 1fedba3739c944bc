"""The report's plots from hand-made result files: what each one computes, and that each PNG is drawn."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from eqlv2.cli import main
from eqlv2.report.plots import gaussian_smooth, gradient_ratio, read_losses


def _drawn(path) -> bool:
    """A PNG with something on it (more than one colour)."""
    image = matplotlib.image.imread(path)
    return image.ndim == 3 and image.shape[0] > 100 and float(image[..., :3].std()) > 0.01


@pytest.mark.parametrize("n", [1, 2, 7, 41, 300])
def test_the_smoothing_is_scipys_gaussian_filter_with_sigma_5(n):
    values = np.random.default_rng(n).random(n)
    np.testing.assert_allclose(gaussian_smooth(values), gaussian_filter1d(values, 5), atol=1e-12)


def _gradients(path, pos, neg):
    torch.save({"num_classes": len(pos), "pos_grad": torch.tensor(pos, dtype=torch.float64),
                "neg_grad": torch.tensor(neg, dtype=torch.float64)}, path)  # fmt: skip
    return path


def _train_ann(path, instance_counts):
    categories = [{"id": i + 1, "instance_count": c, "image_count": c} for i, c in enumerate(instance_counts)]
    path.write_text(json.dumps({"categories": categories}))
    return path


def test_gradient_ratio_sorts_the_classes_most_frequent_first(tmp_path):
    grads = _gradients(tmp_path / "g.pt", [1.0, 4.0, 3.0], [4.0, 4.0, 0.0])
    ratio = gradient_ratio(grads, np.array([5.0, 500.0, 50.0]))
    assert ratio[0] == 1.0 and ratio[1] != ratio[1] and ratio[2] == 0.25  # 500, 50 (no negative: NaN), 5
    with pytest.raises(ValueError, match="3 classes, but the training file has 2"):
        gradient_ratio(grads, np.array([1.0, 2.0]))


def test_the_gradients_of_several_seeds_are_summed_before_the_ratio(tmp_path):
    seed0 = _gradients(tmp_path / "g0.pt", [1.0, 4.0], [4.0, 1.0])
    seed1 = _gradients(tmp_path / "g1.pt", [3.0, 0.0], [0.0, 1.0])
    ratio = gradient_ratio([seed0, seed1], np.array([5.0, 50.0]))
    assert ratio.tolist() == [2.0, 1.0]  # (4 + 0) / (1 + 1) for the frequent class, (1 + 3) / (4 + 0)


def test_losses_of_a_resumed_run_are_joined_by_iteration(tmp_path):
    for stamp, rows in (("20260101_000000", [(1, 3.0), (2, 2.5)]), ("20260101_010000", [(2, 2.4), (3, 2.0)])):
        folder = tmp_path / stamp / "vis_data"
        folder.mkdir(parents=True)
        lines = [json.dumps({"iter": i, "loss": v, "lr": 0.02}) for i, v in rows]
        (folder / "scalars.json").write_text(
            "\n".join([*lines, json.dumps({"coco/bbox_mAP": 0.1, "step": 3})])
        )
    losses = read_losses(tmp_path)
    assert losses["iter"].tolist() == [1, 2, 3] and losses["loss"].tolist() == [3.0, 2.4, 2.0]
    with pytest.raises(ValueError, match="no logged training loss"):
        read_losses(tmp_path / "nothing")


def test_every_kind_of_plot_is_drawn(tmp_path):
    out = tmp_path / "plots"
    # per-class AP against training images
    per_class = tmp_path / "per_class_ap.csv"
    per_class.write_text(
        "category_id,name,frequency,train_image_count,train_instance_count,baseline AP,baseline AP (box),"
        "eqlv2 AP,eqlv2 AP (box)\n1,a,r,3,4,10.0,12.0,20.0,21.0\n2,b,c,40,41,,,30.0,31.0\n"
        "3,c,f,400,900,50.0,52.0,49.0,50.0\n"
    )
    assert main(["plot", "ap-vs-frequency", "--per-class", str(per_class), "--methods", "baseline", "eqlv2",
                 "--out", str(out / "ap.png")]) == 0  # fmt: skip
    # APr/APc/APf with and without bootstrap intervals
    metrics = {}
    for key, ci in (("baseline", True), ("eqlv2", False)):
        segm = {"APr": 0.1, "APc": 0.2, "APf": 0.3}
        if ci:
            segm.update({f"{g}_ci95": [v - 0.05, v + 0.05] for g, v in list(segm.items())})
        metrics[key] = tmp_path / f"{key}.json"
        metrics[key].write_text(json.dumps({"segm": segm, "bbox": {}}))
    assert main(["plot", "group-ap", "--inputs", *(f"{k}={v}" for k, v in metrics.items()),
                 "--out", str(out / "groups.png")]) == 0  # fmt: skip
    # ... and of two seeds a method, the spread over them as error bars
    seed1 = tmp_path / "eqlv2_seed1.json"
    seed1.write_text(json.dumps({"segm": {"APr": 0.15, "APc": 0.25, "APf": 0.3}, "bbox": {}}))
    assert main(["plot", "group-ap", "--inputs", f"eqlv2={metrics['eqlv2']}", f"eqlv2={seed1}",
                 "--out", str(out / "seeds.png")]) == 0  # fmt: skip
    # gradient ratios of 30 classes
    train_ann = _train_ann(tmp_path / "train.json", list(range(1, 31)))
    rng = np.random.default_rng(0)
    grads = [f"{k}={_gradients(tmp_path / f'{k}.pt', rng.random(30).tolist(), rng.random(30).tolist())}"
             for k in ("baseline", "eql", "eqlv2")]  # fmt: skip
    assert main(["plot", "gradient-ratio", "--inputs", *grads, "--train-ann", str(train_ann),
                 "--out", str(out / "ratio.png")]) == 0  # fmt: skip
    # loss curves, of two seeds
    for seed in (0, 1):
        work = tmp_path / f"work{seed}" / "20260101_000000" / "vis_data"
        work.mkdir(parents=True)
        (work / "scalars.json").write_text(
            "\n".join(json.dumps({"iter": i, "loss": (3 + seed) / i}) for i in range(1, 20))
        )
    assert main(["plot", "loss-curves", "--inputs", f"baseline={tmp_path / 'work0'}",
                 f"baseline={tmp_path / 'work1'}", "--out", str(out / "loss.png")]) == 0  # fmt: skip
    # OpenImages AP1..AP5, a group without a scored class left out
    grouped = tmp_path / "grouped.json"
    grouped.write_text(json.dumps({"mAP": 0.3, "AP1": None, "AP2": 0.1, "AP3": 0.2, "AP4": 0.3, "AP5": 0.4}))
    assert main(["plot", "openimages-groups", "--inputs", f"r50_eqlv2={grouped}",
                 "--out", str(out / "oi.png")]) == 0  # fmt: skip
    for name in ("ap", "groups", "seeds", "ratio", "loss", "oi"):
        assert _drawn(out / f"{name}.png"), name
    assert not list(out.glob(".*"))  # no half-written file left


def test_a_missing_input_is_one_line_and_no_picture(tmp_path, capsys):
    per_class = tmp_path / "per_class_ap.csv"
    per_class.write_text("category_id,name,frequency,train_image_count,train_instance_count,baseline AP\n")
    code = main(["plot", "ap-vs-frequency", "--per-class", str(per_class), "--methods", "eqlv2",
                 "--out", str(tmp_path / "ap.png")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no column 'eqlv2 AP'" in err[0] and str(per_class) in err[0]
    assert not (tmp_path / "ap.png").exists()
