#!/usr/bin/env bash
# Runs the test suite once per Keras backend; fails if any backend fails.
# Extra arguments go to pytest (e.g. tests/test_losses.py -x).
#
# The three backends run side by side (TEST_JOBS=1 runs them one after
# another): much of a test's time is single-threaded Python and compilation,
# so on CI's 2 cores this takes ~2/3 of the sequential time. Each backend's
# output is kept in a log and printed whole when it ends.
set -u
cd "$(dirname "$0")/.."
backends=(tensorflow jax torch)
if [ "${TEST_JOBS:-3}" = 1 ]; then
  status=0
  for backend in "${backends[@]}"; do
    echo "=== KERAS_BACKEND=${backend}"
    KERAS_BACKEND="${backend}" python -m pytest "$@" || status=1
  done
  exit "${status}"
fi

logs="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "${logs}"' EXIT
declare -A pids
for backend in "${backends[@]}"; do
  # A numba cache of its own per backend: dcor's functions are compiled with
  # cache=True, and processes filling one empty cache at once abort (seen in a
  # fresh CI venv; reproduced here by three concurrent `import dcor`).
  mkdir -p "${logs}/numba-${backend}"
  NUMBA_CACHE_DIR="${logs}/numba-${backend}" KERAS_BACKEND="${backend}" \
    python -m pytest "$@" > "${logs}/${backend}.log" 2>&1 &
  pids[${backend}]=$!
done
status=0
remaining=("${backends[@]}")
started=${SECONDS}
ticks=0
# Print each backend's log as soon as it finishes, in finishing order.
while [ "${#remaining[@]}" -gt 0 ]; do
  still=()
  for backend in "${remaining[@]}"; do
    if kill -0 "${pids[${backend}]}" 2>/dev/null; then
      still+=("${backend}")
      continue
    fi
    wait "${pids[${backend}]}"
    rc=$?
    echo "=== KERAS_BACKEND=${backend} (exit ${rc})"
    cat "${logs}/${backend}.log"
    [ "${rc}" = 0 ] || status=1
  done
  remaining=("${still[@]+"${still[@]}"}")
  if [ "${#remaining[@]}" -gt 0 ]; then
    sleep 5
    ticks=$((ticks + 1))
    # A line every 5 minutes, so a long silent wait is not taken for a hang.
    if [ $((ticks % 60)) = 0 ]; then
      echo "... still running after $(((SECONDS - started) / 60)) min: ${remaining[*]}"
    fi
  fi
done
echo "=== all backends: $([ "${status}" = 0 ] && echo passed || echo FAILED)"
exit "${status}"
