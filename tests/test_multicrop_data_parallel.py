"""`distribution = "data_parallel"` for DINO and MOKD.

One step of a tiny DINO and of a tiny MOKD on 2 virtual CPU devices equals
the same step on 1 device: every logged loss term, and every variable after
the step (students, EMA teachers, the centres, the step counters,
BatchNorm's moving statistics), within 1e-5 relative. The centres moving as
on one device shows they are means over the global batch, not over a
replica's half; per-tensor clipping tight enough to act on every tensor,
and SGD's coupled weight decay, show the gradient is clipped and decayed
after the replicas' parts are summed. Each side runs in its own process
(tests/multicrop_data_parallel_step.py). PyTorch refuses data_parallel
(tests/test_data_parallel.py).
"""

import numpy as np
import pytest

from conftest import BACKEND
from mvmr_keras import training
from mvmr_keras.configs import dino_digits, mokd_digits
from virtual_devices import steps_on_one_and_two_devices

RTOL = 1e-5

needs_distribution = pytest.mark.skipif(
    BACKEND == "torch", reason="Keras has no torch distribution: data_parallel is refused "
    "there (test_torch_refuses_data_parallel)")


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multicrop_data_parallel")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "batch.npz",
             global_crops=rng.uniform(0, 255, (8, 2, 32, 32, 3)).astype("float32"),
             local_crops=rng.uniform(0, 255, (8, 2, 16, 16, 3)).astype("float32"))
    # The 1-device run writes each model's initial weights into tmp_path.
    return steps_on_one_and_two_devices("multicrop_data_parallel_step.py", BACKEND, tmp_path,
                                        tmp_path)


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a, "float64") - b) / max(np.linalg.norm(b), 1e-30))


@needs_distribution
@pytest.mark.parametrize("method", ["dino", "mokd"])
def test_two_devices_log_the_one_device_losses(steps, method):
    one, two = steps
    names = sorted(k for k in one if k.startswith(f"{method}_log_"))
    expected = {"dino": "dino_log_teacher_entropy", "mokd": "mokd_log_vit_cafs"}[method]
    assert expected in names and f"{method}_log_loss" in names
    assert sorted(k for k in two if k.startswith(f"{method}_log_")) == names
    for name in names:
        assert relative(two[name], one[name]) < RTOL, (name, float(two[name]), float(one[name]))


@needs_distribution
@pytest.mark.parametrize("method", ["dino", "mokd"])
def test_two_devices_take_the_one_device_step(steps, method):
    one, two = steps
    count = sum(k.startswith(f"{method}_weight_") for k in one)
    assert count > 40
    moved = 0
    for i in range(count):
        before = one[f"{method}_initial_{i}"]
        after1, after2 = one[f"{method}_weight_{i}"], two[f"{method}_weight_{i}"]
        np.testing.assert_array_equal(two[f"{method}_initial_{i}"], before)
        update = after1 - before
        moved += bool(np.any(update))
        # float32 sums in another order: 1e-5 relative on the values, 1e-4
        # on the updates (tests/test_data_parallel.py).
        path = str(one[f"{method}_paths"][i])
        if np.any(before):
            assert relative(after2, after1) < RTOL, (path, relative(after2, after1))
        # A gradient of float noise (a bias softmax or BatchNorm cancels)
        # moves its variable by ~1e-10 either way: an absolute floor.
        difference = np.linalg.norm(after2.astype("float64") - after1)
        assert difference <= 10 * RTOL * np.linalg.norm(update) + 1e-7, (path, difference)
    assert moved > 0.6 * count, (moved, count)


def test_torch_refuses_data_parallel():
    for config in (dino_digits.get_config(), mokd_digits.get_config()):
        config.distribution = "data_parallel"
        if BACKEND == "torch":
            with pytest.raises(training.ConfigError, match="KERAS_BACKEND=jax"):
                training.validate_config(config)
        else:
            training.validate_config(config)  # one local device: a replica of 1
