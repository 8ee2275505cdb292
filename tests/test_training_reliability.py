"""The trainer never loses, corrupts or mixes a run (issue 19): NaN epochs
are never saved, a kill inside a save resumes cleanly, one run per
workdir, any image size, and one-line errors for bad input."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import BACKEND, REPO_ROOT
from tiny_training_config import tiny_config
from mvmr_keras import evaluation, serving, training
from mvmr_keras import workdir as workdir_lib


def _quiet(*args):
    pass


def _fast(**overrides):
    config = tiny_config(**overrides)
    config.evaluation.after_training = ""
    config.evaluation.knn_every_n_epochs = 0
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch run with the linear evaluation after training."""
    workdir = str(tmp_path_factory.mktemp("trained"))
    config = tiny_config(epochs=1)
    config.evaluation.knn_every_n_epochs = 0
    results = training.train(config, workdir, verbose=0, log=_quiet)
    return workdir, config, results


# 1. A NaN run never reaches its checkpoint, encoder.keras or the exports.

class _PoisonAtEpoch(keras.callbacks.Callback):
    """Makes every weight NaN at the last step of an epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self._current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == self.params["steps"] - 1:
            for v in self.model.encoder.trainable_variables:
                v.assign(np.full(v.shape, np.nan, "float32"))


def test_a_diverged_epoch_is_never_saved(tmp_path):
    workdir = str(tmp_path)
    with pytest.raises(training.TrainingDiverged, match="nothing of it saved.*epoch 1 kept"):
        training.train(_fast(epochs=3), workdir, verbose=0, log=_quiet,
                       callbacks=[_PoisonAtEpoch(1)])
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["epoch-00001", "latest"]
    weights = os.path.join(workdir, "checkpoints", "epoch-00001", "model.weights.h5")
    assert workdir_lib._h5_problem(weights) is None  # finite
    assert not os.path.exists(os.path.join(workdir, "encoder.keras"))
    assert len(json.load(open(os.path.join(workdir, "history.json")))["loss"]) == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_learning_rate_is_rejected(value):
    with pytest.raises(training.ConfigError, match="learning_rate must be a finite number"):
        training.validate_config(tiny_config(learning_rate=value))


def _nan_encoder(path):
    from conftest import tiny_model

    encoder = tiny_model().encoder
    for v in encoder.trainable_variables:
        v.assign(np.full(v.shape, np.nan, "float32"))
    encoder.save(path)
    return path


def test_a_nan_encoder_is_refused_by_export_and_evaluation(tmp_path):
    path = _nan_encoder(str(tmp_path / "encoder.keras"))
    with pytest.raises(serving.ExportError, match="non-finite weight arrays"):
        serving._load_keras_model(path, "encoder")
    with pytest.raises(evaluation.EvaluationError, match="features of the train split .* non-finite"):
        evaluation.evaluate("knn", path, tiny_config(), str(tmp_path / "out"), verbose=0,
                            log=_quiet)


# 2. A kill inside an epoch's save leaves the previous or the new epoch whole.

@pytest.mark.one_backend_per_case  # the workdir's rename protocol is the same on each
@pytest.mark.parametrize("point", ["weights_saved", "renamed", "history_published"])
def test_a_kill_inside_a_save_resumes_without_losing_or_repeating_an_epoch(
        tmp_path, monkeypatch, point):
    workdir = str(tmp_path)
    seen = []

    def kill_in_second_save(name):
        seen.append(name)
        if name == point and seen.count(name) == 2:
            raise KeyboardInterrupt  # what SIGINT raises; SIGKILL stops at the same instant

    monkeypatch.setattr(workdir_lib, "fault_point", kill_in_second_save)
    with pytest.raises(training.TrainingInterrupted):
        training.train(_fast(epochs=3), workdir, verbose=0, log=_quiet)
    monkeypatch.undo()
    training.train(_fast(epochs=3), workdir, verbose=0, log=_quiet)
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert len(history["loss"]) == 3 and None not in history["loss"]
    from test_workdir import _tensorboard_steps

    assert _tensorboard_steps(workdir) == [0, 1, 2]
    probe = keras.saving.load_model(
        os.path.join(workdir, "checkpoints", "epoch-00003", "online_probe.keras"))
    assert int(keras.ops.convert_to_numpy(probe.optimizer.iterations)) == 3 * 2


# 3. One run per workdir.

def test_a_workdir_in_use_is_refused(tmp_path):
    with workdir_lib.WorkdirLock(str(tmp_path)):
        with pytest.raises(training.ConfigError, match=f"in use by another run \\(pid {os.getpid()}"):
            training.train(_fast(), str(tmp_path), verbose=0, log=_quiet)
    assert not os.path.exists(tmp_path / "config.json")


# 4. Any image size.

def _folder(root, sizes, splits=("train", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for label in ("a", "b"):
            os.makedirs(root / split / label)
            for i, (h, w) in enumerate(sizes):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return f"folder:{root}"


@pytest.mark.parametrize("sizes", [[(40, 40)] * 8, [(40, 40), (50, 30), (20, 64), (32, 32)] * 2])
def test_folders_of_any_size_load_at_image_size(tmp_path, sizes):
    config = tiny_config(dataset=_folder(tmp_path, sizes))
    images, labels = training.load_split(config, "test")
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == [0, 1]


def test_digits_train_at_another_image_size(tmp_path):
    # ...monitored on 300 of each split (evaluation.max_probe_images).
    config = _fast(epochs=1, image_size=48)
    config.evaluation.max_probe_images = 300
    results = training.train(config, str(tmp_path), verbose=0, log=_quiet)
    encoder = keras.saving.load_model(str(tmp_path / "encoder.keras"))
    assert tuple(encoder.input.shape[1:]) == (48, 48, 3)
    assert 0 <= results["linear_probe_top1"] <= 1
    assert results["probe_images"] == {"train": 300, "test": 300}


# 5. A run that fails during setup leaves the workdir free.

def test_a_failed_start_leaves_no_config_behind(tmp_path):
    with pytest.raises(training.ConfigError, match="representation 'hog' cannot take 30x30"):
        training.train(_fast(image_size=30, representations="pixels,hog"), str(tmp_path),
                       verbose=0, log=_quiet)
    no_test_split = _folder(tmp_path / "data", [(32, 32)] * 2, splits=("train",))
    with pytest.raises(training.ConfigError, match="Unknown split 'test'"):
        training.train(_fast(dataset=no_test_split), str(tmp_path), verbose=0, log=_quiet)
    assert not os.path.exists(tmp_path / "config.json")
    assert not os.path.exists(tmp_path / ".lock")


# 6. One line and a non-zero exit from the commands.

def _run(args, env=None, module=None):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, **(env or {}))
    command = [sys.executable, *(["-m", module] if module else ["train.py"]), *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _assert_one_line(result, message):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr.strip().splitlines()[-1], result.stderr[-2000:]


def test_commands_report_bad_input_in_one_line(tmp_path, trained):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimages" / "a").mkdir(parents=True)
    (tmp_path / "notimages" / "a" / "x.png").write_text("not an image")
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    (tmp_path / "fields.py").write_text(
        "from ml_collections import config_dict\n"
        "def get_config():\n    c = config_dict.ConfigDict()\n    c.epochs = 1\n    return c\n")
    (tmp_path / "afile").write_text("x")
    w = f"--workdir={tmp_path / 'w'}"
    cases = [
        ([w, f"--config.dataset=folder:{tmp_path / 'missing'}"], "does not exist"),
        ([w, f"--config.dataset=folder:{tmp_path / 'empty'}"], "No readable images"),
        ([w, f"--config.dataset=folder:{tmp_path / 'notimages'}"], "No readable images"),
        ([w, f"--config={tmp_path / 'syntax.py'}"], "syntax.py, line 1"),
        ([w, f"--config={tmp_path / 'fields.py'}"], "the config lacks dataset"),
        ([f"--workdir={tmp_path / 'afile'}"], "is a file, not a directory"),
    ]
    for args, message in cases:
        _assert_one_line(_run(args), message)
    _assert_one_line(_run([w], env={"KERAS_BACKEND": "foo"}), "Unable to import backend : foo; KERAS_BACKEND must be")
    workdir = trained[0]
    _assert_one_line(
        _run([f"--encoder={workdir}/model.keras", f"--output={tmp_path / 'export'}"],
             module="export.saved_model"),
        "is not an image encoder")


@contextlib.contextmanager
def _read_only(folder):
    """`folder` made read-only for this process: by its mode for a normal
    user, by the immutable attribute for root (which ignores modes)."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    else:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")
        yield folder
    finally:
        undo()


def test_an_export_to_a_read_only_folder_is_one_line(tmp_path, trained):
    with _read_only(tmp_path / "read_only") as folder:
        result = _run([f"--encoder={trained[0]}/encoder.keras", f"--output={folder}"],
                      module="export.saved_model")
        assert os.listdir(folder) == []
    _assert_one_line(result, f"cannot write the SavedModel to {folder}/1")


def test_ctrl_c_says_how_to_resume(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted,
                       match="^interrupted; rerun the same command to resume from epoch 2$"):
        training.train(_fast(epochs=2), str(tmp_path), verbose=0, log=_quiet,
                       callbacks=[Interrupt()])
    assert not os.path.exists(tmp_path / ".lock")


_SLOW_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from tiny_training_config import tiny_config


def get_config():
    config = tiny_config(epochs=1000)  # still training when the signal comes
    config.evaluation.after_training = ""
    config.evaluation.knn_every_n_epochs = 0
    return config
"""


# The child restores Python's Ctrl-C handler itself: a shell's background job
# (nohup, CI) ignores SIGINT and a child would inherit that. (A preexec_fn
# would do it too, but forks the multithreaded test process unsafely.)
_TRAIN_WITH_DEFAULT_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = ['train.py'] + sys.argv[1:]; runpy.run_path('train.py', run_name='__main__')"
)


@pytest.mark.parametrize("signal_number, exit_code",
                         [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_train_py_stops_it_with_the_epoch_to_resume_from(
        tmp_path, signal_number, exit_code):
    config = tmp_path / "slow.py"
    config.write_text(_SLOW_CONFIG.format(tests=os.path.join(REPO_ROOT, "tests")))
    workdir, log = tmp_path / "w", open(tmp_path / "stderr.txt", "w")
    process = subprocess.Popen(  # stderr to a file: a full pipe would stall the run
        [sys.executable, "-c", _TRAIN_WITH_DEFAULT_SIGINT, f"--config={config}",
         f"--workdir={workdir}"],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 300
        while not os.path.exists(workdir / "checkpoints" / "latest"):  # an epoch saved
            assert process.poll() is None and time.time() < deadline, "training never saved"
            time.sleep(0.2)
        process.send_signal(signal_number)  # SIGINT is what Ctrl-C sends
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 120 s after the signal: "
                        + (tmp_path / "stderr.txt").read_text()[-2000:])
    finally:
        process.kill()
        log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == exit_code, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"interrupted; rerun the same command to resume from epoch (\d+)", last)
    assert found, stderr[-2000:]
    done = workdir_lib.EpochCheckpoint(str(workdir), log=_quiet).completed_on_disk()
    assert int(found.group(1)) == done + 1 >= 2
    assert not os.path.exists(workdir / ".lock")


def test_a_signal_during_fit_stops_at_the_next_step_and_a_second_stops_at_once():
    stopper = training.StopOnSignal()
    # As in a terminal, whatever the runner (a background job ignores SIGINT).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _stop_on_signal_checks(stopper)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, outer)


def _stop_on_signal_checks(stopper):
    with stopper.install():
        assert signal.getsignal(signal.SIGTERM) == stopper._handle
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised
        time.sleep(0.01)  # the handler runs at the next bytecode
        assert stopper.received == signal.SIGTERM
        with pytest.raises(training.TrainingInterrupted) as raised:
            stopper.on_train_batch_end(0)
        assert raised.value.signal_number == signal.SIGTERM
        with pytest.raises(training.TrainingInterrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)


# 7. Smaller defects.

def test_evaluate_never_overwrites_a_training_runs_results_unless_asked(trained):
    workdir, config, _ = trained
    before = open(os.path.join(workdir, "results_linear.json")).read()
    with pytest.raises(evaluation.EvaluationError, match="already exists; pass --overwrite"):
        evaluation.evaluate("linear", os.path.join(workdir, "encoder.keras"), config,
                            verbose=0, log=_quiet)
    assert open(os.path.join(workdir, "results_linear.json")).read() == before


def test_a_truncated_keras_file_is_called_truncated(tmp_path, trained):
    data = open(os.path.join(trained[0], "encoder.keras"), "rb").read()
    path = tmp_path / "encoder.keras"
    path.write_bytes(data[: len(data) // 2])
    # The message, not the path (pytest names tmp_path after this test).
    with pytest.raises(evaluation.EvaluationError, match="is truncated or not a .keras archive"):
        evaluation.load_encoder(str(path))


def test_resuming_a_finished_run_keeps_its_time_backend_and_baseline(trained):
    workdir, config, first = trained
    assert first["train_seconds"] > 0 and first["backend"] == BACKEND
    again = training.train(config, workdir, verbose=0, log=_quiet)
    assert again["train_seconds"] == first["train_seconds"]
    assert again["train_seconds_per_session"] == [first["train_seconds"], 0.0]
    assert again["random_init_top1"] == first["random_init_top1"]
    assert again["backend"] == BACKEND
    assert "NaN" not in open(os.path.join(workdir, "history.json")).read()


_RESUME_HERE = """
import sys
sys.path.insert(0, {tests!r})
from tiny_training_config import tiny_config
from mvmr_keras import training

config = tiny_config(epochs=2)  # as _fast(epochs=2)
config.evaluation.after_training = ""
config.evaluation.knn_every_n_epochs = 0
training.train(config, {workdir!r}, verbose=0, log=lambda *args: None)
"""

# Another backend for the second session (each backend's run picks the next).
_OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]


def test_resuming_on_another_backend_keeps_the_backend_history_and_baseline(tmp_path):
    workdir = str(tmp_path / "w")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted, match="resume from epoch 2"):
        training.train(_fast(epochs=2), workdir, verbose=0, log=_quiet, callbacks=[Interrupt()])
    random_init = json.load(open(os.path.join(workdir, "run.json")))["random_init"]
    script = tmp_path / "resume.py"
    script.write_text(_RESUME_HERE.format(tests=os.path.join(REPO_ROOT, "tests"), workdir=workdir))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, KERAS_BACKEND=_OTHER_BACKEND, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["backend"] == f"{BACKEND}+{_OTHER_BACKEND}"
    assert results["random_init_top1"] == random_init["linear_probe_top1"]
    first, second = results["train_seconds_per_session"]
    assert first > 0 and second > 0
    assert len(json.load(open(os.path.join(workdir, "history.json")))["loss"]) == 2
