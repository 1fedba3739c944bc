#!/usr/bin/env bash
# Fill benchmarks/bundle/ (ignored by git) with what benchmarks/gpu_check.sh needs on a GPU machine that
# has no network: mmcv 2.1.0's source tarball (sdist/) and the wheels named in benchmarks/gpu_bundle.txt
# for CPython 3.12 on manylinux x86_64 (wheels/), about 35 MB.  Run it where PyPI is reachable:
#
#   benchmarks/gpu_bundle.sh [BUNDLE_DIR]      # or: make gpu-bundle
#
# pip reads mmcv's metadata from its setup.py, which imports torch and pkg_resources: PYTHON (default
# .venv/bin/python, the project's set-up) must have both.  The bundle is assembled beside its final place
# and renamed into it, so an interrupted download never leaves a partial bundle behind.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUNDLE=${1:-$HERE/bundle}
PYTHON=${PYTHON:-$HERE/../.venv/bin/python}
if [ ! -x "$PYTHON" ]; then
    echo "gpu_bundle.sh: error: $PYTHON is not there: run make setup, or set PYTHON" >&2
    exit 2
fi
# The manylinux tags pip must accept, oldest glibc last (pip matches each tag exactly).
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux1_x86_64)

PARTIAL=$(mktemp -d "$BUNDLE.partial.XXXXXX")
trap 'rm -rf "$PARTIAL"' EXIT
# Pins marked "built here" have no wheel on PyPI: pure Python, so a wheel built here installs there.
grep -v 'built here' "$HERE/gpu_bundle.txt" > "$PARTIAL/download.txt"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]/#/--platform=}" --dest "$PARTIAL/wheels" -r "$PARTIAL/download.txt"
rm "$PARTIAL/download.txt"
grep 'built here' "$HERE/gpu_bundle.txt" | sed 's/\s*#.*//' | while read -r pin; do
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$PARTIAL/wheels" "$pin"
done
"$PYTHON" -m pip download --quiet --no-deps --no-binary=:all: --no-build-isolation \
    --dest "$PARTIAL/sdist" mmcv==2.1.0
rm -rf "$BUNDLE"
mv "$PARTIAL" "$BUNDLE"
trap - EXIT
echo "gpu_bundle.sh: $(find "$BUNDLE" -type f | wc -l) files, $(du -sh "$BUNDLE" | cut -f1) in $BUNDLE"
