"""`config.distribution = "data_parallel"` (mvmr_keras/distribution.py).

The key test: one SGD step of a tiny MV-MR with the full loss (pixels
representation and a precomputed teacher embedding) on 2 virtual CPU
devices equals the same step on 1 device: the loss, every logged term, every
variable after the step and BatchNorm's moving statistics, within 1e-5
relative. Each side runs in its own process (tests/data_parallel_step.py),
since virtual devices must exist before the engine starts. Controls show
that a per-replica distance correlation gives another loss, so the
comparison can fail. On PyTorch, data_parallel is refused.
"""

import numpy as np
import pytest

from conftest import BACKEND
from mvmr_keras import distribution, training
from tiny_training_config import tiny_config
from virtual_devices import steps_on_one_and_two_devices

RTOL = 1e-5


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("data_parallel")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "batch.npz",
             original=rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"),
             augmented=rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"),
             teacher=rng.normal(size=(16, 8)).astype("float32"))
    return steps_on_one_and_two_devices("data_parallel_step.py", BACKEND, tmp_path,
                                        tmp_path / "initial.weights.h5")


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a, "float64") - b) / max(np.linalg.norm(b), 1e-30))


# On PyTorch the step tests are not collected: data_parallel is refused
# there (test_config_errors_are_one_line).
def needs_distribution(test):
    return test if BACKEND != "torch" else None


@needs_distribution
def test_two_devices_log_the_one_device_loss_and_terms(steps):
    one, two = steps
    names = sorted(k for k in one if k.startswith("log_"))
    assert names == ["log_dcor_pixels", "log_dcor_teacher", "log_dcor_zz", "log_loss",
                     "log_mse", "log_std"]
    assert sorted(k for k in two if k.startswith("log_")) == names
    for name in names:
        assert relative(two[name], one[name]) < RTOL, (name, float(two[name]), float(one[name]))
    # The logged loss is the true one: the sum of its terms, not N times it.
    terms = (one["log_mse"] + one["log_std"] + 3 - one["log_dcor_zz"] - one["log_dcor_pixels"]
             - one["log_dcor_teacher"])
    assert relative(two["log_loss"], terms) < RTOL


@needs_distribution
def test_two_devices_take_the_one_device_step(steps):
    one, two = steps
    count = sum(k.startswith("weight_") for k in one)
    assert count > 20 and one["moving"].sum() >= 10 and one["moving"].sum() < count
    moved = 0
    for i in range(count):
        before, after1, after2 = one[f"initial_{i}"], one[f"weight_{i}"], two[f"weight_{i}"]
        np.testing.assert_array_equal(two[f"initial_{i}"], before)
        update = after1 - before
        # The variables moved (the moving statistics all; the trainable ones
        # but those behind a zero-initialised residual gamma, whose first
        # gradient is exactly 0)...
        moved += bool(np.linalg.norm(update) > 1e-4 * max(np.linalg.norm(before), 1.0))
        assert np.any(update) or not one["moving"][i], i
        # ...to the same place. A zero-initialised one (BatchNorm's beta, a
        # zero gamma) is its update; float32 gradients summed in another
        # order differ by up to 1e-5 relative (measured 9.6e-6), so updates
        # are compared at 1e-4.
        if np.any(before):
            assert relative(after2, after1) < RTOL, (i, relative(after2, after1))
        assert relative(after2 - before, update) < 10 * RTOL, (i, relative(after2 - before, update))
    assert moved > 0.6 * count, (moved, count)


@needs_distribution
def test_a_per_replica_distance_correlation_is_another_loss(steps):
    one, two = steps
    # The same embeddings: dCor on each half of the batch, averaged, is not
    # dCor of the whole batch.
    assert relative(one["halves_loss"], one["whole_loss"]) > 1000 * RTOL
    if BACKEND == "tensorflow":
        # The step with the all-gather switched off logs another loss.
        assert relative(two["ungathered_log_loss"], two["log_loss"]) > 1000 * RTOL


def test_config_errors_are_one_line(monkeypatch):
    def error(**overrides):
        with pytest.raises(training.ConfigError) as caught:
            training.validate_config(tiny_config(**overrides))
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "unknown distribution 'ddp'" in error(distribution="ddp")
    assert "num_devices must be >= 0" in error(num_devices=-1)
    if BACKEND == "torch":
        message = error(distribution="data_parallel")
        assert "KERAS_BACKEND=jax" in message and "KERAS_BACKEND=tensorflow" in message
        return
    assert "is more than the 1 local devices" in error(distribution="data_parallel",
                                                       num_devices=2)
    monkeypatch.setattr(distribution, "local_devices", lambda: ["cpu:0", "cpu:1", "cpu:2"])
    assert error(distribution="data_parallel") == (
        "batch_size 16 is not divisible by the 3 replicas")
    training.validate_config(tiny_config(distribution="data_parallel", num_devices=2))
    accumulating = dict(distribution="data_parallel", num_devices=2, gradient_accumulation_steps=2)
    if BACKEND == "tensorflow":
        assert "keras-team/keras#20582" in error(**accumulating)
    else:  # JAX: one SPMD step, accumulation included
        training.validate_config(tiny_config(**accumulating))


def test_shipped_default_is_one_device():
    config = tiny_config()
    assert (config.distribution, config.num_devices) == ("", 0)
    assert distribution.validate(config) == 1
