"""The MV-MR trainer: config -> model, data, optimiser -> fit -> workdir.

`train.py` is a thin flag parser around `train(config, workdir)`; tests call
the functions here directly. A run writes to its workdir:

    config.json       the config it ran with
    backup/           BackupAndRestore state (resume after an interruption)
    tensorboard/      TensorBoard logs
    history.json      every epoch's logs, kept across resumptions
    online_probe.keras    the online linear probe, resumed with the run
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
import time

import keras
import numpy as np

from mvmr_keras import data as data_lib
from mvmr_keras import callbacks as callbacks_lib
from mvmr_keras import evaluation, losses, plots
from mvmr_keras import representations as representations_lib
from mvmr_keras.models import MVMR, RESNET_ARCHITECTURES, ImageEncoder, ResNetBackbone
from mvmr_keras.evaluation import baselines
from mvmr_keras.models.encoder import NORMALIZATION_STATS
from mvmr_keras.teachers import distillation

MIXED_PRECISION_POLICIES = ("", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw")


class ConfigError(ValueError):
    """A config that cannot run; the message says what to change."""


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite."""


def _config_dict(config):
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def validate_config(config):
    """Raises `ConfigError` with a one-line reason for a config that can't run."""
    c = _config_dict(config)
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
        representations_lib.parse(c["representations"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for mode in _after_training_modes(config):
        if mode not in evaluation.MODES:
            raise ConfigError(
                f"unknown evaluation.after_training mode {mode!r}; available: "
                f"{list(evaluation.MODES)}"
            )
    _validate_teacher(c.get("teacher") or {})


def _after_training_modes(config):
    block = config.get("evaluation") or {}
    return [m.strip() for m in (block.get("after_training") or "").split(",") if m.strip()]


def evaluation_callbacks(config, probe_train, test, probe_checkpoint=None):
    """The online probe and kNN monitor the config's `evaluation` block asks
    for, on `(images, labels)` of the probe-train and test splits. They go
    before the callbacks that read their logs. The probe is saved to (and
    resumed from) `probe_checkpoint` when given."""
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


def _validate_teacher(t):
    if not t.get("preset"):
        return
    from mvmr_keras.teachers.clip import INTERPOLATIONS

    for field in ("image_size", "batch_size", "cache_chunk_size"):
        if t[field] < 1:
            raise ConfigError(f"teacher.{field} must be >= 1; got {t[field]}")
    if t["weight"] < 0:
        raise ConfigError(f"teacher.weight must be >= 0; got {t['weight']}")
    if t["interpolation"] not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown teacher.interpolation {t['interpolation']!r}; "
            f"available: {list(INTERPOLATIONS)}"
        )


def build_model(config, teacher=None):
    """The MVMR model a config describes (not compiled).

    With a teacher in the config, `teacher` is the live teacher layer, or
    `None` when the batches bring cached teacher embeddings."""
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
        teacher=teacher,
        teacher_weight=config.teacher.weight if distillation.enabled(config) else None,
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


class JSONHistory(keras.callbacks.Callback):
    """Writes every epoch's logs to a JSON file as the epoch ends, so that
    nothing is lost on interruption and a resumed run appends to it."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def read(self):
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as f:
            return json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        history = self.read()
        for name, value in (logs or {}).items():
            values = history.setdefault(name, [])
            del values[epoch:]  # an epoch re-run after a resume replaces its entry
            values.extend([None] * (epoch - len(values)))
            values.append(float(value))
        _write_json(self.path, history)


def _write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)  # atomic: an interruption never leaves half a file


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
    _write_json(os.path.join(workdir, "config.json"), _config_dict(config))


def _completed_epochs(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))  # epochs completed


def load_split(config, split):
    try:
        return data_lib.load_numpy(config.dataset, split, data_dir=config.data_dir or None)
    except data_lib.DatasetNotFoundError as e:
        raise ConfigError(str(e)) from None


def load_train_stream(config):
    """The SSL training split as a `tf.data` stream (never all in memory)
    and its number of images."""
    try:
        ds = data_lib.load(config.dataset, config.train_split, data_dir=config.data_dir or None)
    except data_lib.DatasetNotFoundError as e:
        raise ConfigError(str(e)) from None
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
    _check_workdir(config, workdir)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.mixed_precision or "float32")
    try:
        return _train(config, workdir, verbose, log, callbacks)
    finally:
        keras.config.set_dtype_policy(previous_policy)


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

            # (image, label, embedding): the embedding travels with its
            # image (the stream's order is the cache's order).
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

    _save_config(config, workdir)
    # The untrained encoder, probed first: the baseline the run must beat.
    model = build_model(config, teacher=teacher)
    if distillation.enabled(config):
        heldout = min(len(test[0]), config.teacher.heldout_images)
        heldout_args = (test[0][:heldout], setup.test_embeddings[:heldout], config.image_size)
        init_dcor = distillation.heldout_dcor(model, *heldout_args)
        log(f"Held-out dCor(z, teacher) at initialisation: {init_dcor:.4f}")
    random_init = evaluation.frozen_scores(model.encoder, probe_train, test,
                                           **baselines.knn_settings(config))
    random_init_top1 = random_init["linear_probe_top1"]
    log(f"Linear probe top-1 of the encoder at initialisation: {random_init_top1:.4f}")

    model.compile(optimizer=build_optimizer(config, steps_per_epoch))
    backup_dir = os.path.join(workdir, "backup")
    done = _completed_epochs(backup_dir)
    probe_checkpoint = os.path.join(workdir, "online_probe.keras")
    if done:
        log(f"Resuming from {backup_dir}: {done} of {config.epochs} epochs already completed.")
    elif os.path.exists(probe_checkpoint):
        os.remove(probe_checkpoint)  # a probe of another run's encoder
    nan_stopper = StopOnNaNTerm(model.term_names)
    history_writer = JSONHistory(os.path.join(workdir, "history.json"))
    start = time.time()
    model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        shuffle=False,  # the dataset reshuffles itself every epoch
        callbacks=[
            keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
            *evaluation_callbacks(config, probe_train, test, probe_checkpoint),
            keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
            history_writer,
            nan_stopper,
            *callbacks,
        ],
    )
    train_seconds = time.time() - start
    if nan_stopper.bad_term is not None:
        epoch, step = nan_stopper.bad_at
        raise TrainingDiverged(
            f"loss term '{nan_stopper.bad_term}' became NaN/inf at epoch {epoch}, "
            f"step {step}; training stopped (last good epoch kept in {backup_dir}). "
            "Try a lower learning_rate or float32 precision."
        )

    model.save(os.path.join(workdir, "model.keras"))
    model.encoder.save(os.path.join(workdir, "encoder.keras"))
    results = baselines.flat_results(
        evaluation.frozen_scores(model.encoder, probe_train, test, **baselines.knn_settings(config)),
        random_init,
        baselines.pixel_scores(probe_train, test, config.image_size, config.normalization,
                               **baselines.knn_settings(config)),
    )
    results.update({
        "backend": keras.backend.backend(),
        "epochs": config.epochs,
        "representation_objective": config.representation_objective,
        "train_seconds_this_session": round(train_seconds, 1),
        "final_logs": {k: v[-1] for k, v in history_writer.read().items()},
    })
    plots.plot_curves(history_writer.read(), os.path.join(workdir, "curves.png"),
                      baselines.reference_lines(results))
    for mode in _after_training_modes(config):
        # The untrained encoder is gone by now; its scores are above.
        found = evaluation.evaluate(mode, os.path.join(workdir, "encoder.keras"), config,
                                    workdir, verbose=0, log=log, baselines=("pixels",))
        results[f"evaluation_{mode}"] = {
            k: found[k] for k in ("top1", "top5", "map", "baselines") if k in found
        }
    if distillation.enabled(config):
        results["teacher_dcor_heldout"] = distillation.heldout_dcor(model, *heldout_args)
        results["teacher_dcor_heldout_init"] = init_dcor
        log(f"Held-out dCor(z, teacher): {results['teacher_dcor_heldout']:.4f} "
            f"(at initialisation: {init_dcor:.4f}).")
    _write_json(os.path.join(workdir, "results.json"), results)
    log(f"{baselines.summary_line(results)}. Outputs in {workdir}.")
    return results
