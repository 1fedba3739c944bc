"""LVIS evaluation: time, peak memory and agreement with the ``lvis`` package, five evaluators in one run.

    .venv/bin/pip install hotcoco==1.3.0 ultrafast-pycocotools==0.1.14 faster-coco-eval==1.8.0
    .venv/bin/python benchmarks/lvis_eval.py                      # LVIS scale: 1000 images, 1203 classes
    .venv/bin/python benchmarks/lvis_eval.py --images 100 --categories 200   # a quick look

Builds a seeded LVIS-format case (``tests/lvis_cases.py``: ~300 detections per image, some images over the
cap, degenerate ground-truth boxes, negative and not-exhaustive lists), then runs each evaluator on the same
two files, one after the other, each in a fresh process, ``--repeat`` rounds (default 3), and prints for
bbox and segm: the median seconds (reading the files included; each run's seconds at the end of the row:
a 2-core virtual machine's timings scatter by 20% from run to run), the ratio to the ``lvis`` package,
the process's peak memory above what it held before evaluating, and the largest difference from the
``lvis`` package over the metrics the evaluator reports.

How each is called:
* ``lvis``: ``LVISEval`` of ``lvis`` 0.5.3 (through ``eqlv2 evaluate-lvis --backend lvis``), the reference;
* ``eqlv2``: ``eqlv2 evaluate-lvis`` (the fast backend); its compiled kernels are loaded from numba's cache,
  which a warm-up call on a tiny case fills first, so a first run ever costs some seconds more (printed);
* ``hotcoco``: its lvis-api drop-in (``LVIS``, ``LVISResults``, ``LVISEval``);
* ``ultrafast-pycocotools``: ``COCOeval(..., lvis_style=True)`` (its "official" LVIS protocol);
* ``faster-coco-eval``: ``COCOeval_faster(..., lvis_style=True)``, maxDets [300], given results already
  capped at 300 per image because it does not cap (its documented behaviour).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALUATORS = ("lvis", "eqlv2", "hotcoco", "ultrafast-pycocotools", "faster-coco-eval")
# Our key -> the names other evaluators use for it.
ALIASES = {
    "AP": ("AP", "AP_all"), "AP50": ("AP50", "AP_50"), "AP75": ("AP75", "AP_75"),
    "APs": ("APs", "AP_small"), "APm": ("APm", "AP_medium"), "APl": ("APl", "AP_large"),
    "APr": ("APr",), "APc": ("APc",), "APf": ("APf",),
    "AR@300": ("AR@300", "AR_300", "AR_all"), "ARs@300": ("ARs@300", "AR_small"),
    "ARm@300": ("ARm@300", "AR_medium"), "ARl@300": ("ARl@300", "AR_large"),
    "ARr@300": ("ARr@300", "ARr"), "ARc@300": ("ARc@300", "ARc"), "ARf@300": ("ARf@300", "ARf"),
}  # fmt: skip


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _run_one(name: str, gt_path: str, dt_path: str, iou_type: str) -> dict:
    """Evaluate in this process; the caller runs each evaluator in a process of its own."""
    extra = {}
    if name in ("lvis", "eqlv2"):
        from eqlv2.evaluation.lvis import evaluate_lvis

        if name == "eqlv2":  # fill numba's cache (a no-op when it is warm), timed apart
            sys.path.insert(0, str(ROOT))
            from tests.lvis_cases import CaseSize, make_case, write_case

            with tempfile.TemporaryDirectory() as tmp:
                tiny = write_case(Path(tmp), *make_case(0, CaseSize(images=5, categories=20)))
                start = time.perf_counter()
                evaluate_lvis(*tiny, iou_type)
                extra["warm_up_s"] = time.perf_counter() - start
        before = _rss_mib()
        start = time.perf_counter()
        metrics = evaluate_lvis(gt_path, dt_path, iou_type, backend="fast" if name == "eqlv2" else "lvis")
    elif name == "hotcoco":
        import hotcoco

        before = _rss_mib()
        start = time.perf_counter()
        gt = hotcoco.LVIS(gt_path)
        ev = hotcoco.LVISEval(gt, hotcoco.LVISResults(gt, dt_path, max_dets=300), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        metrics = ev.get_results()
    elif name == "ultrafast-pycocotools":
        from ultrafast_pycocotools import COCO, COCOeval

        before = _rss_mib()
        start = time.perf_counter()
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.loadRes(dt_path), iou_type, lvis_style=True, print_function=lambda *_: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        metrics = ev.stats_as_dict
    elif name == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        before = _rss_mib()
        start = time.perf_counter()
        gt = COCO(gt_path)
        ev = COCOeval_faster(
            gt, gt.loadRes(dt_path), iou_type, lvis_style=True, print_function=lambda *_: None
        )
        ev.params.maxDets = [300]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        metrics = ev.stats_as_dict
    else:
        raise ValueError(f"unknown evaluator {name}")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak, "extra_mib": peak - before, "metrics": metrics, **extra}


def _capped(results: list[dict], max_dets: int = 300) -> list[dict]:
    """The top ``max_dets`` detections of each image, as LVISResults keeps them."""
    by_image: dict[int, list[dict]] = {}
    for det in results:
        by_image.setdefault(det["image_id"], []).append(det)
    kept = []
    for dets in by_image.values():
        kept += (
            sorted(dets, key=lambda d: d["score"], reverse=True)[:max_dets] if len(dets) > max_dets else dets
        )
    return kept


def _largest_difference(metrics: dict, reference: dict) -> tuple[float, str, int]:
    """The largest difference from the reference, on which metric, over how many metrics."""
    worst, where, compared = 0.0, "", 0
    for key, names in ALIASES.items():
        value = next((metrics[n] for n in names if n in metrics), None)
        if value is None:
            continue
        compared += 1
        if abs(float(value) - reference[key]) > worst:
            worst, where = abs(float(value) - reference[key]), key
    return worst, where, compared


def _spawn(name: str, gt: Path, dt: Path, iou_type: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    argv = [sys.executable, __file__, "--run-one", name, str(gt), str(dt), iou_type]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:90]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=1203)
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iou-types", nargs="+", default=["bbox", "segm"])
    parser.add_argument("--evaluators", nargs="+", default=list(EVALUATORS), choices=EVALUATORS)
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh-process runs of each; the median is shown"
    )
    parser.add_argument("--run-one", nargs=4, metavar=("NAME", "GT", "DT", "IOU"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(_run_one(*args.run_one)))
        return

    sys.path.insert(0, str(ROOT))
    from tests.lvis_cases import CaseSize, make_case, write_case

    size = CaseSize(images=args.images, categories=args.categories, dets_per_image=args.dets_per_image)
    start = time.perf_counter()
    gt, results = make_case(args.seed, size)
    with tempfile.TemporaryDirectory() as tmp:
        # As mmdet writes them: boxes only for bbox; boxes and masks for segm.
        boxes = [{k: v for k, v in det.items() if k != "segmentation"} for det in results]
        gt_path, dt_paths = write_case(Path(tmp), gt, boxes)[0], {}
        for iou_type, dets in (("bbox", boxes), ("segm", results)):
            dt_paths[iou_type] = Path(tmp) / f"{iou_type}_dt.json"
            dt_paths[iou_type].write_text(json.dumps(dets))
            dt_paths[iou_type, "capped"] = Path(tmp) / f"{iou_type}_capped_dt.json"
            dt_paths[iou_type, "capped"].write_text(json.dumps(_capped(dets)))
        print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}; threads {args.threads}")  # fmt: skip
        print(
            f"case: {len(gt['images'])} images, {len(gt['categories'])} categories, "
            f"{len(gt['annotations'])} annotations, {len(results)} detections "
            f"({len(results) / len(gt['images']):.0f} per image; "
            f"built in {time.perf_counter() - start:.0f} s)"
        )
        names = ["lvis"] + [e for e in args.evaluators if e != "lvis"]
        for iou_type in args.iou_types:
            print(f"\n{iou_type}\n{'evaluator':<22} {'seconds':>8} {'vs lvis':>8} {'peak MiB':>9} "
                  f"{'+MiB':>7} {'max |diff|':>11} {'on':>7} {'metrics':>7}  runs (s)")  # fmt: skip
            runs: dict[str, list[dict]] = {name: [] for name in names}
            for _ in range(args.repeat):  # round by round, so that a slow spell of the machine hits all
                for name in names:
                    dt = dt_paths[iou_type, "capped"] if name == "faster-coco-eval" else dt_paths[iou_type]
                    runs[name].append(_spawn(name, gt_path, dt, iou_type, args.threads))
            reference = _summary(runs["lvis"])
            for name in names:
                row = _summary(runs[name])
                if "error" in row:
                    print(f"{name:<22} failed: {row['error']}")
                    continue
                ratio = reference["seconds"] / row["seconds"] if "seconds" in reference else float("nan")
                diff, where, compared = _largest_difference(row["metrics"], reference.get("metrics", {}))
                warm = f"  (warm-up {row['warm_up_s']:.1f} s)" if "warm_up_s" in row else ""
                figures = (
                    f"{row['seconds']:>8.2f} {ratio:>7.1f}x {row['peak_mib']:>9.0f} {row['extra_mib']:>7.0f}"
                )
                each = " ".join(f"{r['seconds']:.2f}" for r in runs[name])
                print(f"{name:<22} {figures} {diff:>11.1e} {where:>7} {compared:>3}/16  {each}{warm}")


def _summary(rows: list[dict]) -> dict:
    """The median time of an evaluator's runs, its largest peak memory, the first run's metrics."""
    failed = [row for row in rows if "error" in row]
    if failed:
        return failed[0]
    summary = dict(rows[0], seconds=statistics.median(row["seconds"] for row in rows))
    for key in ("peak_mib", "extra_mib"):
        summary[key] = max(row[key] for row in rows)
    return summary


if __name__ == "__main__":
    main()
