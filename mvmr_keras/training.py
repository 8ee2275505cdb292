"""The MV-MR trainer: config -> model, data, optimiser -> fit -> workdir.

`train.py` is a thin flag parser around `train(config, workdir)`; tests call
the functions here directly. A run writes to its workdir:

    .lock             held while a run uses the workdir (pid and host)
    config.json       the config it ran with (written when training starts)
    run.json          the encoder's linear probe top-1 at initialisation
    checkpoints/      one directory per completed epoch (weights, optimiser,
                      history, online probe), the newest two kept; see
                      mvmr_keras/workdir.py
    tensorboard/      TensorBoard logs, one event file per epoch
    history.json      every epoch's logs (strict JSON: NaN is null)
    model.keras       the whole MVMR model (encoder, projector, optimiser)
    encoder.keras     the encoder alone: [0, 255] images -> features
    results.json      linear probe and kNN top-1 of the trained encoder, the
                      untrained one (`random_init_*`) and the raw pixels
                      (`pixels_*`), under the same protocols
    curves.png        loss terms and probe/kNN accuracy per epoch
    results_<mode>.json   evaluate.py's protocols in `evaluation.after_training`
    teacher_cache/    precomputed teacher embeddings, when distilling with
                      `teacher.use_cache` (mvmr_keras.teachers.cache)

With `evaluation.online_probe` (and `evaluation.knn_every_n_epochs`) the
history also holds `probe_top1/5` (and `knn_top1/5`) on the test split.
"""

import json
import math
import os

import keras
import numpy as np

from mvmr_keras import data as data_lib
from mvmr_keras import callbacks as callbacks_lib
from mvmr_keras import evaluation, losses, plots
from mvmr_keras import workdir as workdir_lib
from mvmr_keras import representations as representations_lib
from mvmr_keras.models import MVMR, RESNET_ARCHITECTURES, ImageEncoder, ResNetBackbone
from mvmr_keras.evaluation import baselines
from mvmr_keras.models.encoder import NORMALIZATION_STATS
from mvmr_keras.teachers import distillation

REQUIRED_FIELDS = (
    "dataset", "data_dir", "train_split", "probe_train_split", "test_split", "image_size",
    "policy", "crop_scale", "normalization", "backbone", "backbone_width", "backbone_depths",
    "small_kernel_stem", "zero_init_residual", "projector", "representations",
    "representation_objective", "variance_margin", "epochs", "batch_size", "steps_per_epoch",
    "optimizer", "learning_rate", "final_learning_rate", "weight_decay", "warmup_epochs",
    "mixed_precision", "seed",
)
MIXED_PRECISION_POLICIES = ("", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw")


class ConfigError(ValueError):
    """A config that cannot run; the message says what to change."""


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the message says how to resume."""


def _config_dict(config):
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def validate_config(config):
    """Raises `ConfigError` with a one-line reason for a config that can't run."""
    c = _config_dict(config)
    missing = [f for f in REQUIRED_FIELDS if f not in c]
    if missing:
        raise ConfigError(
            f"the config lacks {', '.join(missing)}; derive it from configs/digits.py"
        )
    if not data_lib.is_dataset_name(c["dataset"]):
        raise ConfigError(
            f"unknown dataset {c['dataset']!r}; available: {list(data_lib.DATASETS)} "
            "or folder:PATH"
        )
    if c["backbone"] not in RESNET_ARCHITECTURES:
        raise ConfigError(
            f"unknown backbone {c['backbone']!r}; available: {sorted(RESNET_ARCHITECTURES)}"
        )
    if c["batch_size"] < 2:
        raise ConfigError(
            f"batch_size must be >= 2 (distance correlation needs at least two "
            f"samples); got {c['batch_size']}"
        )
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
    if c["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {c['optimizer']!r}; available: {list(OPTIMIZERS)}")
    if c["mixed_precision"] not in MIXED_PRECISION_POLICIES:
        raise ConfigError(
            f"unknown mixed_precision {c['mixed_precision']!r}; available: "
            f"{[p for p in MIXED_PRECISION_POLICIES if p]} or empty for float32"
        )
    if c["representation_objective"] not in losses.REPRESENTATION_OBJECTIVES:
        raise ConfigError(
            f"unknown representation_objective {c['representation_objective']!r}; "
            f"available: {list(losses.REPRESENTATION_OBJECTIVES)}"
        )
    if c["normalization"] not in NORMALIZATION_STATS:
        raise ConfigError(
            f"unknown normalization {c['normalization']!r}; available: "
            f"{sorted(NORMALIZATION_STATS)}"
        )
    crop_scale = tuple(c["crop_scale"])
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ConfigError(
            f"crop_scale must be a pair (min, max) with 0 < min <= max <= 1; "
            f"got {c['crop_scale']}"
        )
    if c["policy"] not in data_lib.POLICIES:
        raise ConfigError(f"unknown policy {c['policy']!r}; available: {list(data_lib.POLICIES)}")
    try:
        parsed = representations_lib.parse(c["representations"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_representations_take(parsed, c["image_size"])
    for mode in _after_training_modes(config):
        if mode not in evaluation.MODES:
            raise ConfigError(
                f"unknown evaluation.after_training mode {mode!r}; available: "
                f"{list(evaluation.MODES)}"
            )
    _validate_teacher(config)


def _check_representations_take(parsed, image_size):
    """Runs each representation on one blank image of the config's size, so
    that a size one of them cannot take (HOG's pooling of 30 px) fails here,
    not after the data has loaded."""
    images = np.zeros((1, image_size, image_size, 3), "float32")
    for layer, _ in parsed:
        try:
            out = keras.ops.convert_to_numpy(layer(images))
        except Exception as e:  # shape errors differ per backend
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"representation {layer.name!r} cannot take {image_size}x{image_size} images "
                f"({reason}); choose another image_size"
            ) from None
        if out.size == 0:
            raise ConfigError(
                f"representation {layer.name!r} gives no features at {image_size}x{image_size}; "
                "choose a larger image_size"
            )


def _after_training_modes(config):
    block = config.get("evaluation") or {}
    return [m.strip() for m in (block.get("after_training") or "").split(",") if m.strip()]


def evaluation_callbacks(config, probe_train, test, probe_checkpoint=None):
    """The online probe and kNN monitor the config's `evaluation` block asks
    for, on `(images, labels)` of the probe-train and test splits. They go
    before the callbacks that read their logs. The probe is saved to (and
    resumed from) `probe_checkpoint` when given (the trainer instead saves
    it inside each epoch's checkpoint, `workdir.ProbePart`)."""
    block = config.get("evaluation") or {}
    found = []
    if block.get("online_probe"):
        found.append(callbacks_lib.OnlineLinearProbe(
            probe_train, test, learning_rate=block.online_probe_learning_rate,
            batch_size=config.batch_size, seed=config.seed, checkpoint_path=probe_checkpoint,
        ))
    if block.get("knn_every_n_epochs"):
        found.append(callbacks_lib.KNNMonitor(
            probe_train, test, every_n_epochs=block.knn_every_n_epochs, k=block.knn_k,
            temperature=block.knn_temperature,
        ))
    return found


def _validate_teacher(config):
    try:
        distillation.validate(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build_model(config, teacher=None):
    """The MVMR model a config describes (not compiled).

    With teachers in the config, `teacher` is the live teacher layer (a
    dict name -> layer for several), or `None` when the batches bring
    cached teacher embeddings."""
    backbone = ResNetBackbone.from_name(
        config.backbone,
        width=config.backbone_width,
        stackwise_num_blocks=tuple(config.backbone_depths) or None,
        small_kernel_stem=config.small_kernel_stem,
        zero_init_residual=config.zero_init_residual,
        image_shape=(config.image_size, config.image_size, 3),
    )
    encoder = ImageEncoder(backbone, normalization=config.normalization, name="encoder")
    parsed = representations_lib.parse(config.representations)
    model = MVMR(
        encoder,
        projector=config.projector,
        representations=[layer for layer, _ in parsed],
        representation_weights=[weight for _, weight in parsed],
        representation_objective=config.representation_objective,
        variance_margin=config.variance_margin,
        **distillation.model_arguments(config, teacher),
    )
    model.build((None, config.image_size, config.image_size, 3))
    return model


def learning_rate_schedule(config, steps_per_epoch):
    """Linear warm-up to `learning_rate`, then cosine to `final_learning_rate`."""
    total_steps = config.epochs * steps_per_epoch
    # A run shorter than its warm-up (a smoke test) keeps a last epoch of decay.
    warmup_steps = min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch
    alpha = config.final_learning_rate / config.learning_rate
    decay_steps = max(total_steps - warmup_steps, 1)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps, alpha=alpha
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=decay_steps,
        alpha=alpha,
        warmup_target=config.learning_rate,
        warmup_steps=warmup_steps,
    )


def build_optimizer(config, steps_per_epoch):
    """Adam or AdamW with (decoupled) weight decay and the LR schedule."""
    optimizer_class = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
    }[config.optimizer]
    return optimizer_class(
        learning_rate=learning_rate_schedule(config, steps_per_epoch),
        weight_decay=config.weight_decay or None,
    )


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
        changed = sorted(
            k for k in set(previous) | set(current) if previous.get(k) != current.get(k)
        )
        if changed:
            raise ConfigError(
                f"workdir {workdir} holds a run with a different config "
                f"(fields {', '.join(changed)}); use a new --workdir or the same config"
            )


def _save_config(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_json(os.path.join(workdir, "config.json"), _config_dict(config))


def load_split(config, split):
    """A labelled split in memory, every image resized (and centre-cropped
    when not square) to `image_size`, as `data.views`' original view."""
    try:
        return data_lib.load_numpy(config.dataset, split, data_dir=config.data_dir or None,
                                   image_size=config.image_size)
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
    """Trains MV-MR as `config` says and writes the workdir (module docstring).

    `callbacks` are added to `fit`'s. Returns the results dict also written
    to `results.json`.
    """
    validate_config(config)
    lock = workdir_lib.WorkdirLock(workdir, log=log)
    try:
        lock.acquire()
    except workdir_lib.WorkdirError as e:
        raise ConfigError(str(e)) from None
    previous_policy = keras.config.dtype_policy()
    try:
        _check_workdir(config, workdir)
        keras.config.set_dtype_policy(config.mixed_precision or "float32")
        return _train(config, workdir, verbose, log, callbacks)
    except KeyboardInterrupt as e:
        if isinstance(e, TrainingInterrupted):
            raise
        done = workdir_lib.EpochCheckpoint(workdir, log=_silent).completed_on_disk()
        raise TrainingInterrupted(
            f"interrupted; rerun the same command to resume from epoch {done + 1}"
        ) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)
        lock.release()


def _silent(*args):
    pass


def _train(config, workdir, verbose, log, callbacks):
    keras.utils.set_random_seed(config.seed)

    train_images, num_train_images = load_train_stream(config)
    probe_train = load_split(config, config.probe_train_split)
    test = load_split(config, config.test_split)
    if config.batch_size > num_train_images:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the "
            f"{num_train_images} training images"
        )
    teacher = None
    if distillation.enabled(config):
        try:
            setup = distillation.prepare(config, workdir, train_images, test[0], log=log)
        except ValueError as e:  # a preset that cannot load, a stale cache
            raise ConfigError(str(e)) from None
        teacher = setup.teacher
        if setup.train_embeddings is not None:
            import tensorflow as tf

            # (image, label, embedding): the embedding (a dict of them for
            # several teachers) travels with its image (the stream's order
            # is the cache's order).
            train_images = tf.data.Dataset.zip(
                train_images, tf.data.Dataset.from_tensor_slices(setup.train_embeddings)
            ).map(lambda example, embedding: (*example, embedding))
    dataset = data_lib.views(
        train_images,
        config.policy,
        image_size=config.image_size,
        batch_size=config.batch_size,
        seed=config.seed,
        crop_scale=tuple(config.crop_scale),
    )
    steps_per_epoch = num_train_images // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
        dataset = dataset.repeat()

    model = build_model(config, teacher=teacher)
    if distillation.enabled(config):
        init_dcor = distillation.heldout_dcors(model, config, setup, test[0])
        log(f"Held-out dCor(z, teacher) at initialisation: {distillation.describe(init_dcor)}")
    model.compile(optimizer=build_optimizer(config, steps_per_epoch))
    probe_callbacks = evaluation_callbacks(config, probe_train, test)
    checkpoint = workdir_lib.EpochCheckpoint(
        workdir, log=log,
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
        run_info["random_init"] = baselines.frozen_scores(
            model.encoder, probe_train, test, **knn_settings)
    random_init = run_info["random_init"]
    random_init_top1 = random_init["linear_probe_top1"]
    log(f"Linear probe top-1 of the encoder at initialisation: {random_init_top1:.4f}")
    _save_config(config, workdir)
    workdir_lib.write_json(run_path, run_info)
    if done and config.steps_per_epoch:
        # The repeated stream continues where the completed epochs left it,
        # so a resumed run sees the batches an uninterrupted one would.
        dataset = dataset.skip(min(done, config.epochs) * steps_per_epoch)

    if done:
        log(f"Resuming from {checkpoint.directory}: {done} of {config.epochs} epochs "
            "already completed.")
    nan_stopper = StopOnNaNTerm(model.term_names)
    model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        shuffle=False,  # the dataset reshuffles itself every epoch
        callbacks=[
            nan_stopper,
            *probe_callbacks,
            checkpoint,  # after the callbacks that add to the logs
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
    for name, what in (("model.keras", model), ("encoder.keras", model.encoder)):
        with workdir_lib.atomic_path(os.path.join(workdir, name)) as tmp:
            what.save(tmp)
    sessions = checkpoint.state.get("sessions", [])
    backends = list(dict.fromkeys(s["backend"] for s in sessions if s.get("train_seconds")))
    if "pixels" not in run_info:  # once per run: minutes on 60,000 images, and never changes
        run_info["pixels"] = baselines.pixel_scores(
            probe_train, test, config.image_size, config.normalization, **knn_settings)
        workdir_lib.write_json(run_path, run_info)
    results = baselines.flat_results(
        baselines.frozen_scores(model.encoder, probe_train, test, **knn_settings),
        random_init,
        run_info["pixels"],
    )
    results.update({
        "backend": "+".join(backends) or keras.backend.backend(),
        "epochs": config.epochs,
        "representation_objective": config.representation_objective,
        "train_seconds": round(sum(s.get("train_seconds", 0) for s in sessions), 1),
        "train_seconds_per_session": [round(s.get("train_seconds", 0), 1) for s in sessions],
        "final_logs": {k: v[-1] for k, v in checkpoint.history.items()},
    })
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
    if distillation.enabled(config):
        final_dcor = distillation.heldout_dcors(model, config, setup, test[0])
        results.update(distillation.results(final_dcor, init_dcor))
        log(f"Held-out dCor(z, teacher): {distillation.describe(final_dcor)} "
            f"(at initialisation: {distillation.describe(init_dcor)}).")
    workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
    log(f"{baselines.summary_line(results)}. Outputs in {workdir}.")
    return results
