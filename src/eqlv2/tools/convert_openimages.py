"""``eqlv2 convert-openimages``: OpenImages Challenge CSVs to a COCO-style training JSON."""

from __future__ import annotations

import argparse

from eqlv2.datasets.openimages_convert import convert_openimages


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-openimages",
        help="convert OpenImages Challenge 2019 box and label CSVs to a COCO-style training JSON",
        description=(
            "Write a COCO-style JSON for training from the Challenge CSVs: categories in class-file "
            "order with image_count and instance_count, images with pos/neg_category_ids from every "
            "image-level label row, one annotation per box row with its IsGroupOf flag kept.\n\n"
            "Example:\n  eqlv2 convert-openimages "
            "--boxes annotations/challenge-2019-train-detection-bbox.csv "
            "--image-labels annotations/challenge-2019-train-detection-human-imagelabels.csv "
            "--classes annotations/challenge-2019-classes-description-500.csv "
            "--images-dir openimages/train --sizes train_sizes-00000-of-00001.csv "
            "--out annotations/openimages_challenge_2019_train_bbox.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--boxes", required=True, metavar="BBOX_CSV", help="box CSV (not expanded)")
    p.add_argument("--image-labels", required=True, metavar="LABELS_CSV", help="image-level label CSV")
    p.add_argument("--classes", required=True, metavar="CLASSES_CSV", help="headerless MID,name CSV")
    p.add_argument("--images-dir", required=True, metavar="DIR", help="folder of <ImageID>.jpg")
    p.add_argument(
        "--sizes", metavar="SIZES_CSV", help="image_id,image_w,image_h CSV (default: read the images)"
    )
    p.add_argument("--out", required=True, metavar="JSON", help="the COCO-style JSON to write")
    p.set_defaults(func=command, verb="convert-openimages")


def command(args: argparse.Namespace) -> None:
    doc = convert_openimages(
        args.boxes, args.image_labels, args.classes, args.images_dir, args.out, sizes_csv=args.sizes
    )
    print(
        f"wrote {args.out}: {len(doc['images'])} images, {len(doc['annotations'])} boxes, "
        f"{len(doc['categories'])} categories"
    )
