"""A training run's workdir, safe against kills, NaNs and a second run.

Three pieces, none specific to one training method:

- `WorkdirLock`: `W/.lock` holds the owner's pid and host. A second run in
  the same workdir is refused; a lock left by a dead process on this host
  (or an empty one, from a kill while it was written) is taken over with a
  message.
- `write_json` / `atomic_path`: files appear whole or not at all (written
  to a temporary name, then renamed). JSON is strict: a NaN or infinity is
  written as `null`.
- `EpochCheckpoint`: a Keras callback that saves, at each completed epoch,
  a versioned directory `W/checkpoints/epoch-NNNNN/` with the model's
  weights and optimiser state (`model.weights.h5`), the history, any
  extra state its `parts` write (the online probe) and `state.json`
  (written last). The directory is filled under a temporary name and
  renamed once complete; `W/checkpoints/latest` is replaced last. Before
  any of it, the epoch's logged losses and every model and optimiser
  variable are checked: an epoch with a NaN or infinity (or one stopped
  part-way) is never saved. On resume the newest checkpoint that reads
  back whole and finite wins; a corrupt or non-finite one is reported in
  one line and skipped. After the commit it writes `W/history.json` and
  one TensorBoard event file per epoch (named by epoch, so a repeated
  epoch replaces its file instead of adding duplicate steps).

Example:

>>> with WorkdirLock("runs/a"):                                # doctest: +SKIP
...     checkpoint = EpochCheckpoint("runs/a", log=print)
...     model.fit(data, epochs=10, callbacks=[checkpoint])
"""

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import time

import keras
import numpy as np

LOCK_NAME = ".lock"
CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
HISTORY_FILE = "history.json"
FAULT_DELAY_ENV = "MVMR_SAVE_DELAY_S"


class WorkdirError(RuntimeError):
    """A workdir that cannot be used; the message says why."""


def fault_point(name):
    """Marks an instant of a save. Tests replace this to raise there; with
    `MVMR_SAVE_DELAY_S` set it sleeps, so that a kill at a random time
    often lands inside a save (bench/faults.py)."""
    delay = float(os.environ.get(FAULT_DELAY_ENV) or 0)
    if delay:
        time.sleep(delay)


# ---------------------------------------------------------------- atomic files


def _finite_or_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _finite_or_none(obj.item())
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renamed onto `path` only if
    the block finishes. Keeps the extension (`x.partial.keras`)."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    """Strict JSON (NaN and infinities become `null`), written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(_finite_or_none(obj), f, indent=2, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------- lock


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkdirLock:
    """`with WorkdirLock(workdir):` one run per workdir (module docstring).

    Creates the workdir; a workdir that is a file or not writable raises
    `WorkdirError` in one line."""

    def __init__(self, workdir, log=print):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_NAME)
        self.log = log
        self.held = False

    def _create(self):
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)

    def acquire(self):
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise WorkdirError(f"workdir {self.workdir} is a file, not a directory")
        try:
            os.makedirs(self.workdir, exist_ok=True)
            for _ in range(3):
                try:
                    self._create()
                    self.held = True
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
        except PermissionError as e:
            raise WorkdirError(f"workdir {self.workdir} is not writable ({e.strerror})") from None
        except OSError as e:
            raise WorkdirError(f"workdir {self.workdir} cannot be used ({e.strerror or e})") from None
        raise WorkdirError(f"could not lock {self.path}")

    def _take_over_if_stale(self):
        try:
            with open(self.path) as f:
                owner = json.load(f)
            pid, host = int(owner["pid"]), owner["host"]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError):
            self.log(f"Taking over {self.path}: unreadable lock (its writer was killed).")
            os.remove(self.path)
            return
        if host != socket.gethostname():
            raise WorkdirError(
                f"workdir {self.workdir} is in use by pid {pid} on host {host} (since "
                f"{owner.get('since')}); if that run is dead, delete {self.path}"
            )
        if _pid_alive(pid):
            raise WorkdirError(
                f"workdir {self.workdir} is in use by another run (pid {pid} on this "
                f"host, since {owner.get('since')}); use another --workdir or wait for it"
            )
        self.log(f"Taking over the stale lock {self.path} of pid {pid} (no longer running).")
        os.remove(self.path)

    def release(self):
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# --------------------------------------------------------------- checkpoints


def _epoch_dir_name(epoch):
    return f"epoch-{epoch:05d}"


def _non_finite_variables(variables):
    """Names of float variables holding a NaN or infinity."""
    bad = []
    for v in variables:
        if "float" not in str(v.dtype):
            continue
        value = np.asarray(keras.ops.convert_to_numpy(v))
        try:
            finite = np.isfinite(value).all()
        except TypeError:  # a float type NumPy's isfinite does not know
            finite = np.isfinite(value.astype("float32")).all()
        if not finite:
            bad.append(v.path if hasattr(v, "path") else v.name)
    return bad


def non_finite_weights(model):
    """Paths of `model`'s (and its optimiser's) non-finite variables."""
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        variables += list(optimizer.variables)
    return _non_finite_variables(variables)


def _h5_problem(path):
    """Why an `.weights.h5` file can't be used (None if it can): truncated,
    unreadable, or holding non-finite values."""
    import h5py

    bad = []
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                    if not np.all(np.isfinite(obj[()])):
                        bad.append(name)
            f.visititems(visit)
    except Exception as e:  # h5py raises OSError, KeyError, ... on damage
        return f"unreadable weights ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
    if bad:
        return f"{len(bad)} non-finite weight arrays (e.g. {bad[0]})"
    return None


class CheckpointPart:
    """Extra state saved inside each epoch's checkpoint directory."""

    def save(self, directory):
        raise NotImplementedError

    def restore(self, directory):
        raise NotImplementedError


class ProbePart(CheckpointPart):
    """The online probe (`callbacks.OnlineLinearProbe`) as `online_probe.keras`
    (`online_probe_vit.keras` for one whose prefix is `probe_vit`)."""

    def __init__(self, probe_callback):
        self.callback = probe_callback
        self.name = f"online_{probe_callback.prefix}.keras"

    def save(self, directory):
        if self.callback.probe is not None:
            self.callback.probe.save(os.path.join(directory, self.name))

    def restore(self, directory):
        path = os.path.join(directory, self.name)
        if os.path.exists(path):
            # compile=True brings back the Adam moments and step count too.
            probe = keras.saving.load_model(path)
            native_optimizer(probe)
            self.callback.probe = probe


def native_optimizer(model):
    """Gives a loaded, compiled `model` this backend's optimizer class.

    A `.keras` saved on PyTorch names PyTorch's own optimizer class
    (`keras.src.backend.torch.optimizers...`); loaded on another backend it
    stays that class and fails at its first step. Swapped for this
    backend's class with the same config and variable values (moments, step
    count), so a run resumed on another backend goes on as it was."""
    foreign = getattr(model, "optimizer", None)
    module = type(foreign).__module__
    if (foreign is None or not module.startswith("keras.src.backend.")
            or module.startswith(f"keras.src.backend.{keras.backend.backend()}.")):
        return
    native = keras.optimizers.get(
        {"class_name": type(foreign).__name__, "config": foreign.get_config()})
    native.build(model.trainable_variables)
    for mine, theirs in zip(native.variables, foreign.variables):
        mine.assign(keras.ops.convert_to_numpy(theirs))
    model.optimizer = native
    model.train_function = None  # rebuilt with the new optimizer at the next step


class EpochCheckpoint(keras.callbacks.Callback):
    """Atomic, NaN-safe per-epoch checkpoints of any compiled `keras.Model`
    (module docstring). Put it after the callbacks that add to the logs.

    Args:
        workdir: the run's folder (`checkpoints/`, `history.json`,
            `tensorboard/` go there).
        parts: `CheckpointPart`s saved and restored with the model.
        monitor: log names that must be finite (default: every log).
        keep: complete checkpoints kept (the newest ones).
        tensorboard: write per-epoch TensorBoard scalars.
        log: where the one-line messages go.
        write: `False` for every process but the first of a job of several
            (`distribution.is_chief`): it restores from the workdir and keeps
            the same bookkeeping, but writes nothing there. It still saves
            each epoch, into a scratch folder it then deletes: under JAX,
            fetching the variables is a step all processes take together.

    After `fit`, `refused` holds why the last epoch was not saved (or None),
    `completed` the number of completed epochs, `state` the saved metadata
    (`sessions`: backend and training seconds of every session).
    """

    def __init__(self, workdir, parts=(), monitor=None, keep=2, tensorboard=True, log=print,
                 write=True):
        super().__init__()
        self.workdir = workdir
        self.write = write
        self.directory = os.path.join(workdir, CHECKPOINTS)
        self.parts = list(parts)
        self.monitor = monitor
        self.keep = max(int(keep), 1)
        self.tensorboard = tensorboard
        self.log = log
        self.history = {}
        self.state = {"epoch": 0, "sessions": []}
        self.completed = 0
        self.refused = None
        self._batches = 0
        self._epoch_start = None
        self._session = None

    # -- reading

    def candidates(self):
        """Complete checkpoint directories, newest first."""
        if not os.path.isdir(self.directory):
            return []
        names = [n for n in os.listdir(self.directory)
                 if n.startswith("epoch-") and os.path.isdir(os.path.join(self.directory, n))]
        return sorted(names, reverse=True)

    def _problem(self, path):
        state_path = os.path.join(path, STATE_FILE)
        try:
            state = read_json(state_path)
        except (ValueError, OSError) as e:
            return f"unreadable {STATE_FILE} ({e})", None
        if not isinstance(state, dict) or "epoch" not in state:
            return f"no {STATE_FILE}", None
        problem = _h5_problem(os.path.join(path, WEIGHTS_FILE))
        return problem, state

    def completed_on_disk(self):
        """Completed epochs of the newest usable checkpoint (0 if none),
        without loading it."""
        for name in self.candidates():
            problem, state = self._problem(os.path.join(self.directory, name))
            if problem is None:
                return int(state["epoch"])
        return 0

    def restore(self):
        """Loads the newest good checkpoint into the model; returns its
        number of completed epochs (0 if none)."""
        for name in self.candidates():
            path = os.path.join(self.directory, name)
            problem, state = self._problem(path)
            if problem is None:
                try:
                    self._load(path)
                    history = read_json(os.path.join(path, HISTORY_FILE), {})
                except Exception as e:
                    problem = f"does not load ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
            if problem is not None:
                self.log(f"Checkpoint {path} is unusable: {problem}; falling back to the one before.")
                continue
            self.state = state
            self.history = history
            self.completed = int(state["epoch"])
            return self.completed
        return 0

    def _load(self, path):
        model = self._model  # not self.model: no JAX state to sync yet
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        initial = None
        bad = None
        try:
            initial = [np.array(keras.ops.convert_to_numpy(v)) for v in self._all_variables()]
            model.load_weights(os.path.join(path, WEIGHTS_FILE))
            bad = non_finite_weights(model)
            if bad:
                raise ValueError(f"{len(bad)} non-finite variables, e.g. {bad[0]}")
            for part in self.parts:
                part.restore(path)
        except Exception:
            if initial is not None:  # never leave a half-loaded model behind
                for v, value in zip(self._all_variables(), initial):
                    v.assign(value)
            raise

    def _all_variables(self):
        model = self._model
        variables = list(model.variables)
        if model.optimizer is not None and model.optimizer.built:
            variables += list(model.optimizer.variables)
        return variables

    # -- Keras hooks

    def on_train_begin(self, logs=None):
        done = self.restore()
        if done:
            self._model._initial_epoch = done
        # Brings history.json and TensorBoard back to the checkpoint: writes
        # what a kill left out, drops epochs of a checkpoint that was unusable.
        if self.write:
            self._publish(done, during_save=False)
        self._session = {"backend": keras.backend.backend(), "train_seconds": 0.0}
        self.state.setdefault("sessions", []).append(self._session)

    def on_epoch_begin(self, epoch, logs=None):
        self._batches = 0
        self._epoch_start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1

    def _why_not_save(self, logs):
        steps = (self.params or {}).get("steps")
        if self.model.stop_training and steps and self._batches < steps:
            return f"the epoch stopped after {self._batches} of {steps} steps"
        for name, value in (logs or {}).items():
            if self.monitor is not None and name not in self.monitor:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                return f"logged {name} is {value}"
        bad = non_finite_weights(self.model)
        if bad:
            return f"{len(bad)} variables are non-finite (e.g. {bad[0]})"
        return None

    def on_epoch_end(self, epoch, logs=None):
        # Checked before anything is written: a bad epoch never reaches disk.
        self.refused = self._why_not_save(logs)
        if self.refused is not None:
            self.model.stop_training = True
            return
        completed = epoch + 1
        history = {k: list(v) for k, v in self.history.items()}
        for name, value in (logs or {}).items():
            values = history.setdefault(name, [])
            del values[epoch:]
            values.extend([None] * (epoch - len(values)))
            values.append(float(value))
        self._session["train_seconds"] = round(
            self._session["train_seconds"] + time.time() - self._epoch_start, 3)
        state = dict(self.state, epoch=completed, backend=keras.backend.backend())
        if self.write:
            self._commit(completed, history, state)
        else:
            with tempfile.TemporaryDirectory(prefix="mvmr-checkpoint-") as scratch:
                self.model.save_weights(os.path.join(scratch, WEIGHTS_FILE))
                for part in self.parts:
                    part.save(scratch)
        self.history, self.state, self.completed = history, state, completed
        if self.write:
            self._publish(completed)

    def _commit(self, epoch, history, state):
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, _epoch_dir_name(epoch))
        staging = os.path.join(self.directory, f".staging-{_epoch_dir_name(epoch)}")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        fault_point("staging_created")
        self.model.save_weights(os.path.join(staging, WEIGHTS_FILE))
        fault_point("weights_saved")
        for part in self.parts:
            part.save(staging)
            fault_point("part_saved")
        write_json(os.path.join(staging, HISTORY_FILE), history)
        write_json(os.path.join(staging, STATE_FILE), state)  # last: marks it complete
        fault_point("staging_complete")
        if os.path.exists(final):  # left by a kill after its rename, never pointed to
            shutil.rmtree(final)
        os.replace(staging, final)
        fault_point("renamed")
        pointer = os.path.join(self.directory, "latest")
        with atomic_path(pointer) as tmp:
            with open(tmp, "w") as f:
                f.write(_epoch_dir_name(epoch) + "\n")
        fault_point("pointer_moved")
        for old in self.candidates()[self.keep:]:
            shutil.rmtree(os.path.join(self.directory, old), ignore_errors=True)

    def _publish(self, completed, during_save=True):
        """The workdir's copies for people and TensorBoard, derived from the
        committed checkpoint (rewritten on resume, so never ahead of it)."""
        os.makedirs(self.workdir, exist_ok=True)
        write_json(os.path.join(self.workdir, HISTORY_FILE), self.history)
        if during_save:  # the fault points name the instants of a save
            fault_point("history_published")
        if self.tensorboard:
            write_tensorboard_epochs(os.path.join(self.workdir, "tensorboard"), self.history,
                                     completed)
            if during_save:
                fault_point("tensorboard_written")


def write_tensorboard_epochs(log_dir, history, completed):
    """One event file per epoch, `train/events.out.tfevents.epoch-NNNNN`,
    with `epoch_<name>` scalars at step = epoch index (Keras' names).
    Existing epochs' files are kept; epochs beyond `completed` removed."""
    train_dir = os.path.join(log_dir, "train")
    os.makedirs(train_dir, exist_ok=True)
    prefix = "events.out.tfevents.epoch-"
    for name in os.listdir(train_dir):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            if int(name[len(prefix):]) >= completed:
                os.remove(os.path.join(train_dir, name))
    for epoch in range(completed):
        path = os.path.join(train_dir, f"{prefix}{epoch:05d}")
        if os.path.exists(path):
            continue
        scalars = {k: v[epoch] for k, v in history.items()
                   if epoch < len(v) and v[epoch] is not None}
        _write_event_file(path, epoch, scalars)


def _write_event_file(path, step, scalars):
    import tensorflow as tf

    staging = path + ".partial-dir"
    shutil.rmtree(staging, ignore_errors=True)
    writer = tf.summary.create_file_writer(staging)
    with writer.as_default():
        for name, value in sorted(scalars.items()):
            tf.summary.scalar(f"epoch_{name}", float(value), step=step)
    writer.flush()
    writer.close()
    written = [n for n in os.listdir(staging) if "tfevents" in n]
    os.replace(os.path.join(staging, written[0]), path)
    shutil.rmtree(staging, ignore_errors=True)
