"""The published samplers the project relies on, pinned on LVIS-format data: nothing here is re-implemented.

* RFS (repeat-factor sampling, reference section 5) is mmengine's ``ClassBalancedDataset`` (mmdet 3 has no
  copy of its own; ``type='ClassBalancedDataset'`` in an mmdet config resolves to mmengine's class).
* Class-aware sampling for cRT/LWS (reference section 4, the original's ``CASDataset``) is mmdet's
  ``ClassAwareSampler`` with ``num_sample_class=1``.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
from mmdet.datasets import LVISV1Dataset
from mmdet.datasets.samplers import ClassAwareSampler
from mmdet.registry import DATASETS
from mmengine.dataset import ClassBalancedDataset, DefaultSampler
from mmengine.runner import loops

from eqlv2.compat import import_lvis

import_lvis()  # LVISV1Dataset imports lvis itself; import it first through the logging-safe wrapper


def write_lvis(path, image_labels: list[list[int]], num_classes: int) -> str:
    """An LVIS v1 file: image ``i`` (id ``i + 1``) has one 8x8 box per label in ``image_labels[i]``.

    Labels are 0-based; category ids are ``label + 1``.  An empty list is an image without annotations.
    """
    images, annotations = [], []
    for i, labels in enumerate(image_labels):
        image_id = i + 1
        url = f"http://images.cocodataset.org/train2017/{image_id:012d}.jpg"
        images.append({"id": image_id, "width": 32, "height": 32, "coco_url": url})
        for label in labels:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [4.0, 4.0, 8.0, 8.0],
                    "area": 64.0,
                    "segmentation": [[4.0, 4.0, 12.0, 4.0, 12.0, 12.0, 4.0, 12.0]],
                }
            )
    categories = [
        {"id": c + 1, "name": f"class_{c}", "synset": f"class_{c}.n.01", "frequency": "f"}
        for c in range(num_classes)
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def lvis_dataset(ann_file: str) -> LVISV1Dataset:
    """Annotations only: no images are read (``pipeline=[]``), unannotated images are kept."""
    return LVISV1Dataset(
        ann_file=ann_file,
        data_prefix=dict(img=""),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=[],
    )


# ----------------------------------------------------------------------------------------------------
# RFS

# 11 images.  Class 0 ("A") is in 1 image, class 1 ("B") in 2, class 2 ("C") in 10; image 4 has no
# annotations and sits in the middle, with the only A image after it.
RFS_IMAGES = [[2], [1, 2], [2], [2], [], [2], [0, 2], [1, 2], [2], [2], [2]]
RFS_THR = 0.5
# By hand, N = 11 (the empty image counts in len(dataset)), t = 0.5:
#   f(A) = 1/11:  r(A) = sqrt(0.5 * 11)      = sqrt(5.5)  = 2.345  -> ceil 3
#   f(B) = 2/11:  r(B) = sqrt(0.5 * 11 / 2)  = sqrt(2.75) = 1.658  -> ceil 2
#   f(C) = 10/11: r(C) = max(1, sqrt(0.55)) = 1                   -> 1
# r(I) is the max over the image's classes; the empty image gets 1.
RFS_EXPECTED_REPEATS = [1, 2, 1, 1, 1, 1, 3, 2, 1, 1, 1]


def test_hand_arithmetic_of_the_expected_repeats():
    """The literal table above follows from the formula of reference section 5 (a check of the hand work)."""
    n = len(RFS_IMAGES)
    freq = Counter(c for labels in RFS_IMAGES for c in set(labels))
    assert dict(freq) == {0: 1, 1: 2, 2: 10}
    r = {c: max(1.0, math.sqrt(RFS_THR / (k / n))) for c, k in freq.items()}
    assert [
        math.ceil(max((r[c] for c in labels), default=1.0)) for labels in RFS_IMAGES
    ] == RFS_EXPECTED_REPEATS


def check_repeats_aligned(cbd, dataset, expected: list[int]) -> None:
    """Every image appears exactly its own number of times, in order, and carries its own classes."""
    assert cbd.repeat_indices == [i for i, k in enumerate(expected) for _ in range(k)]
    assert len(cbd) == sum(expected)
    seen = Counter(cbd.get_data_info(j)["img_id"] for j in range(len(cbd)))
    assert seen == {i + 1: k for i, k in enumerate(expected)}
    for j in range(len(cbd)):
        i = cbd.repeat_indices[j]
        assert sorted(cbd.get_cat_ids(j)) == sorted(dataset.get_cat_ids(i))


def test_rfs_repeat_factors_with_an_unannotated_image_in_the_middle(tmp_path):
    """mmengine's ``ClassBalancedDataset`` after PR #1048 keeps each image aligned with its repeat count.

    Before that fix ``_get_repeat_factors`` skipped images without labels, so its list had one entry per
    *annotated* image: from the empty image on, every image got the repeat factor of the image after it
    (here the empty image would get the A image's 3, the A image the B image's 2, ...) and the last image
    got none and vanished from training.  The exact ``repeat_indices`` and the per-``img_id`` counts
    asserted here are violated by that logic; ``test_the_check_catches_the_pre_1048_logic`` proves it.
    """
    dataset = lvis_dataset(write_lvis(tmp_path / "rfs.json", RFS_IMAGES, 3))
    assert len(dataset) == 11 and dataset.get_cat_ids(4) == []
    cbd = ClassBalancedDataset(dataset, oversample_thr=RFS_THR)
    check_repeats_aligned(cbd, dataset, RFS_EXPECTED_REPEATS)
    # the A image, index 6, is drawn three times and each time it is the A image
    assert [j for j in range(len(cbd)) if 0 in cbd.get_cat_ids(j)] == [7, 8, 9]
    # an mmdet config's type='ClassBalancedDataset' builds this very class
    built = DATASETS.build(dict(type="ClassBalancedDataset", oversample_thr=RFS_THR, dataset=dataset))
    assert type(built) is ClassBalancedDataset and built.repeat_indices == cbd.repeat_indices


class _Pre1048ClassBalancedDataset(ClassBalancedDataset):
    """The logic before mmengine PR #1048: images without labels get no entry in ``repeat_factors``.

    f(c) and r(c) were computed as now, so the old list is the current one without the empty images.
    """

    def _get_repeat_factors(self, dataset, repeat_thr):
        factors = super()._get_repeat_factors(dataset, repeat_thr)
        return [r for i, r in enumerate(factors) if dataset.get_cat_ids(i)]


def test_the_check_catches_the_pre_1048_logic(tmp_path):
    dataset = lvis_dataset(write_lvis(tmp_path / "rfs.json", RFS_IMAGES, 3))
    old = _Pre1048ClassBalancedDataset(dataset, oversample_thr=RFS_THR)
    assert old.repeat_indices == [0, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 7, 8, 9]  # image 10 is gone
    with pytest.raises(AssertionError):
        check_repeats_aligned(old, dataset, RFS_EXPECTED_REPEATS)


# A 200-image dataset: class k is in RFS_COUNTS[k] images of its own (image 0 has class 0, images 1-2
# class 1, ...), and class 5 is in all 200 images.
RFS_COUNTS = [1, 2, 10, 50, 100]
LVIS_V1_TRAIN_IMAGES = 99_388
# On LVIS v1 with t = 0.001, a class in n images gets ceil(max(1, sqrt(0.001 * 99,388 / n))):
#   n = 1: sqrt(99.388) = 9.97 -> 10;  n = 2: sqrt(49.69) = 7.05 -> 8;  n = 10: sqrt(9.94) = 3.15 -> 4;
#   n = 50: sqrt(1.99) = 1.41 -> 2;    n = 100: sqrt(0.994) = 0.997 -> 1.
LVIS_PROFILE = {1: 10, 2: 8, 10: 4, 50: 2, 100: 1}


def test_rfs_threshold_has_to_scale_with_the_dataset_size(tmp_path):
    """r(c) = sqrt(t N / n(c)) depends on t and N only through t N (about 99.4 on LVIS v1).

    With N = 200 images and the LVIS t = 0.001, t N = 0.2 < 1, so no class is ever repeated: RFS is a
    no-op.  Keeping t N = 0.001 * 99,388, i.e. t = 0.49694 for N = 200 (0.331 for the 300-image CI toy,
    0.0994 for the 1000-image default toy), gives each class exactly the repeat count it would get on
    LVIS with the same image count.
    """
    n_images = 200
    labels: list[list[int]] = []
    for k, count in enumerate(RFS_COUNTS):
        labels += [[k, 5] for _ in range(count)]
    labels += [[5] for _ in range(n_images - len(labels))]
    dataset = lvis_dataset(write_lvis(tmp_path / "profile.json", labels, 6))
    assert len(dataset) == n_images

    def repeats_by_class_count(thr):
        cbd = ClassBalancedDataset(dataset, oversample_thr=thr)
        per_image = Counter(cbd.repeat_indices)
        owner = {}  # first image of each rare class
        start = 0
        for count in RFS_COUNTS:
            owner[count] = range(start, start + count)
            start += count
        profile = {}
        for count, images in owner.items():
            assert len({per_image[i] for i in images}) == 1  # all images of a class repeat alike
            profile[count] = per_image[images[0]]
        assert all(per_image[i] == 1 for i in range(start, n_images))  # only the all-image class
        return profile, len(cbd)

    unscaled, length = repeats_by_class_count(0.001)
    assert unscaled == {n: 1 for n in RFS_COUNTS} and length == n_images
    scaled, length = repeats_by_class_count(0.001 * LVIS_V1_TRAIN_IMAGES / n_images)
    assert scaled == LVIS_PROFILE
    assert length == 1 * 10 + 2 * 8 + 10 * 4 + 50 * 2 + 100 * 1 + 37  # = 303


# ----------------------------------------------------------------------------------------------------
# Class-aware sampling

# One class per image, image counts halving from 128 to 1: 255 images, class 0 is half of them.
CAS_COUNTS = [128, 64, 32, 16, 8, 4, 2, 1]
EPOCHS = 8  # 8 x 255 = 2040 draws


@pytest.fixture(scope="module")
def long_tailed(tmp_path_factory):
    labels = [[c] for c, count in enumerate(CAS_COUNTS) for _ in range(count)]
    ann_file = write_lvis(tmp_path_factory.mktemp("cas") / "lt.json", labels, len(CAS_COUNTS))
    return lvis_dataset(ann_file)


def _draw(sampler, epochs: int) -> list[int]:
    drawn = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    return drawn


def test_class_aware_sampling_is_uniform_over_classes(long_tailed):
    """Each draw picks the next class of a reshuffled round robin, then the next image of that class.

    So within one epoch class counts differ by at most one (255 draws over 8 classes: seven classes
    32 times, one 31 times), and over E epochs every class count lies in [E * 31, E * 32]: with E = 8
    each class is drawn 255 +- 8 times out of 2040, although the rarest class has 1 image in 255.  The
    tolerance is this exact bound, not a statistical one.  The default sampler draws each image once
    per epoch, so its class counts are exactly E times the long tail.
    """
    n = len(long_tailed)
    cas = ClassAwareSampler(long_tailed, seed=0, num_sample_class=1)
    drawn = _draw(cas, EPOCHS)
    assert len(drawn) == EPOCHS * n == 2040
    per_class = Counter(long_tailed.get_cat_ids(i)[0] for i in drawn)
    assert sorted(per_class) == list(range(len(CAS_COUNTS)))
    assert all(EPOCHS * 31 <= k <= EPOCHS * 32 for k in per_class.values()), per_class
    assert Counter(drawn)[n - 1] >= EPOCHS * 31  # the single image of the rarest class, ~1/8 of draws

    default = DefaultSampler(long_tailed, shuffle=True, seed=0)
    per_class_default = Counter(long_tailed.get_cat_ids(i)[0] for i in _draw(default, EPOCHS))
    assert per_class_default == {c: EPOCHS * count for c, count in enumerate(CAS_COUNTS)}


def test_class_aware_sampler_is_finite_and_reseeded_per_epoch(long_tailed):
    """An epoch is ``ceil(len(dataset) / world_size)`` indices; ``set_epoch`` reseeds with seed + epoch."""
    cas = ClassAwareSampler(long_tailed, seed=0, num_sample_class=1)
    assert len(cas) == len(long_tailed) == 255
    first = list(cas)
    assert len(first) == 255 and list(cas) == first  # deterministic for an epoch (same on every rank)
    cas.set_epoch(1)
    assert list(cas) != first
    # categories are read at construction from metainfo['classes'] (keys) and get_cat_ids (members)
    assert len(cas.cat_dict) == len(long_tailed.metainfo["classes"]) == 1203
    assert cas.valid_cat_inds == list(range(len(CAS_COUNTS)))


def test_iteration_based_loop_restarts_the_sampler_with_a_new_epoch(long_tailed, monkeypatch):
    """``IterBasedTrainLoop`` wraps the dataloader in ``_InfiniteDataloaderIterator``: at the end of an
    epoch it logs a warning, sleeps 2 s, calls ``set_epoch(epoch + 1)`` on the batch sampler's sampler
    and starts again, so a finite sampler is fine for iteration-based schedules."""
    monkeypatch.setattr(loops.time, "sleep", lambda s: None)
    cas = ClassAwareSampler(long_tailed, seed=0, num_sample_class=1)
    loader = torch.utils.data.DataLoader(
        range(len(long_tailed)), batch_size=5, sampler=cas, collate_fn=lambda batch: batch
    )
    stream = loops._InfiniteDataloaderIterator(loader)
    drawn = [i for _ in range(2 * 255 // 5) for i in next(stream)]
    reference = ClassAwareSampler(long_tailed, seed=0, num_sample_class=1)
    assert drawn == _draw(reference, 2)


def test_class_aware_sampling_on_the_toy_lvis_split(small_toy):
    """On the generated LVIS-format toy (300 images, 48 classes, 1 to 160 images per class, several classes
    per image) each class is the sampler's pick 6 or 7 times per 300-draw epoch, so over 7 epochs every
    class is in at least 42 drawn images, whereas uniform image sampling shows the rarest classes only
    7 times (once per epoch per image)."""
    dataset = lvis_dataset(str(small_toy / "annotations" / "lvis_v1_train.json"))
    assert len(dataset) == 300
    image_count = Counter(c for i in range(len(dataset)) for c in set(dataset.get_cat_ids(i)))
    assert len(image_count) == 48 and min(image_count.values()) == 1

    def presence(sampler):
        return Counter(c for i in _draw(sampler, 7) for c in set(dataset.get_cat_ids(i)))

    cas = presence(ClassAwareSampler(dataset, seed=0, num_sample_class=1))
    assert min(cas.values()) >= 7 * (300 // 48) == 42
    default = presence(DefaultSampler(dataset, shuffle=True, seed=0))
    assert default == {c: 7 * k for c, k in image_count.items()}
    rare = [c for c, k in image_count.items() if k == 1]
    assert all(cas[c] >= 42 > default[c] == 7 for c in rare)
