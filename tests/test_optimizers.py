"""DINO's optimisers: scheduled weight decay on rank >= 2 tensors only, a
last layer frozen for `freeze_steps`, per-tensor clipping, coupled SGD decay."""

import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras import schedules
from mvmr_keras.optimizers import DistillationAdamW, DistillationSGD


def _variables():
    return {
        "kernel": keras.Variable(np.full((3, 2), 2.0, "float32"), name="kernel"),
        "bias": keras.Variable(np.full((2,), 2.0, "float32"), name="bias"),
        "last": keras.Variable(np.full((2, 4), 2.0, "float32"), name="last_layer_direction"),
    }


def _step(optimizer, variables, grads):
    optimizer.apply([np.asarray(grads[k], "float32") for k in variables], list(variables.values()))


def test_adamw_decays_rank_two_tensors_on_the_cosine_schedule():
    variables = _variables()
    lr, total = 0.1, 10
    optimizer = DistillationAdamW(learning_rate=lr, weight_decay=0.04, final_weight_decay=0.4,
                                  decay_steps=total)
    zeros = {k: np.zeros(v.shape) for k, v in variables.items()}
    expected_kernel = 2.0
    for step in range(3):
        _step(optimizer, variables, zeros)  # zero gradients: only the decay moves them
        wd = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * step / total))
        expected_kernel *= 1 - lr * wd
    np.testing.assert_allclose(to_numpy(variables["kernel"]), expected_kernel, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(variables["bias"]), 2.0)  # rank 1: no decay
    assert float(to_numpy(optimizer.current_weight_decay())) == pytest.approx(
        float(to_numpy(schedules.cosine(3, total, 0.04, 0.4))))


def test_the_last_layer_is_frozen_for_freeze_steps_then_moves_as_in_pytorch():
    variables = _variables()
    lr, wd = 0.1, 0.04
    optimizer = DistillationAdamW(learning_rate=lr, weight_decay=wd, freeze_steps=2)
    grads = {k: np.full(v.shape, 0.5) for k, v in variables.items()}
    for _ in range(2):
        _step(optimizer, variables, grads)
    np.testing.assert_array_equal(to_numpy(variables["last"]), 2.0)  # no gradient, no decay
    assert not np.allclose(to_numpy(variables["kernel"]), 2.0)
    # torch.optim.AdamW on a parameter whose first gradient comes now: decay,
    # then a bias-corrected first step of exactly lr * g / |g|.
    for step in (1, 2):
        _step(optimizer, variables, grads)
    m = v = 0.0
    expected = 2.0
    for step in (1, 2):
        expected *= 1 - lr * wd
        m, v = 0.9 * m + 0.1 * 0.5, 0.999 * v + 0.001 * 0.25
        expected -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-7)
    np.testing.assert_allclose(to_numpy(variables["last"]), expected, rtol=1e-5)


def test_clipnorm_clips_each_tensor_by_its_own_norm():
    variables = {"a": keras.Variable(np.zeros((2, 2), "float32"), name="a"),
                 "b": keras.Variable(np.zeros((2, 2), "float32"), name="b")}
    optimizer = DistillationSGD(learning_rate=1.0, momentum=0.0, weight_decay=0.0, clipnorm=1.0)
    grads = {"a": np.full((2, 2), 10.0), "b": np.full((2, 2), 0.1)}  # norms 20 and 0.2
    _step(optimizer, variables, grads)
    np.testing.assert_allclose(to_numpy(variables["a"]), -0.5, rtol=1e-5)  # clipped to norm 1
    np.testing.assert_allclose(to_numpy(variables["b"]), -0.1, rtol=1e-5)  # below: unchanged


def test_sgd_weight_decay_is_added_to_the_gradient_with_momentum():
    w = keras.Variable(np.full((2, 2), 1.0, "float32"), name="kernel")
    optimizer = DistillationSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.5)
    g = np.full((2, 2), 0.2, "float32")
    # torch.optim.SGD: d = g + wd * w; buf = 0.9 * buf + d; w -= lr * buf.
    value, buf = 1.0, 0.0
    for _ in range(3):
        optimizer.apply([g], [w])
        d = 0.2 + 0.5 * value
        buf = 0.9 * buf + d
        value -= 0.1 * buf
    np.testing.assert_allclose(to_numpy(w), value, rtol=1e-5)


def test_optimizers_serialise():
    optimizer = DistillationAdamW(learning_rate=1e-3, weight_decay=0.04, final_weight_decay=0.4,
                                  decay_steps=7, freeze_steps=3, clipnorm=3.0)
    again = DistillationAdamW.from_config(optimizer.get_config())
    assert (again.final_weight_decay, again.decay_steps, again.freeze_steps, again.clipnorm) == (
        0.4, 7, 3, 3.0)


def test_decay_all_decays_biases_too():
    variables = _variables()
    optimizer = DistillationSGD(learning_rate=0.1, momentum=0.0, weight_decay=0.5, decay_all=True)
    _step(optimizer, variables, {k: np.zeros(v.shape) for k, v in variables.items()})
    for name in variables:  # w - lr * wd * w = 2 - 0.1 * 0.5 * 2
        np.testing.assert_allclose(to_numpy(variables[name]), 1.9, rtol=1e-6, err_msg=name)
    assert DistillationSGD.from_config(optimizer.get_config()).decay_all


def test_grouped_optimizer_steps_each_group_with_its_own_optimizer():
    from mvmr_keras.optimizers import GroupedOptimizer

    a = [keras.Variable(np.ones((2, 2), "float32"), name="a0"),
         keras.Variable(np.ones((2,), "float32"), name="a1")]
    b = [keras.Variable(np.ones((3,), "float32"), name="b0")]
    optimizer = GroupedOptimizer([keras.optimizers.SGD(0.5, name="for_a"),
                                  keras.optimizers.Adam(0.1, name="for_b")])
    with pytest.raises(ValueError, match="set_groups"):
        optimizer.build(a + b)
    optimizer.set_groups([a, b])
    # Interleaved order: routing follows the groups, not the positions.
    variables = [b[0], a[0], a[1]]
    optimizer.apply([np.ones(v.shape, "float32") for v in variables], variables)
    np.testing.assert_allclose(to_numpy(a[0]), 0.5)  # SGD: 1 - 0.5 * 1
    np.testing.assert_allclose(to_numpy(a[1]), 0.5)
    np.testing.assert_allclose(to_numpy(b[0]), 0.9, rtol=1e-4)  # Adam's first step: 1 - lr
    assert [int(to_numpy(o.iterations)) for o in optimizer.optimizers] == [1, 1]
    assert int(to_numpy(optimizer.iterations)) == 1
    assert len(optimizer.variables) == 2 + len(optimizer.optimizers[0].variables) + len(
        optimizer.optimizers[1].variables)
    np.testing.assert_allclose(float(to_numpy(optimizer.learning_rate)), 0.5)
    again = GroupedOptimizer.from_config(optimizer.get_config())
    assert [type(o).__name__ for o in again.optimizers] == ["SGD", "Adam"]
    stranger = GroupedOptimizer([keras.optimizers.SGD(0.1)])
    stranger.set_groups([a])
    with pytest.raises(ValueError, match="in no optimizer group"):
        stranger.build(a + b)
