#!/usr/bin/env bash
# Runs the test suite once per Keras backend; fails if any backend fails.
# Extra arguments go to pytest (e.g. tests/test_losses.py -x).
set -u
cd "$(dirname "$0")/.."
status=0
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=${backend}"
  KERAS_BACKEND="${backend}" python -m pytest "$@" || status=1
done
exit "${status}"
