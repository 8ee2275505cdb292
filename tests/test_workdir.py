"""mvmr_keras.workdir: atomic NaN-safe checkpoints and the workdir lock, on
a small Dense model (the callback is method-agnostic), with failures
injected at every instant of an epoch's save."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from mvmr_keras import workdir as workdir_lib

FAULT_POINTS = ("staging_created", "weights_saved", "part_saved", "staging_complete",
                "renamed", "pointer_moved", "history_published", "tensorboard_written")


class _Killed(Exception):
    """Stands for a SIGKILL at one instant of a save."""


class _CounterPart(workdir_lib.CheckpointPart):
    """An extra state file, like the online probe."""

    def __init__(self):
        self.value = 0

    def save(self, directory):
        with open(os.path.join(directory, "counter.json"), "w") as f:
            json.dump(self.value, f)

    def restore(self, directory):
        with open(os.path.join(directory, "counter.json")) as f:
            self.value = json.load(f)


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self, part):
        super().__init__()
        self.part = part

    def on_epoch_end(self, epoch, logs=None):
        self.part.value = epoch + 1


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


_X = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
_Y = np.random.default_rng(1).normal(size=(32, 2)).astype("float32")


def _fit(workdir, epochs, extra=(), model=None):
    model = model or _model()
    part = _CounterPart()
    checkpoint = workdir_lib.EpochCheckpoint(str(workdir), parts=[part], log=_MESSAGES.append)
    model.fit(_X, _Y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[_CountEpochs(part), checkpoint, *extra])
    return model, checkpoint, part


_MESSAGES = []


def _tensorboard_steps(workdir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    train_dir = os.path.join(workdir, "tensorboard", "train")
    for name in sorted(os.listdir(train_dir)):
        for event in EventFileLoader(os.path.join(train_dir, name)).Load():
            for value in event.summary.value:
                if value.tag == "epoch_loss":
                    steps.append(event.step)
    return steps


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_kill_at_any_instant_of_a_save_leaves_one_complete_epoch(tmp_path, monkeypatch, point):
    reference, _, _ = _fit(tmp_path / "reference", 3)

    seen = []

    def kill_during_epoch_2(name):  # each point is passed once per epoch's save
        seen.append(name)
        if name == point and seen.count(name) == 2:
            raise _Killed(name)

    monkeypatch.setattr(workdir_lib, "fault_point", kill_during_epoch_2)
    with pytest.raises(_Killed):
        _fit(tmp_path / "run", 3)
    monkeypatch.undo()
    # The kill left epoch 1 or epoch 2 complete; the rerun goes on from it.
    epochs_run = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    model, checkpoint, part = _fit(tmp_path / "run", 3, extra=[record])
    committed_before = {"staging_created": 1, "weights_saved": 1, "part_saved": 1,
                        "staging_complete": 1}.get(point, 2)
    assert epochs_run == list(range(committed_before, 3))
    history = json.load(open(tmp_path / "run" / "history.json"))
    assert len(history["loss"]) == 3 and None not in history["loss"]
    assert checkpoint.history == history and part.value == 3
    assert _tensorboard_steps(str(tmp_path / "run")) == [0, 1, 2]  # each step once
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "epoch-00002", "epoch-00003", "latest"]
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class _PoisonAtEpoch(keras.callbacks.Callback):
    """Makes one weight NaN at the last step of an epoch (the logged loss
    of that epoch stays finite)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self._current = None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == self.params["steps"] - 1:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_non_finite_weights_are_never_saved(tmp_path):
    model, checkpoint, _ = _fit(tmp_path / "nan", 3, extra=[_PoisonAtEpoch(1)])
    # Epoch 2's last step makes a weight NaN after its loss was logged: the
    # check of the weights, before any write, keeps epoch 2 off the disk.
    assert checkpoint.completed == 1 and "non-finite" in checkpoint.refused
    assert sorted(os.listdir(tmp_path / "nan" / "checkpoints")) == ["epoch-00001", "latest"]
    assert workdir_lib._h5_problem(
        str(tmp_path / "nan" / "checkpoints" / "epoch-00001" / "model.weights.h5")) is None
    history = json.load(open(tmp_path / "nan" / "history.json"))
    assert len(history["loss"]) == 1


def test_a_corrupt_or_non_finite_checkpoint_falls_back_to_the_one_before(tmp_path):
    _fit(tmp_path, 2)
    newest = tmp_path / "checkpoints" / "epoch-00002" / "model.weights.h5"
    open(newest, "wb").close()  # a 0-byte file, as a kill during h5 writing leaves
    _MESSAGES.clear()
    epochs_run = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    _fit(tmp_path, 2, extra=[record])
    assert epochs_run == [1]
    assert any("epoch-00002 is unusable: unreadable weights" in m and "falling back" in m
               for m in _MESSAGES), _MESSAGES
    # A checkpoint holding NaN is skipped the same way.
    import h5py

    with h5py.File(newest, "r+") as f:
        name = []
        f.visititems(lambda n, o: name.append(n) if isinstance(o, h5py.Dataset)
                     and o.dtype.kind == "f" else None)
        f[name[0]][...] = np.nan
    _MESSAGES.clear()
    assert workdir_lib.EpochCheckpoint(str(tmp_path), log=_MESSAGES.append).completed_on_disk() == 1


def test_history_is_strict_json_with_null_for_nan(tmp_path):
    path = str(tmp_path / "h.json")
    workdir_lib.write_json(path, {"loss": [1.0, float("nan"), float("inf")]})
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": [1.0, None, None]}


def test_the_lock_refuses_a_live_owner_and_takes_over_a_dead_ones(tmp_path):
    messages = []
    with workdir_lib.WorkdirLock(str(tmp_path), log=messages.append):
        owner = json.load(open(tmp_path / ".lock"))
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(workdir_lib.WorkdirError, match="in use by another run"):
            workdir_lib.WorkdirLock(str(tmp_path)).acquire()
    assert not os.path.exists(tmp_path / ".lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(tmp_path / ".lock", "w") as f:
        json.dump({"pid": dead.pid, "host": socket.gethostname()}, f)
    with workdir_lib.WorkdirLock(str(tmp_path), log=messages.append):
        assert json.load(open(tmp_path / ".lock"))["pid"] == os.getpid()
    assert any("stale lock" in m and str(dead.pid) in m for m in messages), messages
    with open(tmp_path / ".lock", "w") as f:
        json.dump({"pid": 1, "host": "another-host"}, f)
    with pytest.raises(workdir_lib.WorkdirError, match="pid 1 on host another-host"):
        workdir_lib.WorkdirLock(str(tmp_path)).acquire()


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(workdir_lib.WorkdirError, match="is a file, not a directory"):
        workdir_lib.WorkdirLock(str(tmp_path / "file")).acquire()


_SAVE_ON_TORCH = """
import sys
import keras
import numpy as np

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
model.train_on_batch(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"))
model.save(sys.argv[1])
"""


def test_a_probe_saved_on_torch_trains_on_any_backend(tmp_path):
    script = tmp_path / "save.py"
    script.write_text(_SAVE_ON_TORCH)
    subprocess.run([sys.executable, str(script), str(tmp_path / "online_probe.keras")],
                   check=True, capture_output=True, env=dict(os.environ, KERAS_BACKEND="torch"))

    class Probe:  # stands for callbacks.OnlineLinearProbe
        prefix = "probe"
        probe = None

    callback = Probe()
    workdir_lib.ProbePart(callback).restore(str(tmp_path))
    optimizer = callback.probe.optimizer
    assert type(optimizer).__module__.split(".")[:3] != ["keras", "src", "backend"] or (
        keras.backend.backend() in type(optimizer).__module__)
    moments = [np.array(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]
    assert int(moments[0]) == 1 and np.abs(moments[2]).max() > 0  # the step and m, carried over
    callback.probe.train_on_batch(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"))
    assert int(keras.ops.convert_to_numpy(callback.probe.optimizer.iterations)) == 2
