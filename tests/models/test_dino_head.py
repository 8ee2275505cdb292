"""The DINO head: sizes, L2-normalised bottleneck, weight-normalised last layer."""

import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.models.dino_head import DINOHead


def test_output_is_the_normalised_bottleneck_times_the_normalised_columns():
    head = DINOHead(out_dim=32, hidden_dim=16, bottleneck_dim=8)
    x = np.random.default_rng(0).normal(size=(4, 12)).astype("float32")
    out = to_numpy(head(x))
    assert out.shape == (4, 32)
    h = x
    for layer in head.mlp[:-1]:
        h = to_numpy(layer(h))
    h = to_numpy(head.mlp[-1](h))
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    v = to_numpy(head.last_layer_direction)
    expected = h @ (v / np.linalg.norm(v, axis=0, keepdims=True))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(out).max() <= 1 + 1e-5  # cosines, with the gain at 1


def test_layers_initialisation_and_gain():
    frozen = DINOHead(out_dim=64, hidden_dim=32, bottleneck_dim=16)
    frozen.build((None, 8))
    names = [v.name for v in frozen.trainable_weights]
    assert "last_layer_gain" not in names and "last_layer_direction" in names
    assert len(frozen.mlp) == 3 and frozen.mlp[0].activation is keras.activations.gelu
    assert all(not to_numpy(layer.bias).any() for layer in frozen.mlp)  # zero biases
    assert to_numpy(frozen.mlp[1].kernel).std() == pytest.approx(0.02 * 0.88, rel=0.2)
    np.testing.assert_array_equal(to_numpy(frozen.last_layer_gain), 1.0)
    trainable = DINOHead(out_dim=64, hidden_dim=32, bottleneck_dim=16, norm_last_layer=False)
    trainable.build((None, 8))
    assert "last_layer_gain" in [v.name for v in trainable.trainable_weights]
    assert tuple(trainable.last_layer_gain.shape) == (1, 64)  # rank 2, decayed as in DINO


def test_config_round_trip_and_bad_sizes():
    head = DINOHead(out_dim=64, hidden_dim=32, bottleneck_dim=16, norm_last_layer=False)
    again = DINOHead.from_config(head.get_config())
    assert (again.out_dim, again.hidden_dim, again.bottleneck_dim, again.norm_last_layer) == (
        64, 32, 16, False)
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        DINOHead(out_dim=0)


def test_use_bn_puts_batchnorm_before_each_hidden_gelu():
    head = DINOHead(out_dim=32, hidden_dim=16, bottleneck_dim=8, use_bn=True)
    x = np.random.default_rng(1).normal(3.0, 1.0, size=(64, 12)).astype("float32")
    out = to_numpy(head(x, training=True))
    assert len(head.norms) == 2 and head.mlp[0].activation is not keras.activations.gelu
    h = x
    for layer in head.mlp[:2]:
        h = to_numpy(layer(h))
        h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # batch statistics, gain 1, offset 0
        h = 0.5 * h * (1.0 + np.vectorize(__import__("math").erf)(h / np.sqrt(2.0)))
    h = to_numpy(head.mlp[2](h))
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    v = to_numpy(head.last_layer_direction)
    np.testing.assert_allclose(out, h @ (v / np.linalg.norm(v, axis=0, keepdims=True)),
                               rtol=1e-3, atol=1e-4)
    assert DINOHead.from_config(head.get_config()).use_bn
    # Inference uses the moving statistics (one step of momentum 0.9 from 0 and 1): another output.
    assert np.abs(to_numpy(head(x, training=False)) - out).max() > 1e-3
