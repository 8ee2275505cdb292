"""The trainer under `distribution = "data_parallel"` on 2 virtual CPU
devices: a run of tests/tiny_training_config.py, interrupted after its
first epoch, resumes and finishes (the same `training.train` train.py
calls, in a child process: virtual devices exist only if made first)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BACKEND, REPO_ROOT

CHILD = """
import os, sys
import keras
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tiny_training_config import tiny_config
from mvmr_keras import training

class StopAtSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt

config = tiny_config(distribution="data_parallel", num_devices=2)
config.evaluation.after_training = ""
config.evaluation.knn_every_n_epochs = 0
try:
    training.train(config, sys.argv[1], verbose=0, log=print, callbacks=[StopAtSecondEpoch()])
    raise SystemExit("not interrupted")
except training.TrainingInterrupted as e:
    print("INTERRUPTED", e)
training.train(config, sys.argv[1], verbose=0, log=print)
"""


def test_a_data_parallel_run_is_interrupted_and_resumes(tmp_path):
    if BACKEND == "torch":  # refused before anything runs
        from mvmr_keras import training
        from tiny_training_config import tiny_config

        with pytest.raises(training.ConfigError, match="not available on the torch backend"):
            training.train(tiny_config(distribution="data_parallel"), str(tmp_path))
        assert not os.path.exists(tmp_path / "config.json")
        return
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=f"{REPO_ROOT}:{REPO_ROOT}/tests",
               XLA_FLAGS="--xla_force_host_platform_device_count=2", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "rerun the same command to resume from epoch 2" in result.stdout
    assert "Resuming from" in result.stdout and "1 of 2 epochs already completed" in result.stdout
    history = json.load(open(tmp_path / "history.json"))
    assert len(history["loss"]) == 2
    # The logged loss is the sum of its terms (not N times it).
    for epoch in range(2):
        terms = (history["mse"][epoch] + history["std"][epoch] + 2
                 - history["dcor_zz"][epoch] - history["dcor_pixels"][epoch])
        assert history["loss"][epoch] == pytest.approx(terms, rel=1e-5)
    results = json.load(open(tmp_path / "results.json"))
    assert results["epochs"] == 2 and os.path.exists(tmp_path / "encoder.keras")
