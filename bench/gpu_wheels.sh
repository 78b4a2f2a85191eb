#!/usr/bin/env bash
# Downloads the wheels that bench/gpu_train.py needs on the GPU machine (the `device` tool's
# nvidia-h200: CPython 3.12, x86_64, JAX 0.11 with CUDA 13, NumPy, h5py, ml-dtypes, rich,
# absl-py, packaging and typing-extensions installed; no Keras, no pydantic, no optree, and
# no package registry), into bench/wheels/, and prints their total size (budget: 40 MiB).
#
#   bash bench/gpu_wheels.sh            # here, where PyPI is reachable
#
# The folder ignores itself (bench/wheels/.gitignore is `*`), so it never gets committed and
# must be named in the device call's `carry`; the one device command is in the docstring of
# bench/gpu_train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=bench/wheels
PY="${PYTHON:-python3}"

# Keras 3 and the two of its requirements that the machine lacks (absl-py, h5py, ml-dtypes,
# numpy, packaging and rich are there). optree is compiled: cp312 manylinux wheel.
KERAS_WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)
# model.config validates architectures with pydantic, and model/resnet.py imports it. Needed
# only until model/ imports keras alone (issue 10, item 2); then drop this group.
MODEL_WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 typing-extensions==4.16.0)

rm -rf "$DEST"
mkdir -p "$DEST"
printf '*\n' >"$DEST/.gitignore"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  -d "$DEST" "${KERAS_WHEELS[@]}" "${MODEL_WHEELS[@]}"

count=$(find "$DEST" -name '*.whl' | wc -l)
expected=$((${#KERAS_WHEELS[@]} + ${#MODEL_WHEELS[@]}))
if [ "$count" -ne "$expected" ]; then
  echo "expected $expected wheels in $DEST, found $count" >&2
  exit 1
fi
(cd "$DEST" && ls -l -- *.whl | awk '{printf "%9d  %s\n", $5, $9}')
total=$(find "$DEST" -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')
awk -v t="$total" 'BEGIN {printf "total: %d bytes = %.2f MiB (budget 40 MiB)\n", t, t / 1048576}'
if [ "$total" -gt $((40 * 1048576)) ]; then
  echo "over the 40 MiB budget" >&2
  exit 1
fi
