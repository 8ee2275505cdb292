"""bench/evaluation_memory.py generates its image folders, runs
evaluate.py under /usr/bin/time per size and prints the peak memory table."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import BACKEND, REPO_ROOT


@pytest.mark.skipif(not os.path.exists("/usr/bin/time"), reason="needs GNU time")
def test_memory_table_has_a_row_per_size(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/evaluation_memory.py", "--sizes=20,40", "--image_size=32",
         f"--root={tmp_path}",
         "--extra=--config.evaluation.epochs=2,--config.evaluation.augmented_passes=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, KERAS_BACKEND=BACKEND))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| 20 |")
            or line.startswith("| 40 |")]
    assert [row[1].strip() for row in rows] == ["20", "40"]
    assert all(float(row[2]) > 100 for row in rows)  # a Python process with Keras: > 100 MB
    assert len(os.listdir(tmp_path / "data_40_32" / "train")) == 10
    # The evaluation's feature files are gone once it ends.
    assert not os.path.exists(tmp_path / "eval_40" / "features")
    shutil.rmtree(tmp_path)
