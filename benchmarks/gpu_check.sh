#!/usr/bin/env bash
# The GPU check, for a machine with one GPU, CUDA's compiler and a preinstalled CUDA torch but no network,
# in one call of at most 9 minutes: builds mmcv 2.1.0's CUDA operators for that card; records which torch
# ran and which one mmcv was built against; runs eqlv2 doctor as every GPU job does, whole and probe by
# probe, and the old mapped reader of mmcv's library (the first suspect of the doctor's SIGSEGV) before
# and after CUDA starts, each in a process of its own; compares RoIAlign, nms and EQLv2 (loss and
# statistics) on CUDA with the CPU; all-reduces over NCCL under torchrun; runs the workflow itself
# (snakemake on CI's small setting, GPU jobs on the GPU, to the paper table); and times a training
# iteration of the LVIS v1 R50 configs (CE, EQLv2, mmdet's own; EQLv2 under --amp and in deterministic
# mode).  The report (gpu_check.json) is rewritten after every step, so a call cut off still returns
# what it measured; benchmarks/gpu_check.py does the checks and holds the report's layout.
#
#   benchmarks/gpu_bundle.sh            # first, where there is a network: fills benchmarks/bundle/
#   benchmarks/gpu_check.sh             # then on the GPU machine, with benchmarks/bundle/ carried along
#   benchmarks/gpu_check.sh --dry-run   # what it would carry and run, and the report's layout
#
# Options:
#   --bundle DIR   the carried wheels and mmcv's sdist (default: benchmarks/bundle)
#   --work DIR     scratch space: the venv, the generated data, the work dirs (default: /tmp/eqlv2-gpu-check)
#   --budget S     seconds for the whole call (default 540): each step runs under its own time limit, cut
#                  to what is left; a step that no longer fits is recorded as skipped
#   --steps A,B    run only these steps, adding to an existing report instead of starting a new one: for
#                  example, when a call ran out of budget, the next one on the still warm machine goes on
#                  with --steps workflow,lvis_timing (the venv and mmcv's build stay in WORK)
#   --dry-run      print the plan, the bundle and the report's layout; build and run nothing
# Environment: PYTHON (default python3, the interpreter that has the CUDA torch), OUT (the report and
# logs go to $OUT when it is set, else to benchmarks/out): gpu_check.json, build_mmcv.log, steps.log.
# Only preflight, venv, install and build_mmcv are fatal; any other step may fail and the rest still run.
# Exit status: 0 when every step passed, 1 when one failed (the report says which and why), 2 for usage.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CHECK="$HERE/gpu_check.py"
# An absolute path: the steps put the venv's bin first on PATH, where a bare `python3` is the venv's own.
PYTHON=$(command -v "${PYTHON:-python3}") || { echo "gpu_check.sh: error: no ${PYTHON:-python3} on PATH" >&2; exit 2; }
BUNDLE="$HERE/bundle"
WORK=/tmp/eqlv2-gpu-check
OUTDIR=${OUT:-$HERE/out}
MMCV_SDIST=mmcv-2.1.0.tar.gz
STEPS=(preflight venv install build_mmcv provenance doctor ops eqlv2_loss nccl workflow mmap_reader lvis_timing)
FATAL=" preflight venv install build_mmcv "  # the later steps need these
# Each step's own time limit in seconds (cut to what is left of the budget).
declare -A LIMIT=([preflight]=60 [venv]=60 [install]=120 [build_mmcv]=420 [provenance]=60 [doctor]=150
                  [mmap_reader]=90 [ops]=60 [eqlv2_loss]=60 [nccl]=90 [workflow]=330 [lvis_timing]=400)
MIN_STEP_SECONDS=20  # a step given less than this is skipped rather than started
BUDGET=540
SELECTED=("${STEPS[@]}")
DRY_RUN=0
CARRY_LIMIT_MIB=64  # the most the device tool carries

usage() { sed -n '2,/^# Exit status/s/^# \{0,1\}//p' "$0"; }
die() { echo "gpu_check.sh: error: $1" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --bundle|--work|--steps|--budget)
            [ $# -ge 2 ] || die "$1 needs a value"
            case $1 in
                --bundle) BUNDLE=$2 ;;
                --work) WORK=$2 ;;
                --budget)
                    [[ $2 =~ ^[0-9]+$ ]] || die "--budget needs a number of seconds, got '$2'"
                    BUDGET=$2 ;;
                --steps)
                    IFS=, read -ra SELECTED <<< "$2"
                    for step in "${SELECTED[@]}"; do
                        [[ " ${STEPS[*]} " == *" $step "* ]] || die "unknown step '$step' (steps: ${STEPS[*]})"
                    done ;;
            esac
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

VENV="$WORK/venv"
MMCV_SRC="$WORK/${MMCV_SDIST%.tar.gz}"
VPY="$VENV/bin/python"
REPORT="$OUTDIR/gpu_check.json"
LOG="$OUTDIR/steps.log"
JOBS=$(nproc)
PIP_OFFLINE="--no-index --no-deps --find-links $BUNDLE/wheels"

# What each step runs (printed by --dry-run); the functions below run exactly that.
declare -A PLAN=(
    [preflight]="$PYTHON gpu_check.py preflight: the bundle is complete, the image has the packages it is expected to have (gpu_check.py PREINSTALLED), torch sees a GPU, nvcc's CUDA major version is torch's; writes TORCH_CUDA_ARCH_LIST=<the card's capability, e.g. 9.0>"
    [venv]="$PYTHON -m venv --system-site-packages $VENV (and a .pth to $PYTHON's site-packages when $PYTHON is itself a venv), so the preinstalled torch is used"
    [install]="pip install $PIP_OFFLINE -r benchmarks/gpu_bundle.txt (eqlv2's packages and snakemake's); pip install --no-index --no-deps --no-build-isolation --ignore-requires-python $REPO (eqlv2 from the working tree)"
    [build_mmcv]="gpu_check.py built-against (the venv's torch, recorded), then FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST=<the card's> MAX_JOBS=\$(nproc) ($JOBS here) pip install $PIP_OFFLINE --no-build-isolation $MMCV_SRC (unpacked from $BUNDLE/sdist/$MMCV_SDIST, kept between runs; log: build_mmcv.log), skipped when the venv already has mmcv with CUDA operators"
    [provenance]="gpu_check.py provenance: torch's path, version, CUDA and commit for $PYTHON and for the venv, the torch mmcv was built against, mmcv's CUDA and compiler; each interpreter asked in a process of its own"
    [doctor]="gpu_check.py doctor: eqlv2 doctor --require-gpu --json, as every GPU job runs it, then the same with --isolate (every probe in a process of its own); exit status, signal and each probe's status recorded; not fatal"
    [mmap_reader]="gpu_check.py mmap-reader: mmcv's library read through a shared mapping (the reader eqlv2 doctor had when it crashed) in a fresh faulthandler process at each stage: file only, library loaded, after an NCCL query, after CUDA started; beside today's pread reader"
    [ops]="gpu_check.py ops: mmcv RoIAlign forward and backward, nms and batched_nms on CUDA against the CPU"
    [eqlv2_loss]="gpu_check.py eqlv2-loss: EQLv2 (1203 classes) loss, gradient and pos_grad/neg_grad/pos_neg statistics over 5 iterations on CUDA against the CPU"
    [nccl]="gpu_check.py nccl: torchrun --standalone --nproc-per-node=1 gpu_check.py nccl-worker (an NCCL process group, an all-reduce checked)"
    [workflow]="gpu_check.py workflow: snakemake -s Snakefile --cores \$(nproc) --resources gpu=3 all on CI's small setting (.test/config_small), the LVIS branch's baseline, eqlv2 and crt, train and predict with gpus: 1 (each job runs eqlv2 doctor --require-gpu first, then its verb on the GPU), to results/toy/paper_table.md; wall time, each output's status (snakemake --summary)"
    [lvis_timing]="gpu_check.py lvis-timing: one training iteration (forward, backward, SGD) of lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py, lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py (also under --amp and in deterministic mode, recording the operators torch warns about) and mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py (randomly initialised) on 2 images of 1333x800 with a generated 1203-class annotation file; 5 warm-up, 20 timed iterations, each run in a process of its own"
)

step_preflight() {
    "$PYTHON" "$CHECK" --report "$REPORT" preflight --bundle "$BUNDLE" --arch-file "$WORK/arch_list"
}

step_venv() {
    if ! "$PYTHON" -m venv --system-site-packages "$VENV"; then
        # an interpreter without ensurepip: a venv without pip, run by PYTHON's own pip (pip --python)
        rm -rf "$VENV"
        "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || return
    fi
    if ! "$VPY" -c "import torch" 2>/dev/null; then
        # PYTHON is itself a venv: --system-site-packages reaches its base interpreter, not its torch.
        # Its site folders, and the one holding torch, are added the way site adds its own (addsitedir,
        # run from an `import` line of a .pth): their own .pth files are read too.
        local purelib
        purelib=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return
        "$PYTHON" -c '
import os, site, torch
dirs = [*site.getsitepackages(), os.path.dirname(os.path.dirname(torch.__file__))]
print("\n".join(f"import site; site.addsitedir({d!r})" for d in dict.fromkeys(dirs)))' \
            > "$purelib/gpu-check-base.pth" || return
    fi
    if ! "$VPY" -c "import torch; print(torch.__file__)"; then
        echo "gpu_check: error: the venv $VENV cannot import torch; $PYTHON has it at" \
            "$("$PYTHON" -c 'import torch; print(torch.__file__)')"
        "$VPY" -c 'import sys; print("the venv searches:", sys.path)'
        return 1
    fi
    "$VPY" -c "import torch; assert torch.cuda.is_available(), 'gpu_check: error: the venv sees no GPU'"
}

pip_in_venv() {
    if [ -x "$VENV/bin/pip" ]; then "$VPY" -m pip "$@"; else "$PYTHON" -m pip --python "$VPY" "$@"; fi
}

step_install() {
    # shellcheck disable=SC2086  # PIP_OFFLINE is a list of words
    pip_in_venv install --quiet $PIP_OFFLINE -r "$HERE/gpu_bundle.txt" || return
    pip_in_venv install --quiet --no-index --no-deps --no-build-isolation --ignore-requires-python "$REPO"
}

step_build_mmcv() {
    local arch
    arch=$(cat "$WORK/arch_list") || return
    "$VPY" "$CHECK" --report "$REPORT" build --arch-list "$arch" --max-jobs "$JOBS" || return
    if "$VPY" -c "import mmcv.ops, sys; sys.exit(mmcv.ops.get_compiling_cuda_version() == 'not available')" \
        2>/dev/null; then
        echo "mmcv with CUDA operators is already in $VENV: not rebuilt"
        echo reused > "$WORK/build_status"
        return
    fi
    "$VPY" "$CHECK" --report "$REPORT" built-against --work "$WORK" || return
    # Built in a source tree under WORK, not in pip's temporary folder: a run cut short keeps its
    # compiled objects, and a rerun on the same machine compiles only what is missing (ninja).
    [ -d "$MMCV_SRC" ] || tar -xzf "$BUNDLE/sdist/$MMCV_SDIST" -C "$WORK" || return
    echo "building mmcv: TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$JOBS (log: $OUTDIR/build_mmcv.log)"
    # shellcheck disable=SC2086
    if ! FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$JOBS \
        pip_in_venv install $PIP_OFFLINE --no-build-isolation "$MMCV_SRC" >> "$OUTDIR/build_mmcv.log" 2>&1; then
        tail -n 30 "$OUTDIR/build_mmcv.log"
        echo "gpu_check: error: mmcv's build failed (the end of build_mmcv.log is above)"
        return 1
    fi
}

# The later steps get their limit in STEP_SECONDS, and give their own children a little less, so that
# they record what a child did before the step itself is stopped.
step_provenance() { "$VPY" "$CHECK" --report "$REPORT" provenance --base-python "$PYTHON" --work "$WORK"; }
step_doctor() { "$VPY" "$CHECK" --report "$REPORT" doctor --timeout $(((STEP_SECONDS - 10) / 2)); }
step_mmap_reader() { "$VPY" "$CHECK" --report "$REPORT" mmap-reader; }
step_ops() { "$VPY" "$CHECK" --report "$REPORT" ops; }
step_eqlv2_loss() { "$VPY" "$CHECK" --report "$REPORT" eqlv2-loss; }
step_nccl() { "$VPY" "$CHECK" --report "$REPORT" nccl; }
step_workflow() {
    "$VPY" "$CHECK" --report "$REPORT" workflow --repo "$REPO" --work "$WORK" --timeout $((STEP_SECONDS - 30))
}
step_lvis_timing() { "$VPY" "$CHECK" --report "$REPORT" lvis-timing --work "$WORK"; }

# A step runs in a shell of its own under `timeout` (which stops the step's whole process group).
export PYTHON CHECK REPORT BUNDLE WORK VENV VPY MMCV_SRC MMCV_SDIST OUTDIR JOBS HERE REPO PIP_OFFLINE
export -f pip_in_venv "${STEPS[@]/#/step_}"

if [ "$DRY_RUN" = 1 ]; then
    echo "gpu_check.sh --dry-run: nothing is built or run"
    echo "report: $REPORT (and build_mmcv.log, steps.log beside it), rewritten after every step"
    echo "budget: $BUDGET s for the call; a step that would get under $MIN_STEP_SECONDS s is skipped"
    echo "carry: $BUNDLE (made by benchmarks/gpu_bundle.sh; name benchmarks/bundle in the device tool's carry)"
    echo "  sdist/$MMCV_SDIST"
    grep -v '^\s*#' "$HERE/gpu_bundle.txt" | sed -e 's/\s*#.*//' -e '/^\s*$/d' -e 's/^/  wheels: /'
    if [ -d "$BUNDLE" ]; then
        size=$(du -sm "$BUNDLE" | cut -f1)
        verdict="within the $CARRY_LIMIT_MIB MiB the device tool carries"
        [ "$size" -lt "$CARRY_LIMIT_MIB" ] || verdict="OVER the $CARRY_LIMIT_MIB MiB the device tool carries"
        echo "bundle size: $size MiB, $verdict"
    else
        echo "bundle size: no bundle at $BUNDLE yet (benchmarks/gpu_bundle.sh makes it)"
    fi
    echo "steps:"
    for step in "${SELECTED[@]}"; do echo "  $step: (at most ${LIMIT[$step]} s) ${PLAN[$step]}"; done
    echo "layout:"
    "$PYTHON" "$CHECK" layout
    exit 0
fi

mkdir -p "$OUTDIR" "$WORK" || exit 1
if [ ${#SELECTED[@]} -eq ${#STEPS[@]} ]; then  # a whole run starts a new report and log
    "$PYTHON" "$CHECK" layout > "$REPORT" || exit 1
    : > "$LOG"
    rm -f "$OUTDIR/build_mmcv.log"
fi
export PATH="$VENV/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1

deadline=$((SECONDS + BUDGET))
failed=0
for step in "${SELECTED[@]}"; do
    left=$((deadline - SECONDS))
    limit=${LIMIT[$step]}
    [ "$left" -ge "$limit" ] || limit=$left
    if [ "$failed" = fatal ] || [ "$limit" -lt "$MIN_STEP_SECONDS" ]; then
        why="an earlier step it needs failed"
        if [ "$failed" != fatal ]; then
            why="the call's budget of $BUDGET s was spent ($left s left)"
            failed=1  # not run is not passed
        fi
        echo "== $step: skipped: $why" | tee -a "$LOG"
        "$PYTHON" "$CHECK" --report "$REPORT" record "$step" --status skipped --seconds 0 --error "$why"
        continue
    fi
    echo "== $step (at most $limit s): ${PLAN[$step]}" | tee -a "$LOG"
    rm -f "$WORK/build_status"
    start=$EPOCHREALTIME
    step_output="$WORK/$step.out"
    STEP_SECONDS=$limit timeout --kill-after=10 "$limit" bash -c "step_$step" 2>&1 | tee "$step_output" \
        | tee -a "$LOG"
    status=${PIPESTATUS[0]}
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if [ "$status" -eq 0 ]; then
        result=$(cat "$WORK/build_status" 2>/dev/null || echo ok)
        "$PYTHON" "$CHECK" --report "$REPORT" record "$step" --status "$result" --seconds "$seconds"
    else
        if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
            error="stopped at its time limit of $limit s"
        else
            error=$(grep -hi "error" "$step_output" | tail -n 1)
        fi
        "$PYTHON" "$CHECK" --report "$REPORT" record "$step" --status failed --seconds "$seconds" \
            --error "${error:-exit status $status, see steps.log}"
        if [[ $FATAL == *" $step "* ]]; then failed=fatal; else failed=1; fi
    fi
done
echo "report: $REPORT"
[ "$failed" = 0 ]
