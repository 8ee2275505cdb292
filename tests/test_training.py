"""The trainer end to end on the bundled digits, and train.py's contract."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import PIL.Image
import pytest

from conftest import BACKEND, REPO_ROOT
from tiny_training_config import tiny_config
from mvmr_keras import data, evaluation, plots, representations, training
from mvmr_keras.evaluation import baselines


def _quiet(*args):
    pass


def test_train_writes_the_workdir(tmp_path):
    workdir = str(tmp_path)
    results = training.train(tiny_config(), workdir, verbose=0, log=_quiet)
    for name in ("config.json", "history.json", "results.json", "model.keras", "encoder.keras"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    train, test = data.load_digits("train"), data.load_digits("test")
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert set(history) == {"loss", "mse", "std", "dcor_zz", "dcor_pixels",
                            "probe_top1", "probe_top5", "knn_top1", "knn_top5"}
    assert all(len(v) == 2 for v in history.values())
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["linear_probe_top1"] == results["linear_probe_top1"]
    assert 0 <= saved["random_init_top1"] <= 1 and saved["backend"] == BACKEND
    assert history["knn_top1"][0] is None  # every 5 epochs, and the last
    assert 0 <= history["knn_top1"][1] <= 1 and 0 <= history["probe_top1"][1] <= 1
    linear = json.load(open(os.path.join(workdir, "results_linear.json")))
    assert saved["evaluation_linear"]["top1"] == linear["top1"]
    # Beside every score, the raw pixels' (digits: 0.95 linear, 0.97 kNN
    # at 32 px) and the untrained encoder's, under the same protocols.
    expected_pixels = baselines.pixel_scores(train, test, 32)
    for key in ("linear_probe_top1", "knn_top1"):
        assert saved[f"pixels_{key}"] == pytest.approx(expected_pixels[key])
        assert 0 <= saved[f"random_init_{key}"] <= 1 and 0 <= saved[key] <= 1
    assert saved["pixels_knn_top1"] > 0.9
    assert saved["random_init_top1"] == saved["random_init_linear_probe_top1"]
    assert 0.85 < saved["evaluation_linear"]["baselines"]["pixels"]["top1"] <= 1
    with PIL.Image.open(os.path.join(workdir, "curves.png")) as image:
        assert image.format == "PNG" and image.size == plots.CURVES_SIZE

    # encoder.keras: [0, 255] images -> (B, D) features; the saved probe
    # is reproduced from the file by an independent recomputation.
    encoder = keras.saving.load_model(os.path.join(workdir, "encoder.keras"))
    assert tuple(encoder.predict(test[0][:3], verbose=0).shape) == (3, 32)
    recomputed = evaluation.encoder_linear_probe_top1(encoder, train, test)
    assert abs(recomputed - saved["linear_probe_top1"]) < 0.01
    assert keras.config.dtype_policy().name == "float32"  # policy restored


class _InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_from_last_completed_epoch(tmp_path):
    workdir = str(tmp_path)
    config = tiny_config(epochs=3)
    with pytest.raises(KeyboardInterrupt, match="rerun the same command to resume from epoch 3"):
        training.train(config, workdir, verbose=0, log=_quiet, callbacks=[_InterruptAtEpoch(2)])
    assert not os.path.exists(os.path.join(workdir, "results.json"))

    def probe_steps():
        latest = open(os.path.join(workdir, "checkpoints", "latest")).read().strip()
        probe_path = os.path.join(workdir, "checkpoints", latest, "online_probe.keras")
        return int(keras.ops.convert_to_numpy(
            keras.saving.load_model(probe_path).optimizer.iterations))

    assert probe_steps() == 2 * 2  # one probe step per training step
    messages, epochs_run = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

    training.train(config, workdir, verbose=0, log=messages.append, callbacks=[Record()])
    assert epochs_run == [2]
    assert any("Resuming" in m and "2 of 3 epochs" in m for m in messages), messages
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert len(history["loss"]) == 3 and None not in history["loss"]
    assert probe_steps() == 3 * 2  # the probe went on from where it stopped


def test_workdir_with_another_config_is_refused(tmp_path):
    training.train(tiny_config(epochs=1), str(tmp_path), verbose=0, log=_quiet)
    with pytest.raises(training.ConfigError, match="different config.*learning_rate"):
        training.train(tiny_config(epochs=1, learning_rate=0.5), str(tmp_path), verbose=0, log=_quiet)


def test_a_run_saved_before_fields_were_added_resumes_when_they_are_neutral(tmp_path):
    # config.json of a run started before gradient accumulation, lr scaling
    # and the evaluation caps existed.
    saved = tiny_config().to_dict()
    for field in ("gradient_accumulation_steps", "lr_scaling", "base_batch_size"):
        del saved[field]
    del saved["evaluation"]["max_probe_images"], saved["evaluation"]["knn_bank_size"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    training._check_workdir(tiny_config(), str(tmp_path))  # the same run: no error
    with pytest.raises(training.ConfigError, match="different config .fields "
                       "gradient_accumulation_steps"):
        training._check_workdir(tiny_config(gradient_accumulation_steps=2), str(tmp_path))
    changed = tiny_config()
    changed.evaluation.max_probe_images = 100
    with pytest.raises(training.ConfigError, match=r"fields evaluation\)"):
        training._check_workdir(changed, str(tmp_path))


@representations.register("nan_for_test")
class _NaNRepresentation(representations.Representation):
    def call(self, images):
        return images * float("nan")


def test_nan_term_stops_training_and_is_named(tmp_path):
    config = tiny_config(representations="pixels,nan_for_test")
    with pytest.raises(training.TrainingDiverged, match="loss term 'dcor_nan_for_test' became NaN/inf at epoch 1, step 1"):
        training.train(config, str(tmp_path), verbose=0, log=_quiet)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"batch_size": 1}, "batch_size must be >= 2"),
        ({"backbone": "vgg16"}, "unknown backbone 'vgg16'"),
        ({"representations": "pixels,sift"}, "Unknown representation 'sift'"),
        ({"representation_objective": "max"}, "unknown representation_objective"),
        ({"mixed_precision": "float16"}, "unknown mixed_precision"),
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"crop_scale": (0.5,)}, "crop_scale must be a pair"),
        ({"epochs": 0}, "epochs must be >= 1"),
    ],
)
def test_bad_configs_are_rejected_with_a_reason(overrides, match):
    with pytest.raises(training.ConfigError, match=match):
        training.validate_config(tiny_config(**overrides))


def test_learning_rate_schedule_warms_up_then_decays():
    config = tiny_config(epochs=10, warmup_epochs=2, learning_rate=1e-3, final_learning_rate=1e-5)
    schedule = training.learning_rate_schedule(config, steps_per_epoch=10)
    lr = [float(keras.ops.convert_to_numpy(schedule(s))) for s in (0, 10, 20, 60, 100)]
    assert lr[0] == 0.0 and np.isclose(lr[1], 5e-4) and np.isclose(lr[2], 1e-3)
    assert lr[2] > lr[3] > lr[4] and np.isclose(lr[4], 1e-5, rtol=1e-3)


def _run_train_py(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_train_py_smoke_command_of_the_issue(tmp_path):
    # The contract: this exact command exits 0 and leaves a loadable encoder.
    result = _run_train_py(
        "--config=configs/digits.py", f"--workdir={tmp_path}",
        "--config.epochs=1", "--config.steps_per_epoch=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    encoder = keras.saving.load_model(str(tmp_path / "encoder.keras"))
    assert encoder.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).shape[0] == 2


@pytest.mark.one_backend_per_case  # config validation happens before any backend code
@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.nosuch=1"], "error: unknown config field 'nosuch'"),
        (["--config=configs/digits.py", "--config.nosuch=1"], "error: unknown config field 'nosuch'"),
        (["--config.epochs=abc"], "error: flag --config.epochs=abc"),
        (["--config=configs/missing.py"], "error: [Errno 2] No such file or directory: 'configs/missing.py'"),
        (["--config.batch_size=1"], "error: batch_size must be >= 2"),
        (["--config.backbone=vgg16"], "error: unknown backbone 'vgg16'"),
        (["--config.representations=pixels,sift"], "error: Unknown representation 'sift'"),
        (["--config=configs/stl10.py", "--config.data_dir=/nonexistent"],
         "error: Dataset 'stl10' is not prepared in /nonexistent. On a machine with internet run `tfds build stl10"),
    ],
)
def test_train_py_bad_input_is_one_clear_line(tmp_path, args, message):
    result = _run_train_py(f"--workdir={tmp_path / 'w'}", *args, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(message), result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "w" / "config.json")


def test_train_py_requires_a_workdir():
    result = _run_train_py("--config=configs/digits.py", timeout=300)
    assert result.returncode != 0 and "--workdir" in result.stderr.strip().splitlines()[-1]
