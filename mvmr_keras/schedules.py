"""Schedules shared by the training methods, as functions of the step.

- `learning_rate_schedule(config, steps_per_epoch)`: linear warm-up to
  the (scaled) `learning_rate`, then cosine to `final_learning_rate`
  (every method). Its steps are batches (micro-batches under gradient
  accumulation), as Keras's optimisers count them for schedules.
- `scaled_learning_rate(config)`: `learning_rate` scaled by `lr_scaling`
  (`""` none, `linear` or `sqrt`) from `base_batch_size` to the effective
  batch, `batch_size * gradient_accumulation_steps`.
- `cosine(step, total_steps, start, end)`: `end + (start - end) * (1 +
  cos(pi * step / total_steps)) / 2`, held at `end` after `total_steps`;
  DINO's teacher momentum (0.996 -> 1) and weight decay (0.04 -> 0.4)
  follow it per step.
- `CosineSchedule`: the same as a serialisable Keras schedule object.

Every function takes a Python number or a backend tensor (the step inside
a compiled train step) and uses `keras.ops` only.

Example:

>>> float(cosine(0, 100, 0.996, 1.0)), float(cosine(100, 100, 0.996, 1.0))
(0.996, 1.0)
>>> teacher_momentum(50, 100, 0.996)  # halfway: 0.998
"""

import math

import keras
from keras import ops


def cosine(step, total_steps, start, end):
    """`start` at step 0, `end` at `total_steps` (and after), cosine between."""
    step = ops.cast(step, "float32")
    progress = ops.minimum(step / float(max(total_steps, 1)), 1.0)
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))


def teacher_momentum(step, total_steps, base_momentum=0.996):
    """DINO's EMA momentum: `1 - (1 - m0) (cos(pi step / total) + 1) / 2`."""
    return cosine(step, total_steps, base_momentum, 1.0)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class CosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`cosine(step, total_steps, start, end)` as a Keras schedule (for
    weight decay); `end=None` holds `start`."""

    def __init__(self, start, end=None, total_steps=1):
        self.start = float(start)
        self.end = self.start if end is None else float(end)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        return cosine(step, self.total_steps, self.start, self.end)

    def get_config(self):
        return {"start": self.start, "end": self.end, "total_steps": self.total_steps}


LR_SCALINGS = ("", "linear", "sqrt")


def _get(config, name, default):
    get = getattr(config, "get", None)
    value = get(name, default) if get else getattr(config, name, default)
    return default if value is None else value


def gradient_accumulation_steps(config):
    """Batches whose gradients are averaged into one update (1 = off)."""
    return int(_get(config, "gradient_accumulation_steps", 1) or 1)


def effective_batch_size(config):
    """Images per optimiser update: `batch_size` (the global batch) times
    the accumulated batches."""
    return int(config.batch_size) * gradient_accumulation_steps(config)


def scaled_learning_rate(config):
    """`learning_rate` for the effective batch: unchanged without
    `lr_scaling`, else times `effective / base_batch_size` (`linear`, as
    Goyal et al. and DINO) or its square root (`sqrt`, for Adam-like
    optimisers)."""
    scaling = _get(config, "lr_scaling", "")
    if not scaling:
        return float(config.learning_rate)
    ratio = effective_batch_size(config) / float(_get(config, "base_batch_size", 256))
    factor = ratio if scaling == "linear" else math.sqrt(ratio)
    return float(config.learning_rate) * factor


def learning_rate_schedule(config, steps_per_epoch):
    """Linear warm-up to `scaled_learning_rate(config)`, then cosine to
    `final_learning_rate` (never above the peak)."""
    peak = scaled_learning_rate(config)
    total_steps = config.epochs * steps_per_epoch
    # A run shorter than its warm-up (a smoke test) keeps a last epoch of decay.
    warmup_steps = min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch
    alpha = min(config.final_learning_rate / peak, 1.0)
    decay_steps = max(total_steps - warmup_steps, 1)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=decay_steps,
        alpha=alpha,
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )
