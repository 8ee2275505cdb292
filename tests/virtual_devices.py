"""One step on 1 and on 2 virtual CPU devices, each in a process of its own
(virtual devices must exist before the engine starts): the data-parallel
tests (tests/test_data_parallel.py, tests/test_multicrop_data_parallel.py)
run a step script (tests/*_step.py) with `steps_on_one_and_two_devices`,
and the script calls `split_cpu` before it imports Keras."""

import os
import subprocess
import sys

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS)


def split_cpu(num_devices):
    """TensorFlow: the CPU as `num_devices` logical devices (JAX reads
    `XLA_FLAGS`, set by `run_script`); and the repository and tests/ on the
    import path."""
    if os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    sys.path[:0] = [TESTS, REPO_ROOT]


def run_script(script, backend, num_devices, *args, timeout=900):
    """Runs `tests/<script> num_devices *args` on `num_devices` virtual
    devices; fails with the end of its stderr if it fails."""
    env = dict(
        os.environ, KERAS_BACKEND=backend, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        # Compiling dominates these one-step runs; both sides compile alike.
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
    )
    result = subprocess.run(
        [sys.executable, os.path.join(TESTS, script), str(num_devices), *map(str, args)],
        env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]


def steps_on_one_and_two_devices(script, backend, tmp_path, weights):
    """Runs `tests/<script> N tmp_path/batch.npz weights OUT` on 1 device
    (which writes the initial weights to `weights`), then on 2 (which loads
    them); returns the two OUT files' arrays as dicts."""
    found = []
    for num_devices in (1, 2):
        out = tmp_path / f"step_{num_devices}.npz"
        run_script(script, backend, num_devices, tmp_path / "batch.npz", weights, out)
        found.append(dict(np.load(out)))
    return tuple(found)
