"""Specification of the classification losses: EQLv2, EQL and GroupSoftmax (BAGS).

The expected values are worked out in the tests from the formulas of the original code (see
``/work/shared/reference/methods-and-tools-of-the-original.md`` sections 1-3) with plain ``math``, never
with the code under test.  C = 3 classes unless a test says otherwise; label 3 is background.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

import eqlv2.models  # noqa: F401  (registers the losses)
from eqlv2.models import EQL, SIGMOID_PRIOR_INIT_CFG, EQLv2, GroupSoftmax, sigmoid_prior_init_cfg
from eqlv2.models.losses.eqlv2 import eqlv2_weights

C = 3
BG = C


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(z: float, y: float) -> float:
    """BCE with logits: -y log s(z) - (1 - y) log(1 - s(z)) = softplus(z) - y z."""
    return math.log1p(math.exp(z)) - y * z


def log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def softmax(row: list[float]) -> list[float]:
    return [math.exp(v) for v in log_softmax(row)]


def write_ann(path, categories, image_ids) -> str:
    """A minimal LVIS-format training file: categories with counts, one annotation per listed image id."""
    annotations = [{"id": k + 1, "image_id": i, "category_id": 1} for k, i in enumerate(image_ids)]
    path.write_text(json.dumps({"categories": categories, "annotations": annotations, "images": []}))
    return str(path)


@pytest.fixture
def ann3(tmp_path) -> str:
    """3 classes, listed out of id order on purpose (labels follow the ids).

    label 0 (id 1): 8 images, 50 instances; label 1 (id 2): 2 images, 3 instances;
    label 2 (id 3): 1 image, 2000 instances.  10 distinct annotated images (12 annotations).
    Image frequencies: 0.8, 0.2, 0.1.  BAGS groups (10, 100, 1000): 1, 0, 3.
    """
    cats = [
        {"id": 3, "name": "c", "image_count": 1, "instance_count": 2000},
        {"id": 1, "name": "a", "image_count": 8, "instance_count": 50},
        {"id": 2, "name": "b", "image_count": 2, "instance_count": 3},
    ]
    return write_ann(tmp_path / "train.json", cats, image_ids=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 9])


# ---------------------------------------------------------------------------------------------------------
# EQLv2
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratio, q, pos_w",
    [  # the table of the reference digest, at its printed precision
        (0.0, 6.8e-5, 5.00),
        (0.5, 0.0266, 4.89),
        (0.7, 0.231, 4.07),
        (0.8, 0.5, 3.0),
        (0.9, 0.769, 1.93),
        (1.0, 0.917, 1.33),
        (1.2, 0.992, 1.03),
        (100.0, 1.0, 1.0),
    ],
)
def test_eqlv2_weights_follow_the_mapping_function(ratio, q, pos_w):
    loss = EQLv2(num_classes=C)
    loss.pos_neg.fill_(ratio)
    got_pos, got_neg = loss.get_weights()
    exact_q = 1 / (1 + math.exp(-12 * (ratio - 0.8)))
    # neg_w = q, pos_w = 1 + 4 (1 - q) on every class channel ...
    assert got_neg[:C].tolist() == pytest.approx([exact_q] * C, rel=1e-5, abs=1e-9)
    assert got_pos[:C].tolist() == pytest.approx([1 + 4 * (1 - exact_q)] * C, rel=1e-6)
    assert got_neg[0].item() == pytest.approx(q, rel=0.01)
    assert got_pos[0].item() == pytest.approx(pos_w, abs=0.005)
    # ... and the background channel is a plain BCE.
    assert (got_pos[BG].item(), got_neg[BG].item()) == (1.0, 1.0)


def test_eqlv2_starts_as_plain_bce():
    loss = EQLv2(num_classes=C)
    assert loss.pos_neg.tolist() == [100.0] * C
    z = torch.tensor([[0.3, -1.0, 2.0, 0.1]])
    y = torch.tensor([1])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(
        z, torch.tensor([[0.0, 1, 0, 0]]), reduction="sum"
    )
    assert loss(z, y).item() == pytest.approx(plain.item(), rel=1e-6)


# Hand example: pos_neg = (0, 0.8, 100) -> q = (q0, 0.5, 1), pos_w = (1 + 4 (1 - q0), 3, 1); bg (1, 1).
Q0 = 1 / (1 + math.exp(9.6))
HAND_RATIO = [0.0, 0.8, 100.0]
HAND_Z = [
    [2.0, -1.0, 0.0, -3.0],  # label 0
    [0.0, -2.0, 1.0, -1.0],  # label 2
    [-1.0, 0.5, -2.0, 3.0],  # background
]
HAND_LABELS = [0, 2, BG]
HAND_Y = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
HAND_W = [
    [1 + 4 * (1 - Q0), 0.5, 1.0, 1.0],  # positive on class 0, negatives elsewhere, bg channel 1
    [Q0, 0.5, 1.0, 1.0],  # class 2 positive: pos_w = 1 since q2 = 1
    [Q0, 0.5, 1.0, 1.0],  # background RoI: positive on the bg channel, weight 1
]


def _hand_eqlv2(**kwargs) -> EQLv2:
    loss = EQLv2(num_classes=C, **kwargs)
    loss.pos_neg.copy_(torch.tensor(HAND_RATIO))
    return loss


def test_eqlv2_loss_value_by_hand():
    loss = _hand_eqlv2(loss_weight=2.0)
    expected = (
        2.0 * sum(HAND_W[i][j] * bce(HAND_Z[i][j], HAND_Y[i][j]) for i in range(3) for j in range(C + 1)) / 3
    )  # divided by the number of RoIs, not by N * (C + 1)
    got = loss(torch.tensor(HAND_Z), torch.tensor(HAND_LABELS))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_eqlv2_gradient_is_weighted_p_minus_y_over_n():
    loss = _hand_eqlv2()
    z = torch.tensor(HAND_Z, requires_grad=True)
    loss(z, torch.tensor(HAND_LABELS)).backward()
    expected = [
        [HAND_W[i][j] * (sigmoid(HAND_Z[i][j]) - HAND_Y[i][j]) / 3 for j in range(C + 1)] for i in range(3)
    ]
    torch.testing.assert_close(z.grad, torch.tensor(expected), rtol=1e-5, atol=1e-7)


def test_eqlv2_ignores_label_weights_and_avg_factor_like_the_original():
    a = _hand_eqlv2()(torch.tensor(HAND_Z), torch.tensor(HAND_LABELS))
    b = _hand_eqlv2()(
        torch.tensor(HAND_Z),
        torch.tensor(HAND_LABELS),
        label_weights=torch.tensor([0.0, 0.0, 5.0]),
        avg_factor=7,
    )
    assert a.item() == b.item()


def test_eqlv2_statistics_step_by_step():
    """With z = 0 every p is 1/2, so the accumulated gradients can be followed by hand."""
    loss = EQLv2(num_classes=C)

    # Iteration 1: ratio 100 -> all weights 1.  Labels (0, 0, bg).
    loss(torch.zeros(3, C + 1), torch.tensor([0, 0, BG]))
    # pos: class 0 has two positives, each (1 - 1/2).  neg: class 0 one negative (the bg RoI), classes 1, 2
    # three negatives, each 1/2.  The background channel is not tracked.
    assert loss.pos_grad.tolist() == [1.0, 0.0, 0.0]
    assert loss.neg_grad.tolist() == [0.5, 1.5, 1.5]
    assert loss.pos_neg.tolist() == pytest.approx([2.0, 0.0, 0.0])

    # Iteration 2 uses the ratios of iteration 1: q0 = f(2), q1 = q2 = f(0).  Labels (1, bg).
    q0, q1 = sigmoid(12 * (2.0 - 0.8)), sigmoid(12 * (0.0 - 0.8))
    pos_w1 = 1 + 4 * (1 - q1)
    loss(torch.zeros(2, C + 1), torch.tensor([1, BG]))
    exp_pos = [1.0, 0.5 * pos_w1, 0.0]  # one positive of class 1, weighted by pos_w1
    exp_neg = [0.5 + 2 * 0.5 * q0, 1.5 + 0.5 * q1, 1.5 + 2 * 0.5 * q1]  # negatives weighted by q
    assert loss.pos_grad.tolist() == pytest.approx(exp_pos, rel=1e-6)
    assert loss.neg_grad.tolist() == pytest.approx(exp_neg, rel=1e-6)
    exp_ratio = [p / (n + 1e-10) for p, n in zip(exp_pos, exp_neg, strict=True)]
    assert loss.pos_neg.tolist() == pytest.approx(exp_ratio, rel=1e-6)

    # Iteration 3 weighs with those ratios.
    pos_w, neg_w = loss.get_weights()
    exp_q = [sigmoid(12 * (r - 0.8)) for r in exp_ratio]
    assert neg_w.tolist() == pytest.approx(exp_q + [1.0], rel=1e-5)
    assert pos_w.tolist() == pytest.approx([1 + 4 * (1 - q) for q in exp_q] + [1.0], rel=1e-5)


def reference_eqlv2_run(batches, num_classes, gamma=12.0, mu=0.8, alpha=4.0):
    """The original's algorithm in plain Python floats: returns the losses and final statistics."""
    pos_grad, neg_grad = [0.0] * num_classes, [0.0] * num_classes
    ratio = [100.0] * num_classes
    losses = []
    for z, labels in batches:
        q = [1 / (1 + math.exp(-gamma * (r - mu))) for r in ratio] + [1.0]
        pos_w = [1 + alpha * (1 - qj) for qj in q]
        total = 0.0
        dpos, dneg = [0.0] * num_classes, [0.0] * num_classes
        for row, label in zip(z, labels, strict=True):
            for j, zij in enumerate(row):
                y = 1.0 if label == j else 0.0
                w = pos_w[j] if y else q[j]
                total += w * bce(zij, y)
                if j < num_classes:
                    dpos[j] += y * w * (1 - sigmoid(zij))
                    dneg[j] += (1 - y) * w * sigmoid(zij)
        losses.append(total / len(labels))
        pos_grad = [a + b for a, b in zip(pos_grad, dpos, strict=True)]
        neg_grad = [a + b for a, b in zip(neg_grad, dneg, strict=True)]
        ratio = [p / (n + 1e-10) for p, n in zip(pos_grad, neg_grad, strict=True)]
    return losses, pos_grad, neg_grad, ratio


def test_eqlv2_statistics_are_cumulative_over_iterations():
    gen = torch.Generator().manual_seed(0)
    batches = []
    for n in (6, 4, 7, 5):
        z = (torch.randn(n, C + 1, generator=gen) * 2).tolist()
        labels = torch.randint(0, C + 1, (n,), generator=gen).tolist()
        batches.append((z, labels))
    exp_losses, exp_pos, exp_neg, exp_ratio = reference_eqlv2_run(batches, C)

    loss = EQLv2(num_classes=C)
    for (z, labels), exp in zip(batches, exp_losses, strict=True):
        assert loss(torch.tensor(z), torch.tensor(labels)).item() == pytest.approx(exp, rel=1e-5)
    assert loss.pos_grad.tolist() == pytest.approx(exp_pos, rel=1e-5)
    assert loss.neg_grad.tolist() == pytest.approx(exp_neg, rel=1e-5)
    assert loss.pos_neg.tolist() == pytest.approx(exp_ratio, rel=1e-5)


def test_eqlv2_statistics_are_checkpointed_buffers():
    loss = EQLv2(num_classes=C)
    loss(torch.tensor(HAND_Z), torch.tensor(HAND_LABELS))
    state = loss.state_dict()
    assert set(state) == {"pos_grad", "neg_grad", "pos_neg"}
    assert all(v.shape == (C,) for v in state.values())

    resumed = EQLv2(num_classes=C)
    resumed.load_state_dict(copy.deepcopy(state))
    z2, y2 = torch.tensor(HAND_Z) * 0.5, torch.tensor([1, BG, 2])
    assert resumed(z2, y2).item() == loss(z2, y2).item()
    torch.testing.assert_close(resumed.pos_neg, loss.pos_neg)


def test_eqlv2_activation_multiplies_by_one_minus_background():
    z = torch.tensor(HAND_Z)
    scores = EQLv2(num_classes=C).get_activation(z)
    expected = [[sigmoid(r[c]) * (1 - sigmoid(r[BG])) for c in range(C)] + [sigmoid(r[BG])] for r in HAND_Z]
    torch.testing.assert_close(scores, torch.tensor(expected))

    raw = EQLv2(num_classes=C, test_with_obj=False).get_activation(z)
    torch.testing.assert_close(raw, torch.sigmoid(z))


def test_eqlv2_accuracy():
    z = torch.tensor(
        [
            [2.0, -1.0, 0.0, -3.0],  # label 0: class right, called foreground: right
            [1.0, -2.0, 0.5, 1.0],  # label 2: class wrong (argmax 0), called background: wrong
            [-1.0, 0.5, -2.0, 3.0],  # background: called background: right
        ]
    )
    acc = EQLv2(num_classes=C).get_accuracy(z, torch.tensor(HAND_LABELS))
    assert acc["acc_objectness"].item() == pytest.approx(200 / 3)
    assert acc["acc_classes"].item() == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------------------
# EQL
# ---------------------------------------------------------------------------------------------------------


def test_eql_tail_classes_from_image_frequency(ann3):
    # frequencies 8/10, 2/10, 1/10 (10 distinct annotated images, not 12 annotations)
    assert EQL(C, lambda_=0.25, ann_file=ann3).tail.tolist() == [0.0, 1.0, 1.0]
    assert EQL(C, lambda_=0.15, ann_file=ann3).tail.tolist() == [0.0, 0.0, 1.0]
    assert EQL(C, lambda_=0.1, ann_file=ann3).tail.tolist() == [0.0, 0.0, 0.0]  # strictly below lambda


def test_eql_tail_classes_from_instance_count(ann3):
    # instance counts 50, 3, 2000; lambda in instances (OpenImages: 1652)
    assert EQL(C, lambda_=10, ann_file=ann3, frequency="instance").tail.tolist() == [0.0, 1.0, 0.0]
    assert EQL(C, lambda_=1652, ann_file=ann3, frequency="instance").tail.tolist() == [1.0, 1.0, 0.0]


EQL_Z = [[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [-1.0, 0.5, -0.5]]
EQL_LABELS = [0, 1, BG]
EQL_Y = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]  # background: all-zero target
# tail = (0, 1, 1): a foreground RoI sends no negative gradient to classes 1 and 2; the bg RoI keeps all.
EQL_W = [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_eql_loss_and_gradient_by_hand(ann3):
    loss = EQL(C, lambda_=0.25, ann_file=ann3, loss_weight=0.5)
    z = torch.tensor(EQL_Z, requires_grad=True)
    got = loss(z, torch.tensor(EQL_LABELS))
    expected = 0.5 * sum(EQL_W[i][j] * bce(EQL_Z[i][j], EQL_Y[i][j]) for i in range(3) for j in range(C)) / 3
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got.backward()
    grad = [
        [0.5 * EQL_W[i][j] * (sigmoid(EQL_Z[i][j]) - EQL_Y[i][j]) / 3 for j in range(C)] for i in range(3)
    ]
    torch.testing.assert_close(z.grad, torch.tensor(grad), rtol=1e-5, atol=1e-7)


def test_eql_activation_appends_a_zero_background_column(ann3):
    scores = EQL(C, lambda_=0.25, ann_file=ann3).get_activation(torch.tensor(EQL_Z))
    torch.testing.assert_close(scores, torch.tensor([[sigmoid(v) for v in r] + [0.0] for r in EQL_Z]))


@pytest.mark.parametrize("field", ["image_count", "instance_count"])
def test_eql_missing_count_is_a_clear_error(tmp_path, field):
    cats = [{"id": i, "image_count": 1, "instance_count": 1} for i in (1, 2, 3)]
    del cats[1][field]
    ann = write_ann(tmp_path / "bad.json", cats, [1])
    frequency = "image" if field == "image_count" else "instance"
    with pytest.raises(ValueError, match=rf"bad\.json.*'{field}'"):
        EQL(C, lambda_=0.1, ann_file=ann, frequency=frequency)


def test_eql_category_count_must_match(tmp_path):
    ann = write_ann(tmp_path / "two.json", [{"id": i, "image_count": 1} for i in (1, 2)], [1])
    with pytest.raises(ValueError, match=r"two\.json.*'categories' has 2 entries but num_classes=3"):
        EQL(C, lambda_=0.1, ann_file=ann)
    with pytest.raises(ValueError, match="frequency"):
        EQL(2, lambda_=0.1, ann_file=ann, frequency="box")


# ---------------------------------------------------------------------------------------------------------
# GroupSoftmax (BAGS)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def ann5(tmp_path) -> str:
    """5 classes, instance counts 5, 500, 50, 3, 2000 -> groups g0 = {0, 3}, g1 = {2}, g2 = {1}, g3 = {4}."""
    counts = [5, 500, 50, 3, 2000]
    cats = [{"id": i + 1, "image_count": 1, "instance_count": n} for i, n in enumerate(counts)]
    return write_ann(tmp_path / "train5.json", cats, [1])


# [o0, c0, c3 | o1, c2 | o2, c1 | o3, c4 | o_bg, bg]
G_SLICES = [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11)]
G_CHANNEL = {0: 1, 3: 2, 2: 4, 1: 6, 4: 8, 5: 10}


def test_group_softmax_layout(ann5):
    loss = GroupSoftmax(5, ann_file=ann5)
    assert loss.get_cls_channels(5) == 5 + 1 + 5 == 11
    assert loss.group_of_label.tolist() == [0, 2, 1, 0, 3, 4]
    assert [
        (s, s + n) for s, n in zip(loss.group_start.tolist(), loss.group_size.tolist(), strict=True)
    ] == G_SLICES
    assert loss.label_channel.tolist() == [G_CHANNEL[label] for label in range(6)]
    assert loss.state_dict() == {}  # the tables come from ann_file, they are not checkpointed


def test_group_softmax_lvis_v1_channel_count(tmp_path):
    # LVIS v1 group sizes (reference, computed): 200 / 412 / 334 / 257 classes -> 1209 logits
    counts = [5] * 200 + [50] * 412 + [500] * 334 + [5000] * 257
    cats = [{"id": i + 1, "instance_count": n} for i, n in enumerate(counts)]
    loss = GroupSoftmax(1203, ann_file=write_ann(tmp_path / "lvis.json", cats, [1]))
    assert loss.get_cls_channels(1203) == 1209
    assert loss.group_size.tolist() == [201, 413, 335, 258, 2]


def test_group_softmax_remapped_labels(ann5):
    labels = torch.tensor([0, 3, 2, 5, 4])  # 5 = background
    got = GroupSoftmax(5, ann_file=ann5).group_labels(labels)
    assert got.tolist() == [
        [1, 2, 0, 0, 0],  # g0 = (0, 3): 1-based positions, everything else "others"
        [0, 0, 1, 0, 0],  # g1 = (2,)
        [0, 0, 0, 0, 0],  # g2 = (1,): no RoI of its class
        [0, 0, 0, 0, 1],  # g3 = (4,)
        [0, 0, 0, 1, 0],  # background group: 1 = background RoI, 0 = any foreground RoI
    ]


GS_Z = [
    [1.0, 2.0, -1.0, 0.5, 0.0, 0.3, -0.2, 1.5, 0.1, 2.0, -1.0],
    [0.0, -1.0, 1.0, 0.2, 0.4, -0.5, 0.5, 0.0, 0.0, 1.0, 0.0],
    [2.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.7, -0.7, 0.0, 0.5],
    [0.5, 0.5, 0.5, 0.0, -2.0, 1.0, 1.0, -1.0, 0.0, -1.0, 2.0],
    [-1.0, 0.0, 1.0, 1.0, 1.0, 0.2, 0.1, -0.3, 1.2, 1.5, 0.5],
]
GS_LABELS = [0, 3, 2, 5, 4]
GS_TARGETS = [[1, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0]]


def test_group_softmax_loss_by_hand_when_every_roi_is_kept(ann5):
    """beta large: every group with a foreground RoI keeps all 5 RoIs; g2 has none and adds 0."""
    loss = GroupSoftmax(5, ann_file=ann5, beta=1000, loss_weight=2.0)
    expected = 0.0
    for g, (s, e) in enumerate(G_SLICES):
        if g == 2:
            continue
        ce = [-log_softmax(GS_Z[i][s:e])[GS_TARGETS[g][i]] for i in range(5)]
        expected += sum(ce) / 5
    got = loss(torch.tensor(GS_Z), torch.tensor(GS_LABELS))
    assert got.item() == pytest.approx(2.0 * expected, rel=1e-6)
    assert loss(torch.tensor(GS_Z), torch.tensor(GS_LABELS), reduction_override="none")[2].abs().sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_group_softmax_samples_int_fg_times_beta_others(ann5, seed):
    torch.manual_seed(seed)
    labels = torch.tensor([0] + [5] * 9 + [4] * 2)  # one RoI of g0, nine background, two of g3
    mask = GroupSoftmax(5, ann_file=ann5, beta=2.5).sample_mask(labels)
    assert mask[0, 0] == 1 and mask[0].sum() == 1 + int(1 * 2.5)  # its RoI + 2 distinct others
    assert mask[1].sum() == 0 and mask[2].sum() == 0  # groups without RoIs of their classes
    assert mask[3, -2:].tolist() == [1, 1] and mask[3].sum() == 2 + 5  # 2 fg + int(2 * 2.5) others
    assert mask[4].sum() == 12  # background group: every RoI
    # not enough others: all of them are kept
    assert GroupSoftmax(5, ann_file=ann5, beta=20).sample_mask(labels)[0].sum() == 12


def test_group_softmax_inference_merge(ann5):
    scores = GroupSoftmax(5, ann_file=ann5).get_activation(torch.tensor(GS_Z))
    for i, row in enumerate(GS_Z):
        p = [softmax(row[s:e]) for s, e in G_SLICES]
        p_fg, p_bg = p[4]
        expected = [p[0][1] * p_fg, p[2][1] * p_fg, p[1][1] * p_fg, p[0][2] * p_fg, p[3][1] * p_fg, p_bg]
        assert scores[i].tolist() == pytest.approx(expected, rel=1e-5)


def test_group_softmax_accuracy_is_that_of_the_merged_prediction(ann5):
    z = torch.tensor(GS_Z)
    labels = torch.tensor(GS_LABELS)
    loss = GroupSoftmax(5, ann_file=ann5)
    acc = loss.get_accuracy(z, labels)
    merged_right = (loss.get_activation(z).argmax(1) == labels).float().mean() * 100
    assert acc["acc"].item() == pytest.approx(merged_right.item())
    bg_right = sum((GS_Z[i][10] > GS_Z[i][9]) == (GS_LABELS[i] == 5) for i in range(5)) * 20
    assert acc["acc_objectness"].item() == pytest.approx(bg_right)


# ---------------------------------------------------------------------------------------------------------
# Contract shared by the three losses (style.md section 10)
# ---------------------------------------------------------------------------------------------------------


def build_loss(kind: str, ann: str, **kwargs):
    if kind == "EQLv2":
        return MODELS.build(dict(type="EQLv2", num_classes=C, **kwargs))
    if kind == "EQL":
        return MODELS.build(dict(type="EQL", num_classes=C, lambda_=0.25, ann_file=ann, **kwargs))
    return MODELS.build(dict(type="GroupSoftmax", num_classes=C, ann_file=ann, **kwargs))


KINDS = ["EQLv2", "EQL", "GroupSoftmax"]
# fc_cls size: C + 1 (bg detector) / C (no bg) / C + 1 + 5 groups (ann3 groups: g1 {0}, g0 {1}, g3 {2})
CHANNELS = {"EQLv2": C + 1, "EQL": C, "GroupSoftmax": C + 1 + 5}


def _inputs(kind: str, n: int = 6):
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(n, CHANNELS[kind], generator=gen, requires_grad=True)
    labels = torch.tensor([0, 1, 2, BG, BG, 1][:n])
    return z, labels


@pytest.mark.parametrize("kind", KINDS)
def test_contract_registered_and_hooks_set(kind, ann3):
    loss = build_loss(kind, ann3)
    assert (loss.custom_cls_channels, loss.custom_activation, loss.custom_accuracy) == (True, True, True)
    assert loss.get_cls_channels(C) == CHANNELS[kind]
    with pytest.raises(AssertionError):
        loss.get_cls_channels(C + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_bad_reduction_override(kind, ann3):
    z, labels = _inputs(kind)
    with pytest.raises(AssertionError):
        build_loss(kind, ann3)(z, labels, reduction_override="avg")


@pytest.mark.parametrize("kind", KINDS)
def test_contract_avg_factor_with_sum_raises(kind, ann3):
    z, labels = _inputs(kind)
    with pytest.raises(ValueError):
        build_loss(kind, ann3)(z, labels, avg_factor=3, reduction_override="sum")


@pytest.mark.parametrize("kind", KINDS)
def test_contract_empty_input(kind, ann3):
    z = torch.zeros(0, CHANNELS[kind], requires_grad=True)
    loss = build_loss(kind, ann3)
    value = loss(z, torch.zeros(0, dtype=torch.long))
    assert value.item() == 0.0
    value.backward()
    assert loss.get_activation(z).shape == (0, C + 1)
    if kind == "EQLv2":  # an empty batch adds nothing to the statistics
        assert loss.pos_neg.tolist() == [100.0] * C and loss.pos_grad.sum() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_contract_zero_loss_weight_gives_zero_loss(kind, ann3):
    z, labels = _inputs(kind)
    assert build_loss(kind, ann3, loss_weight=0.0)(z, labels).item() == 0.0


@pytest.mark.parametrize("kind", ["EQLv2", "EQL"])
def test_contract_reductions_agree(kind, ann3):
    z, labels = _inputs(kind)
    # fresh losses: EQLv2 updates its statistics on every call
    mean = build_loss(kind, ann3)(z, labels)
    total = build_loss(kind, ann3)(z, labels, reduction_override="sum")
    none = build_loss(kind, ann3)(z, labels, reduction_override="none")
    assert none.shape == z.shape
    assert total.item() == pytest.approx(none.sum().item(), rel=1e-6)
    assert mean.item() == pytest.approx(total.item() / len(labels), rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_activation_shape_and_range(kind, ann3):
    z, _ = _inputs(kind)
    scores = build_loss(kind, ann3).get_activation(z * 5)
    assert scores.shape == (len(z), C + 1)
    assert bool(((scores >= 0) & (scores <= 1)).all())


# ---------------------------------------------------------------------------------------------------------
# In a bbox head
# ---------------------------------------------------------------------------------------------------------


def test_sigmoid_prior_init_cfg_sets_the_fc_cls_bias():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(
            type="Shared2FCBBoxHead",
            in_channels=8,
            fc_out_channels=64,
            roi_feat_size=7,
            num_classes=80,
            loss_cls=dict(type="EQLv2", num_classes=80),
            init_cfg=copy.deepcopy(SIGMOID_PRIOR_INIT_CFG),
        )
    )
    head.init_weights()
    prior = -math.log(0.999 / 0.001)
    assert prior == pytest.approx(-6.9068, abs=1e-4)
    assert head.fc_cls.bias.tolist() == pytest.approx([prior] * 81)  # the background logit too
    assert head.fc_cls.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert head.fc_reg.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert head.shared_fcs[0].bias.abs().sum() == 0  # Xavier, as in the head's default init
    assert sigmoid_prior_init_cfg() == SIGMOID_PRIOR_INIT_CFG
    assert sigmoid_prior_init_cfg(0.01)[0]["bias_prob"] == 0.01


def _sampling_result():
    """One image: 6 RoIs, 3 positives (gt 0 of class 0, gt 1 of class 2), 3 negatives."""
    from mmdet.models.task_modules.assigners import AssignResult
    from mmdet.models.task_modules.samplers import SamplingResult

    priors = torch.tensor(
        [[0, 0, 10, 10], [20, 20, 40, 40], [1, 1, 11, 11], [30, 0, 50, 10], [0, 40, 9, 60], [50, 50, 63, 63]],
        dtype=torch.float,
    )
    gt = torch.tensor([[0, 0, 10, 11], [20, 21, 40, 40]], dtype=torch.float)
    assign = AssignResult(
        num_gts=2,
        gt_inds=torch.tensor([1, 2, 1, 0, 0, 0]),
        max_overlaps=torch.tensor([0.9, 0.9, 0.7, 0.0, 0.0, 0.0]),
        labels=torch.tensor([0, 2, 0, -1, -1, -1]),
    )
    return SamplingResult(
        pos_inds=torch.tensor([0, 1, 2]),
        neg_inds=torch.tensor([3, 4, 5]),
        priors=priors,
        gt_bboxes=gt,
        assign_result=assign,
        gt_flags=torch.zeros(6, dtype=torch.uint8),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_in_shared2fc_bbox_head(kind, ann3):
    loss_cls = {
        "EQLv2": dict(type="EQLv2", num_classes=C),
        "EQL": dict(type="EQL", num_classes=C, lambda_=0.25, ann_file=ann3),
        "GroupSoftmax": dict(type="GroupSoftmax", num_classes=C, ann_file=ann3),
    }[kind]
    head = MODELS.build(
        dict(
            type="Shared2FCBBoxHead",
            in_channels=8,
            fc_out_channels=16,
            roi_feat_size=7,
            num_classes=C,
            loss_cls=loss_cls,
        )
    )
    head.init_weights()
    assert head.fc_cls.out_features == CHANNELS[kind]

    sampling = _sampling_result()
    priors = torch.cat([sampling.pos_priors, sampling.neg_priors])  # the order get_targets uses
    rois = torch.cat([torch.zeros(6, 1), priors], dim=1)  # (batch index, x1, y1, x2, y2)
    cls_score, bbox_pred = head(torch.randn(6, 8, 7, 7))
    assert cls_score.shape == (6, CHANNELS[kind])
    out = head.loss_and_target(cls_score, bbox_pred, rois, [sampling], ConfigDict(pos_weight=-1))
    labels = out["bbox_targets"][0]
    assert labels.tolist() == [0, 2, 0, BG, BG, BG]
    losses = out["loss_bbox"]
    assert torch.isfinite(losses["loss_cls"]) and torch.isfinite(losses["loss_bbox"])
    expected_acc = {"EQLv2": {"acc_objectness", "acc_classes"}, "EQL": {"acc_objectness", "acc_classes"}}
    assert set(losses) - {"loss_cls", "loss_bbox"} == expected_acc.get(kind, {"acc", "acc_objectness"})
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert head.fc_cls.weight.grad is not None

    metas = [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))]
    with torch.no_grad():
        cls_score, bbox_pred = head(torch.randn(6, 8, 7, 7))
        raw = head.predict_by_feat((rois,), (cls_score,), (bbox_pred,), metas, rcnn_test_cfg=None)[0]
        torch.testing.assert_close(raw.scores, head.loss_cls.get_activation(cls_score))
        test_cfg = ConfigDict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10)
        dets = head.predict_by_feat((rois,), (cls_score,), (bbox_pred,), metas, rcnn_test_cfg=test_cfg)[0]
    assert len(dets) <= 10 and bool((dets.labels < C).all())


def test_the_configs_sigmoid_prior_fragment_is_the_packages_init():
    """The configs inherit the prior from configs/_base_/sigmoid_prior_init.py; it is the same list."""
    from mmengine.config import Config

    from eqlv2.config import resolve_config

    fragment = Config.fromfile(str(resolve_config("_base_/sigmoid_prior_init.py")))
    assert fragment.to_dict()["sigmoid_prior_init_cfg"] == SIGMOID_PRIOR_INIT_CFG
    eqlv2 = Config.fromfile(str(resolve_config("lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py")))
    assert eqlv2.model.roi_head.bbox_head.init_cfg == SIGMOID_PRIOR_INIT_CFG


# ---------------------------------------------------------------------------------------------------------
# The fused implementations against plain autograd of the formulas, on larger batches
# ---------------------------------------------------------------------------------------------------------
# The losses compute their values, gradients and (EQLv2) statistics in custom autograd functions without
# one-hot or weight matrices.  Here each is checked against the formula written the readable way: a
# one-hot target, an (N, channels) weight matrix, torch's BCE / cross entropy and autograd's gradient.

BIG_C = 40
REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [torch.float32, torch.bfloat16]
# bfloat16 logits get a bfloat16 gradient: the float32 gradients of the two computations agree to ~1e-7,
# and their rounding to bfloat16 (8 significant bits) can then differ by one step.
GRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5)}


def _reduce(loss: torch.Tensor, reduction: str, num_rois: int) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(num_rois, 1)


def _long_tailed_batch(gen, num_rois: int, channels: int, labels_from: list[int], dtype):
    """Logits spread like a classifier's, with saturated entries, and 40 % foreground labels drawn from
    ``labels_from`` with a long tail (the first listed classes most often); the rest background."""
    z = torch.randn(num_rois, channels, generator=gen) * 4 - 2
    z[:2, :6] = torch.tensor([[60.0, -60.0, 25.0, -25.0, 90.0, -90.0]] * 2)  # softplus/exp at their limits
    pick = (torch.rand(num_rois, generator=gen) ** 3 * len(labels_from)).long()
    fg = torch.rand(num_rois, generator=gen) < 0.4
    labels = torch.where(fg, torch.tensor(labels_from)[pick], BIG_C)
    # labels_from = 0, 1, ...: a saturated positive (z = 60) and a saturated negative one (z = -60)
    labels[:2] = torch.tensor(labels_from[:2])
    return z.to(dtype), labels


def _backward_both(got: torch.Tensor, want: torch.Tensor, gen) -> None:
    """The same upstream gradient into both (a random one, so that 'none' is checked entry by entry)."""
    upstream = torch.rand(want.shape, generator=gen) + 0.5
    got.backward(upstream)
    want.backward(upstream)


class ReferenceEQLv2:
    """EQLv2 as the paper states it, with autograd for the gradient and the closed form for the statistics."""

    def __init__(self, num_classes: int, loss_weight: float) -> None:
        self.num_classes, self.loss_weight = num_classes, loss_weight
        self.pos_grad = torch.zeros(num_classes)
        self.neg_grad = torch.zeros(num_classes)
        self.pos_neg = torch.full((num_classes,), 100.0)

    def __call__(self, z: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        pos_w, neg_w = eqlv2_weights(self.pos_neg, gamma=12, mu=0.8, alpha=4.0)
        logits = z.float()
        y = F.one_hot(labels, self.num_classes + 1).float()
        w = y * pos_w + (1 - y) * neg_w
        loss = F.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="none")
        p = torch.sigmoid(logits.detach())
        self.pos_grad = self.pos_grad + (y * w * (1 - p)).sum(0)[:-1]  # background channel not tracked
        self.neg_grad = self.neg_grad + ((1 - y) * w * p).sum(0)[:-1]
        self.pos_neg = self.pos_grad / (self.neg_grad + 1e-10)
        return self.loss_weight * _reduce(loss, reduction, len(labels))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_eqlv2_fused_path_equals_autograd_of_the_formula_over_steps(reduction, dtype):
    fast, reference = EQLv2(num_classes=BIG_C, loss_weight=1.5), ReferenceEQLv2(BIG_C, loss_weight=1.5)
    gen = torch.Generator().manual_seed(11)
    for _ in range(5):  # the statistics of each step set the weights of the next
        z, labels = _long_tailed_batch(gen, 64, BIG_C + 1, list(range(BIG_C)), dtype)
        z_fast, z_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
        got = fast(z_fast, labels, reduction_override=reduction)
        want = reference(z_ref, labels, reduction)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        _backward_both(got, want, gen)
        assert z_fast.grad.dtype == dtype
        torch.testing.assert_close(z_fast.grad, z_ref.grad, **GRAD_TOL[dtype])
        for stat in ("pos_grad", "neg_grad", "pos_neg"):
            torch.testing.assert_close(getattr(fast, stat), getattr(reference, stat), rtol=1e-5, atol=1e-7)
    # The weights were far from plain BCE and spread out: positives boosted (the most-sampled class less),
    # negatives damped.
    pos_w, neg_w = fast.get_weights()
    assert pos_w[:BIG_C].max() > 4.5 and pos_w[:BIG_C].min() < 2.5 and neg_w[:BIG_C].min() < 0.01


def test_eqlv2_fused_path_handles_saturated_logits_like_torch_bce():
    """Logits of +-90 (sigmoid is 0 or 1 in float32): finite loss and gradient, the values of torch's BCE."""
    z = torch.tensor([[90.0, -90.0, 90.0, -90.0], [-90.0, 90.0, 0.0, 90.0]], requires_grad=True)
    labels = torch.tensor([0, BG])  # positive at +90 (loss 0), negatives at +90 (loss 90 each)
    loss = EQLv2(num_classes=C)(z, labels, reduction_override="sum")
    target = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]])
    expected = F.binary_cross_entropy_with_logits(z.detach(), target, reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() == pytest.approx(
        90 + math.log(2) + 90 + 0.0, rel=1e-6
    )
    loss.backward()
    torch.testing.assert_close(z.grad, torch.sigmoid(z.detach()) - target)


def reference_eql(z: torch.Tensor, labels: torch.Tensor, tail: torch.Tensor, reduction: str, loss_weight):
    """EQL as the paper states it: the (N, C) weight 1 - E(r) T(f) (1 - y) on torch's BCE, autograd."""
    logits = z.float()
    num_classes = logits.size(1)
    y = F.one_hot(labels, num_classes + 1)[:, :num_classes].float()
    is_fg = (labels < num_classes).float()[:, None]
    w = 1 - is_fg * tail[None, :] * (1 - y)
    loss = F.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="none")
    return loss_weight * _reduce(loss, reduction, len(labels))


@pytest.fixture
def ann40(tmp_path) -> str:
    """40 classes, 10 annotated images.  image_count (i % 5) + 1: classes with 1 or 2 images are EQL's
    tail at lambda 0.25 (16 of 40).  instance_count 3 / 30 / 300 / 3000 by i % 4: ten classes in each of
    the BAGS class groups g0..g3."""
    cats = [
        {"id": i + 1, "image_count": i % 5 + 1, "instance_count": (3, 30, 300, 3000)[i % 4]}
        for i in range(BIG_C)
    ]
    return write_ann(tmp_path / "train40.json", cats, image_ids=list(range(1, 11)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_eql_fused_path_equals_autograd_of_the_formula(ann40, reduction, dtype):
    fast = EQL(BIG_C, lambda_=0.25, ann_file=ann40, loss_weight=1.5)
    assert int(fast.tail.sum()) == 16
    gen = torch.Generator().manual_seed(12)
    for _ in range(3):
        z, labels = _long_tailed_batch(gen, 64, BIG_C, list(range(BIG_C)), dtype)
        z_fast, z_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
        got = fast(z_fast, labels, reduction_override=reduction)
        want = reference_eql(z_ref, labels, fast.tail, reduction, 1.5)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        _backward_both(got, want, gen)
        assert z_fast.grad.dtype == dtype
        torch.testing.assert_close(z_fast.grad, z_ref.grad, **GRAD_TOL[dtype])
        # a foreground RoI sends no negative gradient to a tail class; a background RoI does
        tail = fast.tail.bool()
        fg_rows = (labels < BIG_C).nonzero().squeeze(1)
        negatives = torch.ones(len(labels), BIG_C, dtype=torch.bool)
        negatives[fg_rows, labels[fg_rows]] = False
        assert (z_fast.grad[fg_rows][:, tail][negatives[fg_rows][:, tail]] == 0).all()
        assert (z_fast.grad[labels == BIG_C][:, tail] != 0).all()


def reference_group_softmax(loss: GroupSoftmax, z, labels, mask, reduction: str) -> torch.Tensor:
    """BAGS as the paper states it: torch's cross entropy on each group's slice, masked, autograd."""
    logits = z.float()
    remapped = loss.group_labels(labels)
    per_group = []
    for g in range(loss.num_groups):
        start, size = int(loss.group_start[g]), int(loss.group_size[g])
        ce = F.cross_entropy(logits[:, start : start + size], remapped[g], reduction="none")
        per_group.append(ce * mask[g])
    losses = torch.stack(per_group)
    if reduction == "none":
        return loss.loss_weight * losses
    if reduction == "sum":
        return loss.loss_weight * losses.sum()
    return loss.loss_weight * (losses.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_group_softmax_fused_path_equals_autograd_of_the_formula(ann40, reduction, dtype):
    fast = GroupSoftmax(BIG_C, ann_file=ann40, beta=1.5, loss_weight=1.5)
    assert fast.group_size.tolist() == [11, 11, 11, 11, 2]
    no_g0 = [c for c in range(BIG_C) if c % 4 != 0]  # no RoI of group g0's classes
    gen = torch.Generator().manual_seed(13)
    for step in range(3):
        z, labels = _long_tailed_batch(gen, 64, fast.num_channels, no_g0, dtype)
        torch.manual_seed(step)
        mask = fast.sample_mask(labels)
        # every case of the sampling: a group without RoIs, groups keeping part of the RoIs, all of them
        kept = mask.sum(dim=1).tolist()
        assert kept[0] == 0 and any(0 < k < 64 for k in kept[1:4]) and kept[4] == 64
        z_fast, z_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
        torch.manual_seed(step)  # the same "others" draws as the mask above
        got = fast(z_fast, labels, reduction_override=reduction)
        want = reference_group_softmax(fast, z_ref, labels, mask, reduction)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        _backward_both(got, want, gen)
        assert z_fast.grad.dtype == dtype
        torch.testing.assert_close(z_fast.grad, z_ref.grad, **GRAD_TOL[dtype])
        dropped = (mask[1] == 0).nonzero().squeeze(1)  # RoIs group g1 does not keep: no gradient there
        assert z_fast.grad[dropped][:, fast.group_slice(1)].abs().sum() == 0


@pytest.mark.parametrize("bad", [-1, C + 1])
def test_sigmoid_losses_refuse_labels_outside_0_to_c(ann3, bad):
    """The fused paths index the logits with the labels: a label of -1 must not wrap round to the background
    channel, nor C + 1 pass as background (the one-hot of the original refused both)."""
    labels = torch.tensor([0, bad])
    with pytest.raises((IndexError, RuntimeError)):
        EQLv2(num_classes=C)(torch.zeros(2, C + 1), labels)
    with pytest.raises(ValueError, match=r"EQL labels must lie in \[0, 3\]"):
        EQL(C, lambda_=0.25, ann_file=ann3)(torch.zeros(2, C), labels)
