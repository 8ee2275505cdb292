"""bench/scaling.py runs the data-parallel step at 1 and 2 (virtual)
devices and prints its table, or the one-line reason where data_parallel
cannot run (PyTorch)."""

import os
import subprocess
import sys

from conftest import BACKEND, REPO_ROOT


def test_scaling_prints_a_row_per_device_count():
    result = subprocess.run(
        [sys.executable, "bench/scaling.py", f"--backends={BACKEND}", "--devices=1,2",
         "--steps=1", "--batch_size=8", "--width=4", "--representations=pixels"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {BACKEND} |")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "2"]
    if BACKEND == "torch":  # refused in one line, never a silent single-device run
        assert "failed" in rows[1] and "KERAS_BACKEND=jax" in rows[1]
    else:
        for row in rows:
            assert float(row.split("|")[3]) > 0, row
        assert "virtual CPU devices" in result.stdout
