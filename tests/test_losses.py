"""Distance correlation against the `dcor` package, and every loss term
against a float64 NumPy restatement of spec section 2."""

import dcor
import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras import losses

# float32 against dcor's float64; the squared-distance diagonal is zeroed
# exactly, which leaves only rounding (about 1e-7 on these shapes).
DCOR_ATOL = 1e-6


def _correlated(rng, shape_x, shape_y, scale=1.0):
    x = rng.normal(size=shape_x) * scale
    y = rng.normal(size=shape_y)
    y = y + np.resize(x.reshape(len(x), -1)[:, :1], (len(y),) + (1,) * (y.ndim - 1))
    return x, y


@pytest.mark.parametrize(
    "shape_x, shape_y, scale",
    [
        ((16, 8), (16, 3), 1.0),
        ((8, 100), (8, 2), 1e3),  # large scale
        ((32, 4, 4, 3), (32, 5), 1e-3),  # rank 4, small scale
        ((64, 256), (64, 8, 8, 3), 1.0),
        ((2, 5), (2, 5), 1.0),  # smallest batch
    ],
)
def test_distance_correlation_matches_dcor(shape_x, shape_y, scale):
    rng = np.random.default_rng(0)
    x, y = _correlated(rng, shape_x, shape_y, scale)
    expected = dcor.distance_correlation(x.reshape(len(x), -1), y.reshape(len(y), -1))
    got = to_numpy(losses.distance_correlation(x.astype("float32"), y.astype("float32")))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=DCOR_ATOL)


def test_distance_correlation_of_independent_and_dependent_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 4)).astype("float32")
    noise = rng.normal(size=(128, 4)).astype("float32")
    squared = x**2  # dependent, yet uncorrelated with x
    independent = to_numpy(losses.distance_correlation(x, noise))
    identical = to_numpy(losses.distance_correlation(x, x))
    nonlinear = to_numpy(losses.distance_correlation(x, squared))
    np.testing.assert_allclose(identical, 1.0, atol=1e-5)
    np.testing.assert_allclose(independent, dcor.distance_correlation(x, noise), rtol=0,
                               atol=DCOR_ATOL)
    np.testing.assert_allclose(nonlinear, dcor.distance_correlation(x, squared), rtol=0,
                               atol=DCOR_ATOL)
    assert nonlinear > independent + 0.1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_distance_correlation_computes_in_float32(dtype):
    rng = np.random.default_rng(2)
    x, y = _correlated(rng, (16, 8), (16, 4))
    x16 = keras.ops.cast(x * 100, dtype)
    y16 = keras.ops.cast(y, dtype)
    got = losses.distance_correlation(x16, y16)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    expected = dcor.distance_correlation(
        to_numpy(keras.ops.cast(x16, "float32")).astype("float64"),
        to_numpy(keras.ops.cast(y16, "float32")).astype("float64"),
    )
    np.testing.assert_allclose(to_numpy(got), expected, rtol=0, atol=DCOR_ATOL)


def test_constant_input_gives_zero_not_nan():
    rng = np.random.default_rng(3)
    constant = np.ones((8, 5), "float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    assert to_numpy(losses.distance_correlation(constant, y)) == 0.0
    assert to_numpy(losses.distance_correlation(y, constant)) == 0.0
    assert to_numpy(losses.distance_correlation(constant, constant)) == 0.0


def test_nan_input_gives_nan():
    x = np.random.default_rng(4).normal(size=(8, 5)).astype("float32")
    y = x.copy()
    y[3, 2] = np.nan
    assert np.isnan(to_numpy(losses.distance_correlation(x, y)))


@pytest.mark.parametrize("batch", [0, 1])
def test_batch_smaller_than_two_is_a_value_error(batch):
    x = np.zeros((batch, 4), "float32")
    with pytest.raises(ValueError, match="at least 2 samples"):
        losses.distance_correlation(x, x)


def test_rank_one_input_is_a_value_error():
    with pytest.raises(ValueError, match="rank >= 2"):
        losses.distance_correlation(np.zeros(4, "float32"), np.zeros((4, 1), "float32"))


def test_distance_correlation_gradient_is_finite_with_duplicate_samples():
    # Duplicated rows put zero distances off the diagonal too: the gradient
    # of sqrt there must not be NaN.
    x = np.random.default_rng(5).normal(size=(8, 6)).astype("float32")
    x[1] = x[0]
    grad = _gradient(lambda v: losses.distance_correlation(v, x[:, :3] ** 2), x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_distance_correlation_gradient_matches_finite_differences():
    # The zeroed diagonal must neither give a NaN gradient (sqrt at 0) nor
    # change the gradient elsewhere: compare with a float64 central
    # difference of the dcor package along a random direction.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 5))
    y = np.tanh(x[:, :2]) + 0.3 * rng.normal(size=(12, 2))
    direction = rng.normal(size=x.shape)
    grad = _gradient(lambda v: losses.distance_correlation(v, y.astype("float32")),
                     x.astype("float32"))
    assert np.all(np.isfinite(grad))
    h = 1e-5
    numeric = (dcor.distance_correlation(x + h * direction, y)
               - dcor.distance_correlation(x - h * direction, y)) / (2 * h)
    np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-3)


def _gradient(fn, x):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad.numpy()
    import tensorflow as tf

    v = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = fn(v)
    return tape.gradient(out, v).numpy()


# --- the loss terms, restated in float64 NumPy ----------------------------


def _np_std_hinge(e, margin=1.0, eps=1e-4):
    return np.mean(np.maximum(0.0, margin - np.sqrt(np.var(e, axis=0, ddof=1) + eps)))


def _np_mvmr(z, z_aug, reps, weights, objective):
    mse = np.mean((z - z_aug) ** 2)
    std = _np_std_hinge(z_aug) + _np_std_hinge(z)
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    dcor_zz = dcor.distance_correlation(z, z_aug)
    total = mse + std + 1.0 - dcor_zz
    dcors = {}
    for name, r in reps.items():
        d = dcor.distance_correlation(flat(r), z_aug)
        dcors[name] = d
        total += weights.get(name, 1.0) * ((1.0 - d) if objective == "maximize" else d)
    return mse, std, dcor_zz, dcors, total


@pytest.mark.parametrize("objective", ["maximize", "minimize"])
def test_mvmr_loss_matches_numpy(objective):
    rng = np.random.default_rng(6)
    z = rng.normal(size=(16, 32)) * rng.uniform(0.2, 2.0, size=32)  # some dims below the margin
    z_aug = z + 0.3 * rng.normal(size=z.shape)
    reps = {"pixels": rng.normal(size=(16, 8, 8, 3)), "other": z_aug[:, :4] ** 2}
    weights = {"pixels": 1.0, "other": 0.5}
    f32 = lambda a: a.astype("float32")  # noqa: E731
    terms = losses.mvmr_loss(
        f32(z), f32(z_aug), {k: f32(v) for k, v in reps.items()}, weights, objective=objective
    )
    mse, std, dcor_zz, dcors, total = _np_mvmr(z, z_aug, reps, weights, objective)
    np.testing.assert_allclose(to_numpy(terms["mse"]), mse, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(terms["std"]), std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(terms["dcor_zz"]), dcor_zz, rtol=0, atol=DCOR_ATOL)
    for name, d in dcors.items():
        np.testing.assert_allclose(to_numpy(terms[f"dcor_{name}"]), d, rtol=0, atol=DCOR_ATOL)
    np.testing.assert_allclose(to_numpy(terms["loss"]), total, rtol=0, atol=1e-5)
    assert set(terms) == {"loss", "mse", "std", "dcor_zz", "dcor_pixels", "dcor_other"}


def test_variance_hinge_is_zero_above_margin_and_positive_when_collapsed():
    rng = np.random.default_rng(7)
    spread = (rng.normal(size=(64, 8)) * 5).astype("float32")
    collapsed = np.zeros((64, 8), "float32")
    assert to_numpy(losses.variance_loss(spread, spread)) == 0.0
    # Fully collapsed: each hinge is 1 - sqrt(eps) per dimension.
    np.testing.assert_allclose(
        to_numpy(losses.variance_loss(collapsed, collapsed)), 2 * (1 - 1e-2), rtol=1e-5
    )


def test_representation_term_objectives():
    assert losses.representation_term(0.25, "maximize") == 0.75
    assert losses.representation_term(0.25, "minimize") == 0.25
    with pytest.raises(ValueError, match="Unknown representation objective"):
        losses.representation_term(0.25, "max")


def test_weights_for_unknown_representation_are_rejected():
    z = np.random.default_rng(8).normal(size=(8, 4)).astype("float32")
    with pytest.raises(ValueError, match="unknown representations"):
        losses.mvmr_loss(z, z, {"pixels": z}, {"hog": 1.0})
