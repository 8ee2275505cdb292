"""Models and losses must import where only JAX or PyTorch is installed."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_library_imports_without_tensorflow():
    code = (
        "import sys, mvmr_keras, mvmr_keras.models, mvmr_keras.losses, "
        "mvmr_keras.representations, mvmr_keras.data\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    env = {"KERAS_BACKEND": "jax", "PYTHONPATH": REPO_ROOT, "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
