"""`config.gradient_accumulation_steps`, `lr_scaling` and `base_batch_size`.

The key test: with SGD, accumulating two batches must move the weights by
the mean of the two one-batch updates, each batch's loss (its distance
correlations) computed over that batch alone: after the first batch nothing
moves, after the second the weights are `(w_a + w_b) / 2`, where `w_a` and
`w_b` are one plain step on each batch from the same start.
"""

import keras
import numpy as np
import pytest

from mvmr_keras import MVMR, methods, representations, schedules, training
from mvmr_keras.configs import dino_digits
from mvmr_keras.methods.base import config_encoder
from tiny_training_config import tiny_config

LEARNING_RATE = 0.05


def tiny_model(config, initial_weights=None, accumulation=None):
    model = MVMR(config_encoder(config, "encoder"), projector=config.projector,
                 representations=[representations.get("pixels")])
    model.build((None, config.image_size, config.image_size, 3))
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.SGD(
        LEARNING_RATE, gradient_accumulation_steps=accumulation))
    return model


def trainable(model):
    return [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]


def test_accumulated_update_is_the_mean_of_the_one_batch_updates():
    config = tiny_config()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"),
                rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")) for _ in range(2)]
    start = tiny_model(config).get_weights()

    one_step = []
    for original, augmented in batches:
        model = tiny_model(config, start)
        model.train_on_batch(original, augmented)
        one_step.append(trainable(model))

    model = tiny_model(config, start, accumulation=2)
    before = trainable(model)
    model.train_on_batch(*batches[0])
    for got, was in zip(trainable(model), before):
        np.testing.assert_array_equal(got, was)  # accumulated, not applied
    model.train_on_batch(*batches[1])
    moved = 0
    for got, a, b, was in zip(trainable(model), *one_step, before):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-4, atol=1e-6)
        moved += int(not np.allclose(a, b))
    # The control: the two batches give different updates, so an update from
    # either batch alone would fail the comparison above.
    assert moved > len(before) // 2


def test_config_builds_an_accumulating_optimizer_with_the_scaled_rate():
    config = tiny_config(gradient_accumulation_steps=4, lr_scaling="linear", base_batch_size=32,
                         learning_rate=1e-3, warmup_epochs=0)
    optimizer = methods.create(config).build_optimizer(steps_per_epoch=8)
    assert optimizer.gradient_accumulation_steps == 4
    # batch 16 x 4 = 64 images per update: twice the base batch.
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(2e-3)
    plain = methods.create(tiny_config()).build_optimizer(steps_per_epoch=8)
    assert plain.gradient_accumulation_steps is None


@pytest.mark.parametrize("scaling, factor", [("", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_lr_scaling_from_the_base_batch_to_the_effective_batch(scaling, factor):
    config = tiny_config(batch_size=64, gradient_accumulation_steps=2, lr_scaling=scaling,
                         base_batch_size=32, learning_rate=0.3)
    assert schedules.effective_batch_size(config) == 128
    assert schedules.scaled_learning_rate(config) == pytest.approx(0.3 * factor)
    schedule = schedules.learning_rate_schedule(config, steps_per_epoch=10)
    warmup_end = config.warmup_epochs * 10
    assert float(keras.ops.convert_to_numpy(schedule(warmup_end))) == pytest.approx(
        0.3 * factor, rel=1e-5)
    last = float(keras.ops.convert_to_numpy(schedule(config.epochs * 10)))
    assert last == pytest.approx(config.final_learning_rate, rel=1e-3)


def test_configs_without_the_new_fields_keep_their_rate():
    config = tiny_config()
    for field in ("gradient_accumulation_steps", "lr_scaling", "base_batch_size"):
        del config[field]
    assert schedules.gradient_accumulation_steps(config) == 1
    assert schedules.scaled_learning_rate(config) == config.learning_rate
    training.validate_config(config)


@pytest.mark.parametrize("overrides, message", [
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be an integer >= 1"),
    ({"lr_scaling": "square"}, "unknown lr_scaling 'square'"),
    ({"lr_scaling": "linear", "base_batch_size": 0}, "needs base_batch_size >= 1"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(training.ConfigError, match=message):
        training.validate_config(tiny_config(**overrides))


def test_dino_refuses_accumulation():
    config = dino_digits.get_config()
    config.gradient_accumulation_steps = 2
    with pytest.raises(training.ConfigError, match="not supported for dino"):
        training.validate_config(config)


def test_accumulating_more_batches_than_the_run_has_is_refused(tmp_path):
    # 2 epochs x 2 steps = 4 batches: an update every 5 would never come.
    config = tiny_config(gradient_accumulation_steps=5)
    with pytest.raises(training.ConfigError, match="more than the run's 4 batches"):
        training.train(config, str(tmp_path / "w"), verbose=0, log=lambda *a: None)


def test_imagenet_reference_accumulates_eight_batches_of_256():
    from mvmr_keras.configs import imagenet

    config = imagenet.get_config()
    assert (config.batch_size, config.gradient_accumulation_steps) == (256, 8)
    assert schedules.effective_batch_size(config) == 2048
    # The reference's rate is the one given: no scaling unless asked for.
    assert schedules.scaled_learning_rate(config) == config.learning_rate == 1e-4
