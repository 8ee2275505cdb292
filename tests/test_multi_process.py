"""Training as a job of several processes (hosts): `train.py
--coordinator_address --num_processes --process_id`.

On JAX, 2 steps of `train.py` as a 2-process job on localhost (one CPU
device each, Gloo collectives) log the losses of 1 process on 1 device with
the same global batch; only process 0 writes the workdir. On TensorFlow
(Keras 3 does not run MultiWorkerMirroredStrategy) and PyTorch, a job of
several processes is refused in one line.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT
from mvmr_keras import distribution, training
from tiny_training_config import tiny_config

CONFIG = """
from tiny_training_config import tiny_config


def get_config():
    config = tiny_config(distribution="data_parallel", epochs=1, steps_per_epoch=2)
    config.evaluation.online_probe = False
    config.evaluation.knn_every_n_epochs = 0
    config.evaluation.after_training = ""
    return config
"""


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_train_py(config_path, workdir, *args):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO_ROOT, os.path.join(REPO_ROOT, "tests")]),
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.Popen(
        [sys.executable, "train.py", f"--config={config_path}", f"--workdir={workdir}", *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=900):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, err[-4000:]
    return out, err


@pytest.mark.skipif(BACKEND != "jax", reason="several processes run on JAX only; "
                    "the other backends' refusal is test_other_backends_refuse_several_processes")
def test_two_process_job_logs_the_one_process_losses(tmp_path):
    config_path = tmp_path / "config.py"
    config_path.write_text(CONFIG)
    job, alone = tmp_path / "job", tmp_path / "alone"
    address = f"localhost:{free_port()}"
    processes = [start_train_py(config_path, job, f"--coordinator_address={address}",
                                "--num_processes=2", f"--process_id={i}") for i in (0, 1)]
    outputs = [finish(p) for p in processes]
    finish(start_train_py(config_path, alone, "--config.distribution="))

    job_history = json.loads((job / "history.json").read_text())
    alone_history = json.loads((alone / "history.json").read_text())
    assert sorted(job_history) == ["dcor_pixels", "dcor_zz", "loss", "mse", "std"]
    for name, values in alone_history.items():
        np.testing.assert_allclose(job_history[name], values, rtol=1e-5, err_msg=name)
    # Process 0 wrote the results; process 1 printed and wrote nothing of
    # its own (no second lock, no files beside the job's).
    results = json.loads((job / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["linear_probe_top1"] <= 1
    assert "Outputs in" in outputs[0][0] and "Outputs in" not in outputs[1][0]
    assert sorted(os.listdir(job)) == sorted(os.listdir(alone))
    encoder = keras.saving.load_model(str(job / "encoder.keras"))
    assert encoder.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).shape[0] == 2


@pytest.mark.skipif(BACKEND == "jax", reason="JAX runs several processes")
def test_other_backends_refuse_several_processes(monkeypatch):
    with pytest.raises(distribution.DistributionError, match="use KERAS_BACKEND=jax"):
        distribution.initialize_processes("localhost:1234", 2, 0)
    if BACKEND == "tensorflow":  # a multi-worker TF_CONFIG alone is refused too
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": {"worker": ["localhost:1", "localhost:2"]},
             "task": {"type": "worker", "index": 0}}))
        with pytest.raises(distribution.DistributionError, match="keras-team/keras#20585"):
            distribution.initialize_processes()


def test_one_process_needs_nothing_and_bad_job_arguments_are_one_line(monkeypatch):
    assert distribution.initialize_processes() == 1
    assert distribution.process_count() == 1 and distribution.is_chief()
    if BACKEND == "jax":
        with pytest.raises(distribution.DistributionError, match="coordinator's HOST:PORT"):
            distribution.initialize_processes(None, 2, 0)
        monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
        monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "5")
        with pytest.raises(distribution.DistributionError, match=r"id in \[0, 2\)"):
            distribution.initialize_processes("localhost:1234")


def test_several_processes_need_data_parallel(monkeypatch):
    monkeypatch.setattr(distribution, "process_count", lambda: 2)
    with pytest.raises(training.ConfigError, match="set --config.distribution=data_parallel"):
        training.validate_config(tiny_config())


def test_train_py_bad_job_arguments_are_one_line(tmp_path):
    process = start_train_py("configs/digits.py", tmp_path / "w", "--num_processes=2",
                             "--process_id=0")
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0 and "Traceback" not in err
    expected = ("coordinator's HOST:PORT" if BACKEND == "jax"
                else "several processes are not available")
    assert expected in err.strip().splitlines()[-1]
