"""Every Python block of the README runs as written, on every backend.

Each ```python block runs in a fresh interpreter, in an empty folder, on
this test's backend. Its first line may say what it needs, visibly to the
reader too:

    # needs internet              not run here (a download)
    # reads PATH, ...             PATH is a file an earlier command writes;
                                  the test puts a tiny stand-in there first
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import BACKEND, REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")
NEEDS_INTERNET = "# needs internet"
READS = re.compile(r"^# reads (\S+)")


def python_blocks():
    """The README's ```python blocks, in order."""
    with open(README) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def _offline_blocks():
    return [b for b in python_blocks() if not b.startswith(NEEDS_INTERNET)]


def test_the_readme_has_runnable_python_blocks():
    blocks = python_blocks()
    assert len(_offline_blocks()) >= 2
    # A download is marked, so the marker is what keeps a block out.
    for block in blocks:
        if "from_preset(" in block:
            assert block.startswith(NEEDS_INTERNET), block


def _write_tiny_encoder(path):
    """A small ImageEncoder where a block expects a trained one."""
    from mvmr_keras import ImageEncoder, ResNetBackbone

    backbone = ResNetBackbone.from_name("resnet18", width=4, stackwise_num_blocks=(1, 1, 1, 1),
                                        image_shape=(32, 32, 3))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ImageEncoder(backbone).save(path)


@pytest.mark.parametrize("index", range(len(_offline_blocks())))
def test_readme_python_block_runs(index, tmp_path):
    block = _offline_blocks()[index]
    match = READS.match(block)
    if match:
        for path in match.group(1).rstrip(",").split(","):
            assert path.endswith("encoder.keras"), f"no stand-in for {path}"
            _write_tiny_encoder(str(tmp_path / path))
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"README block {index} failed:\n{block}\n{result.stderr[-3000:]}"
