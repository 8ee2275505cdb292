"""The trainer: config -> method -> model, data, optimiser -> fit -> workdir.

`config.method` names the training method (`mvmr`, the default, `dino`
or `mokd`; `mvmr_keras.methods`): it builds the model, its training views,
its optimiser and callbacks, and says which encoder is evaluated and saved.
Everything else is shared and lives here. `train.py` is a thin flag parser
around `train(config, workdir)`; tests call the functions here directly. A
run writes to its workdir:

    .lock             held while a run uses the workdir (pid and host)
    config.json       the config it ran with (written when training starts)
    run.json          the encoder's linear probe top-1 at initialisation
    checkpoints/      one directory per completed epoch (weights, optimiser,
                      history, online probe), the newest two kept; see
                      mvmr_keras/workdir.py
    tensorboard/      TensorBoard logs, one event file per epoch
    history.json      every epoch's logs (strict JSON: NaN is null)
    model.keras       the whole model (MV-MR: encoder and projector; DINO:
                      student, teacher and heads) with its optimiser
    encoder.keras     the evaluated encoder alone (DINO: the teacher's):
                      [0, 255] images -> features
    encoder_<name>.keras  MOKD: the second model's teacher
    results.json      linear probe and kNN top-1 of the trained encoder, the
                      untrained one (`random_init_*`) and the raw pixels
                      (`pixels_*`), under the same protocols (MOKD: the
                      second model's under its name)
    curves.png        loss terms and probe/kNN accuracy per epoch
    results_<mode>.json   evaluate.py's protocols in `evaluation.after_training`
    teacher_cache/    precomputed teacher embeddings, when distilling with
                      `teacher.use_cache` (mvmr_keras.teachers.cache)

With `evaluation.online_probe` (and `evaluation.knn_every_n_epochs`) the
history also holds `probe_top1/5` (and `knn_top1/5`) on the test split.
"""

import contextlib
import json
import math
import os
import signal
import tempfile
import threading

import keras
import numpy as np

from mvmr_keras import data as data_lib
from mvmr_keras import distribution as distribution_lib
from mvmr_keras import callbacks as callbacks_lib
from mvmr_keras import evaluation, methods, plots, schedules
from mvmr_keras import workdir as workdir_lib
from mvmr_keras.evaluation import baselines
from mvmr_keras.methods import ConfigError  # noqa: F401 (training.ConfigError)
from mvmr_keras.models import BACKBONES
from mvmr_keras.models.encoder import NORMALIZATION_STATS
from mvmr_keras.teachers import distillation

# The fields every method needs; each method adds its own
# (`methods.<name>.METHOD.required_fields`).
REQUIRED_FIELDS = (
    "dataset", "data_dir", "train_split", "probe_train_split", "test_split", "image_size",
    "normalization", "backbone", "backbone_width", "backbone_depths",
    "small_kernel_stem", "zero_init_residual", "epochs", "batch_size", "steps_per_epoch",
    "optimizer", "learning_rate", "final_learning_rate", "weight_decay", "warmup_epochs",
    "mixed_precision", "seed",
)
MIXED_PRECISION_POLICIES = ("", "float32", "mixed_float16", "mixed_bfloat16")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the message says how to resume.

    `signal_number` is the signal that stopped it (SIGINT for a plain
    `KeyboardInterrupt`); `train.py` exits with 128 + that number.
    """

    def __init__(self, message, signal_number=signal.SIGINT):
        super().__init__(message)
        self.signal_number = int(signal_number)


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGINT and SIGTERM during `fit` into a stop at the next step.

    Python's own Ctrl-C raises `KeyboardInterrupt` wherever the main thread
    happens to be, and compiled code that calls back into Python (JAX's
    dispatch, tf.data) can swallow it: `train.py` then ran on after Ctrl-C.
    A handler that only records the signal cannot be lost, and the step
    boundary is a clean place to stop. A second signal stops at once.
    `install()` is a context manager around `fit`; it leaves signals alone
    off the main thread and where the signal is ignored (`nohup`).
    """

    def __init__(self):
        super().__init__()
        self.received = None

    @contextlib.contextmanager
    def install(self):
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(number) not in (signal.SIG_IGN, None):
                    previous[number] = signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, number, frame):
        if self.received is not None:  # the second signal: stop now
            raise TrainingInterrupted("interrupted", number)
        self.received = number

    def _check(self):
        if self.received is not None:
            raise TrainingInterrupted("interrupted", self.received)

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


def _config_dict(config):
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def validate_config(config):
    """Raises `ConfigError` with a one-line reason for a config that can't run:
    the shared fields here, the method's own in its `validate`."""
    c = _config_dict(config)
    method = methods.get(config)
    required = REQUIRED_FIELDS + tuple(method.required_fields)
    missing = [f for f in required if f not in c]
    if missing:
        raise ConfigError(
            f"the config lacks {', '.join(missing)}; derive it from {method.example_config}"
        )
    if not data_lib.is_dataset_name(c["dataset"]):
        raise ConfigError(
            f"unknown dataset {c['dataset']!r}; available: {list(data_lib.DATASETS)} "
            "or folder:PATH"
        )
    if c["backbone"] not in BACKBONES:
        raise ConfigError(
            f"unknown backbone {c['backbone']!r}; available: {sorted(BACKBONES)}"
        )
    if c["batch_size"] < 1:
        raise ConfigError(f"batch_size must be >= 1; got {c['batch_size']}")
    for field in ("epochs", "image_size", "backbone_width"):
        if c[field] < 1:
            raise ConfigError(f"{field} must be >= 1; got {c[field]}")
    if c["steps_per_epoch"] is not None and c["steps_per_epoch"] < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1 or unset; got {c['steps_per_epoch']}")
    if c["warmup_epochs"] < 0:
        raise ConfigError(f"warmup_epochs must be >= 0; got {c['warmup_epochs']}")
    for field in ("learning_rate", "final_learning_rate", "weight_decay"):
        if not math.isfinite(c[field]):
            raise ConfigError(f"{field} must be a finite number; got {c[field]}")
    if c["learning_rate"] <= 0:
        raise ConfigError(f"learning_rate must be > 0; got {c['learning_rate']}")
    accumulation = c.get("gradient_accumulation_steps", 1)
    if accumulation is not None and (not isinstance(accumulation, int) or accumulation < 1):
        raise ConfigError(
            f"gradient_accumulation_steps must be an integer >= 1 (1 = off); got {accumulation!r}")
    if (c.get("lr_scaling") or "") not in schedules.LR_SCALINGS:
        raise ConfigError(
            f"unknown lr_scaling {c['lr_scaling']!r}; available: 'linear', 'sqrt' or empty "
            "for none")
    if c.get("lr_scaling") and not (c.get("base_batch_size") or 0) >= 1:
        raise ConfigError(
            f"lr_scaling {c['lr_scaling']!r} needs base_batch_size >= 1 (the batch the "
            f"learning_rate is given for); got {c.get('base_batch_size')!r}")
    if c["mixed_precision"] not in MIXED_PRECISION_POLICIES:
        raise ConfigError(
            f"unknown mixed_precision {c['mixed_precision']!r}; available: "
            f"{[p for p in MIXED_PRECISION_POLICIES if p]} or empty for float32"
        )
    if c["normalization"] not in NORMALIZATION_STATS:
        raise ConfigError(
            f"unknown normalization {c['normalization']!r}; available: "
            f"{sorted(NORMALIZATION_STATS)}"
        )
    method.validate(config)
    try:
        distribution_lib.validate(config)
    except distribution_lib.DistributionError as e:
        raise ConfigError(str(e)) from None
    teacher = c.get("teacher") or {}
    if (distribution_lib.process_count() > 1 and distillation.enabled(config)
            and teacher.get("use_cache", True)):
        raise ConfigError(
            "a teacher's embedding cache is not written by several processes yet; set "
            "--config.teacher.use_cache=False (the teacher then runs in every step)")
    for mode in _after_training_modes(config):
        if mode not in evaluation.MODES:
            raise ConfigError(
                f"unknown evaluation.after_training mode {mode!r}; available: "
                f"{list(evaluation.MODES)}"
            )


def _after_training_modes(config):
    block = config.get("evaluation") or {}
    return [m.strip() for m in (block.get("after_training") or "").split(",") if m.strip()]


def evaluation_callbacks(config, probe_train, test, probe_checkpoint=None, encoders=None):
    """The online probe and kNN monitor the config's `evaluation` block asks
    for, on `(images, labels)` of the probe-train and test splits, one of
    each per monitored encoder. They go before the callbacks that read their
    logs. The probe is saved to (and resumed from) `probe_checkpoint` when
    given (the trainer instead saves it inside each epoch's checkpoint,
    `workdir.ProbePart`).

    `encoders` is `{name: encoder}` (`Method.monitored_encoders`); the
    encoder named "" (default: the model's own, `model.encoder`) logs
    `probe_top1` and `knn_top1`, another named `vit` logs `probe_vit_top1`
    and `knn_vit_top1`."""
    block = config.get("evaluation") or {}
    found = []
    for name, encoder in (encoders or {"": None}).items():
        suffix = f"_{name}" if name else ""
        if block.get("online_probe"):
            checkpoint = probe_checkpoint
            if checkpoint and suffix:
                checkpoint = checkpoint[: -len(".keras")] + f"{suffix}.keras"
            found.append(callbacks_lib.OnlineLinearProbe(
                probe_train, test, learning_rate=block.online_probe_learning_rate,
                batch_size=config.batch_size, seed=config.seed, checkpoint_path=checkpoint,
                encoder=encoder, prefix=f"probe{suffix}",
            ))
        if block.get("knn_every_n_epochs"):
            found.append(callbacks_lib.KNNMonitor(
                probe_train, test, every_n_epochs=block.knn_every_n_epochs, k=block.knn_k,
                temperature=block.knn_temperature, encoder=encoder, prefix=f"knn{suffix}",
            ))
    return found


def build_model(config, teacher=None, steps_per_epoch=1):
    """The model a config's method describes (built, not compiled).

    For MV-MR with teachers in the config, `teacher` is the live teacher
    layer (a dict name -> layer for several), or `None` when the batches
    bring cached teacher embeddings."""
    method = methods.create(config)
    if teacher is not None:
        method.teacher = teacher
    return method.build_model(steps_per_epoch)


learning_rate_schedule = schedules.learning_rate_schedule


def build_optimizer(config, steps_per_epoch):
    """The optimiser of the config's method (MV-MR: Adam or AdamW with
    decoupled weight decay and the LR schedule)."""
    return methods.create(config).build_optimizer(steps_per_epoch)


class StopOnNaNTerm(keras.callbacks.Callback):
    """Stops training when a logged loss term becomes NaN or infinite, and
    remembers which one (the first of the parts, else the total `loss`)."""

    def __init__(self, term_names):
        super().__init__()
        self.term_names = list(term_names) + ["loss"]
        self.bad_term = None
        self.bad_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name in self.term_names:
            if name in (logs or {}) and not np.isfinite(float(logs[name])):
                self.bad_term = name
                self.bad_at = (self._epoch + 1, batch + 1)
                self.model.stop_training = True
                return


def _check_workdir(config, workdir):
    """Refuses to mix two different configs in one workdir.

    Only checks; `_save_config` writes once the run is known to start."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        current = json.loads(json.dumps(_config_dict(config)))
        _fill_added_fields(previous, current)
        changed = sorted(
            k for k in set(previous) | set(current) if previous.get(k) != current.get(k)
        )
        if changed:
            raise ConfigError(
                f"workdir {workdir} holds a run with a different config "
                f"(fields {', '.join(changed)}); use a new --workdir or the same config"
            )


# Fields added to the configs after runs were started, with the value that
# means what those runs did: a run saved without them resumes under a config
# that has them at that value.
ADDED_FIELDS = {
    ("gradient_accumulation_steps",): 1,
    ("lr_scaling",): "",
    ("base_batch_size",): 256,
    ("evaluation", "max_probe_images"): 0,
    ("evaluation", "knn_bank_size"): 0,
}


def _fill_added_fields(previous, current):
    """Gives `previous` (a saved config.json) the `ADDED_FIELDS` it lacks,
    where `current` has them at their neutral value."""
    for path, neutral in ADDED_FIELDS.items():
        saved, now = previous, current
        for key in path[:-1]:
            saved, now = saved.get(key), now.get(key)
            if not isinstance(saved, dict) or not isinstance(now, dict):
                break
        else:
            if path[-1] not in saved and path[-1] in now and now[path[-1]] == neutral:
                saved[path[-1]] = neutral


def _save_config(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_json(os.path.join(workdir, "config.json"), _config_dict(config))


def load_split(config, split):
    """A labelled split in memory, every image resized (and centre-cropped
    when not square) to `image_size`, as `data.views`' original view; at
    most `evaluation.max_probe_images` of it (evenly spread) when set: the
    online probe, kNN monitor and baselines during training hold it."""
    max_images = (config.get("evaluation") or {}).get("max_probe_images") or None
    try:
        return data_lib.load_numpy(config.dataset, split, data_dir=config.data_dir or None,
                                   image_size=config.image_size, max_images=max_images)
    except (data_lib.DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        raise ConfigError(_one_line(e)) from None


def _one_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_train_stream(config):
    """The SSL training split as a `tf.data` stream (never all in memory)
    and its number of images."""
    try:
        ds = data_lib.load(config.dataset, config.train_split, data_dir=config.data_dir or None)
    except (data_lib.DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        raise ConfigError(_one_line(e)) from None
    num_images = int(ds.cardinality())
    if num_images < 0:  # filtered or folder datasets: count once
        num_images = int(ds.reduce(0, lambda n, _: n + 1))
    return ds, num_images


def train(config, workdir, verbose="auto", log=print, callbacks=()):
    """Trains the config's method and writes the workdir (module docstring).

    `callbacks` are added to `fit`'s. Returns the results dict also written
    to `results.json`.
    """
    validate_config(config)
    lock = workdir_lib.WorkdirLock(workdir, log=log)
    try:
        if distribution_lib.is_chief():  # the others of a job only read it
            lock.acquire()
    except workdir_lib.WorkdirError as e:
        raise ConfigError(str(e)) from None
    previous_policy = keras.config.dtype_policy()
    try:
        _check_workdir(config, workdir)
        keras.config.set_dtype_policy(config.mixed_precision or "float32")
        return _train(config, workdir, verbose, log, callbacks)
    except KeyboardInterrupt as e:
        done = workdir_lib.EpochCheckpoint(workdir, log=_silent).completed_on_disk()
        raise TrainingInterrupted(
            f"interrupted; rerun the same command to resume from epoch {done + 1}",
            getattr(e, "signal_number", signal.SIGINT),
        ) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)
        lock.release()


def _silent(*args):
    pass


def _train(config, workdir, verbose, log, callbacks):
    keras.utils.set_random_seed(config.seed)
    # In a job of several processes every one runs all of this in lockstep
    # (each step's collectives need them all); only the first writes.
    chief = distribution_lib.is_chief()
    if not chief:
        log, verbose = _silent, 0
    method = methods.create(config, log=log)

    train_images, num_train_images = load_train_stream(config)
    probe_train = load_split(config, config.probe_train_split)
    test = load_split(config, config.test_split)
    if config.batch_size > num_train_images:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the "
            f"{num_train_images} training images"
        )
    dataset = method.train_dataset(workdir, train_images, test[0])
    steps_per_epoch = num_train_images // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
        dataset = dataset.repeat()
    accumulation = schedules.gradient_accumulation_steps(config)
    if accumulation > steps_per_epoch * config.epochs:
        raise ConfigError(
            f"gradient_accumulation_steps {accumulation} is more than the run's "
            f"{steps_per_epoch * config.epochs} batches: the weights would never be updated")
    if accumulation > 1 or config.get("lr_scaling"):
        scaling = config.get("lr_scaling")
        log(f"Effective batch {schedules.effective_batch_size(config)} "
            f"({config.batch_size} x {accumulation} accumulated); peak learning rate "
            f"{schedules.scaled_learning_rate(config):.4g}"
            + (f" ({scaling} scaling of {config.learning_rate:g} from batch "
               f"{config.base_batch_size})" if scaling else ""))

    # One device, or data_parallel over several (mvmr_keras/distribution.py).
    with distribution_lib.Placement(config) as placement:
        with placement.building():
            model = method.build_model(steps_per_epoch)
            model.compile(optimizer=method.build_optimizer(steps_per_epoch))
        with placement.paused():
            method.before_training(model, test[0])
        encoder = method.encoder(model)
        probe_callbacks = evaluation_callbacks(config, probe_train, test,
                                               encoders=method.monitored_encoders(model))
        checkpoint = workdir_lib.EpochCheckpoint(
            workdir, log=log, write=chief,
            parts=[workdir_lib.ProbePart(c) for c in probe_callbacks
                   if isinstance(c, callbacks_lib.OnlineLinearProbe)],
        )
        done = checkpoint.completed_on_disk()
        # The untrained encoder, probed first (once per run, before config.json
        # marks the run as started): the baseline the run must beat.
        run_path = os.path.join(workdir, "run.json")
        run_info = workdir_lib.read_json(run_path, {}) if done else {}
        knn_settings = baselines.knn_settings(config)
        if "random_init" not in run_info:
            with placement.paused():
                run_info["random_init"] = baselines.frozen_scores(
                    encoder, probe_train, test, **knn_settings)
        extra_encoders = method.extra_encoders(model)
        for name, extra in extra_encoders.items():  # MOKD's second model
            if f"random_init_{name}" not in run_info:
                with placement.paused():
                    run_info[f"random_init_{name}"] = baselines.frozen_scores(
                        extra, probe_train, test, **knn_settings)
        random_init = run_info["random_init"]
        random_init_top1 = random_init["linear_probe_top1"]
        log(f"Linear probe top-1 of the encoder at initialisation: {random_init_top1:.4f}")
        if chief:
            _save_config(config, workdir)
            workdir_lib.write_json(run_path, run_info)
        if done and config.steps_per_epoch:
            # The repeated stream continues where the completed epochs left it,
            # so a resumed run sees the batches an uninterrupted one would.
            dataset = dataset.skip(min(done, config.epochs) * steps_per_epoch)

        if done:
            log(f"Resuming from {checkpoint.directory}: {done} of {config.epochs} epochs "
                "already completed.")
        nan_stopper = StopOnNaNTerm(method.term_names(model))
        signal_stopper = StopOnSignal()
        with signal_stopper.install(), placement.fitting(model):
            model.fit(
                dataset,
                epochs=config.epochs,
                steps_per_epoch=steps_per_epoch,
                verbose=verbose,
                shuffle=False,  # the dataset reshuffles itself every epoch
                callbacks=[
                    nan_stopper,
                    *method.callbacks(model),
                    *map(placement.callback, probe_callbacks),
                    checkpoint,  # after the callbacks that add to the logs
                    signal_stopper,  # after the checkpoint: a finished epoch is kept
                    *callbacks,
                ],
            )
    if nan_stopper.bad_term is not None or checkpoint.refused is not None:
        where = (f"epoch {checkpoint.completed} kept in {checkpoint.directory}"
                 if checkpoint.completed else "no epoch had completed")
        if nan_stopper.bad_term is not None:
            epoch, step = nan_stopper.bad_at
            what = f"loss term '{nan_stopper.bad_term}' became NaN/inf at epoch {epoch}, step {step}"
        else:
            what = f"epoch {checkpoint.completed + 1} was not saved: {checkpoint.refused}"
        raise TrainingDiverged(
            f"{what}; training stopped, nothing of it saved (last good {where}). "
            "Try a lower learning_rate or float32 precision."
        )
    if checkpoint.completed < config.epochs:  # a callback stopped it early
        log(f"Training stopped after {checkpoint.completed} of {config.epochs} epochs.")

    bad = workdir_lib.non_finite_weights(model)
    if bad:
        raise TrainingDiverged(
            f"the model has {len(bad)} non-finite variables (e.g. {bad[0]}); "
            "encoder.keras not written"
        )
    for name, what in method.saved_models(model).items():
        if chief:
            with workdir_lib.atomic_path(os.path.join(workdir, name)) as tmp:
                what.save(tmp)
        else:  # fetching the variables is a step every process takes together
            with tempfile.TemporaryDirectory(prefix="mvmr-save-") as scratch:
                what.save(os.path.join(scratch, name))
    sessions = checkpoint.state.get("sessions", [])
    backends = list(dict.fromkeys(s["backend"] for s in sessions if s.get("train_seconds")))
    if "pixels" not in run_info:  # once per run: minutes on 60,000 images, and never changes
        run_info["pixels"] = baselines.pixel_scores(
            probe_train, test, config.image_size, config.normalization, **knn_settings)
        if chief:
            workdir_lib.write_json(run_path, run_info)
    results = baselines.flat_results(
        baselines.frozen_scores(encoder, probe_train, test, **knn_settings),
        random_init,
        run_info["pixels"],
    )
    for name, extra in extra_encoders.items():
        results[name] = baselines.flat_results(
            baselines.frozen_scores(extra, probe_train, test, **knn_settings),
            run_info[f"random_init_{name}"], run_info["pixels"])
    results.update({
        # Images the scores above come from (fewer with evaluation.max_probe_images).
        "probe_images": {"train": len(probe_train[1]), "test": len(test[1])},
        "backend": "+".join(backends) or keras.backend.backend(),
        "epochs": config.epochs,
        "train_seconds": round(sum(s.get("train_seconds", 0) for s in sessions), 1),
        "train_seconds_per_session": [round(s.get("train_seconds", 0), 1) for s in sessions],
        "final_logs": {k: v[-1] for k, v in checkpoint.history.items()},
    })
    if not chief:
        # The model's last computations across processes are done: the
        # first process alone plots, evaluates from encoder.keras and writes.
        results.update(method.results(model, test[0]))
        return results
    with workdir_lib.atomic_path(os.path.join(workdir, "curves.png")) as tmp:
        plots.plot_curves(checkpoint.history, tmp, baselines.reference_lines(results))
    for mode in _after_training_modes(config):
        # The untrained encoder is gone by now; its scores are above.
        found = evaluation.evaluate(mode, os.path.join(workdir, "encoder.keras"), config,
                                    workdir, verbose=0, log=log, overwrite=True,
                                    baselines=("pixels",))
        results[f"evaluation_{mode}"] = {
            k: found[k] for k in ("top1", "top5", "map", "baselines") if k in found
        }
    results.update(method.results(model, test[0]))
    workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
    for name in extra_encoders:
        log(f"{name}: {baselines.summary_line(results[name])}.")
    log(f"{baselines.summary_line(results)}. Outputs in {workdir}.")
    return results
