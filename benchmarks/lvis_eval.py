"""LVIS evaluation: time, peak memory and agreement with the ``lvis`` package, six evaluators in one run.

    .venv/bin/pip install vernier==0.5.4 hotcoco==1.3.0 ultrafast-pycocotools==0.1.14 faster-coco-eval==1.8.0
    .venv/bin/python benchmarks/lvis_eval.py                      # LVIS scale: 1000 images, 1203 classes
    .venv/bin/python benchmarks/lvis_eval.py --images 100 --categories 200   # a quick look
    .venv/bin/python benchmarks/lvis_eval.py --images 19809 --repeat 1 --iou-types bbox \
        --evaluators eqlv2 vernier                                # LVIS v1 val's size: 5.9 M detections

Builds a seeded LVIS-format case (``tests/lvis_cases.py``: ~300 detections per image, some images over the
cap, degenerate ground-truth boxes, negative and not-exhaustive lists), then runs each evaluator on the same
two files, one after the other, each in a fresh process, ``--repeat`` rounds (default 3) after one untimed
priming process each (numba's cache, the page cache), and prints for bbox and segm the medians of:
**cold** seconds (the fresh process's wall time to its first result: interpreter, imports, reading the
files, evaluating: what a workflow job pays), of which imports and the evaluation, and **warm** seconds (a
second evaluation in the same process: what a training loop's validation pays); the ratios to the first
evaluator named (the ``lvis`` package when it runs); the process's peak memory; and the largest
difference from the ``lvis`` package over the metrics the evaluator reports.  A 2-core virtual machine's
timings scatter by 20% from run to run: each cold run is printed at the end of the row.

How each is called:
* ``lvis``: ``LVISEval`` of ``lvis`` 0.5.3 (through ``eqlv2 evaluate-lvis --backend lvis``), the reference;
* ``eqlv2``: ``eqlv2 evaluate-lvis``'s library function (the fast backend);
* ``vernier``: ``CocoDataset.from_lvis_json``, its bbox/segm matching grid in strict parity mode at 300
  detections per image with detection areas from their boxes (as ``LVISResults``), then its LVIS summary
  (13 metrics: no ARr/ARc/ARf);
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALUATORS = ("lvis", "eqlv2", "vernier", "hotcoco", "ultrafast-pycocotools", "faster-coco-eval")
# The 13 numbers of vernier's LVIS summary, in its order (it has no ARr/ARc/ARf).
VERNIER_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf",
                 "AR@300", "ARs@300", "ARm@300", "ARl@300")  # fmt: skip
# Our key -> the names other evaluators use for it.
ALIASES = {
    "AP": ("AP", "AP_all"), "AP50": ("AP50", "AP_50"), "AP75": ("AP75", "AP_75"),
    "APs": ("APs", "AP_small"), "APm": ("APm", "AP_medium"), "APl": ("APl", "AP_large"),
    "APr": ("APr",), "APc": ("APc",), "APf": ("APf",),
    "AR@300": ("AR@300", "AR_300", "AR_all"), "ARs@300": ("ARs@300", "AR_small"),
    "ARm@300": ("ARm@300", "AR_medium"), "ARl@300": ("ARl@300", "AR_large"),
    "ARr@300": ("ARr@300", "ARr"), "ARc@300": ("ARc@300", "ARc"), "ARf@300": ("ARf@300", "ARf"),
}  # fmt: skip


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, MiB.

    Not ``getrusage``'s ``ru_maxrss``: Linux keeps it across ``exec``, so a child would report the peak of
    the benchmark's own process (which holds the whole case) whenever that is larger than its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _evaluator(name: str, gt_path: str, dt_path: str, iou_type: str):
    """Import ``name``'s package and return a call that evaluates the two files (reading them included)."""
    if name in ("lvis", "eqlv2"):
        from eqlv2.evaluation.lvis import evaluate_lvis

        backend = "fast" if name == "eqlv2" else "lvis"
        return lambda: evaluate_lvis(gt_path, dt_path, iou_type, backend=backend)
    if name == "vernier":
        from vernier import _core
        from vernier.instance import CocoDataset

        grid = _core.evaluate_bbox_grid if iou_type == "bbox" else _core.evaluate_segm_grid

        def run() -> dict:
            gt = CocoDataset.from_lvis_json(Path(gt_path).read_bytes())
            # dt_area="bbox": LVISResults takes a detection's area from its box whenever it has one.
            matched = grid(gt, Path(dt_path).read_bytes(), parity_mode="strict", max_dets_per_image=300,
                           use_cats=True, dt_area="bbox", num_threads=int(os.environ["OMP_NUM_THREADS"]))
            stats = matched.accumulate([300]).summarize_lvis(gt, [300]).stats
            return dict(zip(VERNIER_STATS, stats, strict=True))

        return run
    if name == "hotcoco":
        import hotcoco

        def run() -> dict:
            gt = hotcoco.LVIS(gt_path)
            ev = hotcoco.LVISEval(gt, hotcoco.LVISResults(gt, dt_path, max_dets=300), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return ev.get_results()

        return run
    if name == "ultrafast-pycocotools":
        from ultrafast_pycocotools import COCO, COCOeval

        def run() -> dict:
            gt = COCO(gt_path)
            ev = COCOeval(gt, gt.loadRes(dt_path), iou_type, lvis_style=True, print_function=lambda *_: None)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return ev.stats_as_dict

        return run
    if name == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        def run() -> dict:
            gt = COCO(gt_path)
            ev = COCOeval_faster(
                gt, gt.loadRes(dt_path), iou_type, lvis_style=True, print_function=lambda *_: None
            )
            ev.params.maxDets = [300]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return ev.stats_as_dict

        return run
    raise ValueError(f"unknown evaluator {name}")


def _run_one(name: str, gt_path: str, dt_path: str, iou_type: str) -> dict:
    """Import, evaluate, evaluate again, in this process; the caller runs each in a process of its own.

    The first evaluation is what a workflow job pays after its imports; the second (warm: compiled
    kernels loaded, allocator and page cache primed) is what a training loop's validation pays.
    """
    start = time.perf_counter()
    evaluate = _evaluator(name, gt_path, dt_path, iou_type)
    imported = time.perf_counter()
    before = _status_mib("VmRSS")
    metrics = evaluate()
    first = time.perf_counter()
    evaluate()
    second = time.perf_counter()
    peak = _status_mib("VmHWM")
    return {"import_s": imported - start, "seconds": first - imported, "warm_s": second - first,
            "peak_mib": peak, "extra_mib": peak - before, "metrics": metrics}  # fmt: skip


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
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:90]}
    # The fresh process's cold figure: interpreter start, imports and the first evaluation (the
    # second, warm one is subtracted), what a workflow job pays.
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return dict(row, cold_s=wall - row["warm_s"])


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
        sizes = ", ".join(f"{t} {dt_paths[t].stat().st_size / 2**20:.0f} MiB" for t in ("bbox", "segm"))
        print(f"result files: {sizes}")
        names = (["lvis"] if "lvis" in args.evaluators else []) + [e for e in args.evaluators if e != "lvis"]
        baseline = "lvis" if "lvis" in names else names[0]
        for iou_type in args.iou_types:
            print(f"\n{iou_type}  (cold: a fresh process, start-up and imports included; warm: a second "
                  f"evaluation in it; x: {baseline}'s cold seconds / the row's)")
            print(f"{'evaluator':<22} {'cold s':>7} {'import':>7} {'eval':>7} {'warm s':>7} {'x cold':>7} "
                  f"{'x warm':>7} {'peak MiB':>9} {'max |diff|':>11} {'on':>7} {'metrics':>7}  cold runs (s)")
            runs: dict[str, list[dict]] = {name: [] for name in names}
            for name in names:  # once untimed: numba's cache and the page cache filled, as in a workflow
                dt = dt_paths[iou_type, "capped"] if name == "faster-coco-eval" else dt_paths[iou_type]
                primed = time.perf_counter()
                _spawn(name, gt_path, dt, iou_type, args.threads)
                if name == "eqlv2":
                    print(f"(eqlv2's untimed priming process: {time.perf_counter() - primed:.1f} s; a first "
                          "run ever also compiles numba's kernels into its cache)")
            for _ in range(args.repeat):  # round by round, so that a slow spell of the machine hits all
                for name in names:
                    dt = dt_paths[iou_type, "capped"] if name == "faster-coco-eval" else dt_paths[iou_type]
                    runs[name].append(_spawn(name, gt_path, dt, iou_type, args.threads))
            reference = _summary(runs[baseline])
            for name in names:
                row = _summary(runs[name])
                if "error" in row:
                    print(f"{name:<22} failed: {row['error']}")
                    continue
                cold = reference.get("cold_s", float("nan")) / row["cold_s"]
                warm = reference.get("warm_s", float("nan")) / row["warm_s"]
                diff, where, compared = _largest_difference(row["metrics"], reference.get("metrics", {}))
                figures = (f"{row['cold_s']:>7.2f} {row['import_s']:>7.2f} {row['seconds']:>7.2f} "
                           f"{row['warm_s']:>7.2f} {cold:>6.1f}x {warm:>6.1f}x {row['peak_mib']:>9.0f}")
                each = " ".join(f"{r['cold_s']:.2f}" for r in runs[name])
                print(f"{name:<22} {figures} {diff:>11.1e} {where:>7} {compared:>3}/16  {each}")


def _summary(rows: list[dict]) -> dict:
    """The median times of an evaluator's runs, its largest peak memory, the first run's metrics."""
    failed = [row for row in rows if "error" in row]
    if failed:
        return failed[0]
    summary = dict(rows[0])
    for key in ("cold_s", "import_s", "seconds", "warm_s"):
        summary[key] = statistics.median(row[key] for row in rows)
    for key in ("peak_mib", "extra_mib"):
        summary[key] = max(row[key] for row in rows)
    return summary


if __name__ == "__main__":
    main()
