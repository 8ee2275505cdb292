"""Fixtures for the representation tests; the suite runs once per backend.

Helpers are fixtures (not importable functions) so that this folder does not
depend on how the rest of the test suite sets up `sys.path`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def images():
    """`images(shape, seed=0)`: float32 normal images, like normalised ones."""

    def make(shape, seed=0):
        return np.random.default_rng(seed).normal(size=shape).astype("float32")

    return make


@pytest.fixture
def tiny_mvmr():
    """`tiny_mvmr(layers)`: a width-4 ResNet18 MVMR with those representations."""

    def make(layers, image_size=32):
        from mvmr_keras import MVMR, ImageEncoder, ResNetBackbone

        backbone = ResNetBackbone.from_name(
            "resnet18",
            width=4,
            stackwise_num_blocks=(1, 1, 1, 1),
            image_shape=(image_size, image_size, 3),
        )
        return MVMR(ImageEncoder(backbone), projector="32-32", representations=layers)

    return make


@pytest.fixture
def views():
    """`views(n=16, size=32)`: (original, augmented) float32 in [0, 255]."""

    def make(n=16, size=32, seed=0):
        rng = np.random.default_rng(seed)
        original = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
        augmented = np.clip(original + rng.normal(0, 25, original.shape), 0, 255)
        return original, augmented.astype("float32")

    return make


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}"


@pytest.fixture
def apply():
    """`apply(layer, x)`: the layer's output as NumPy, computed as in training.

    Compiled like the train step: `jax.jit` on JAX, an XLA-compiled
    `tf.function` on TensorFlow, eager on PyTorch (Keras's default there).
    """

    def run(layer, x):
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            out = jax.jit(lambda v: layer(v))(x)
        elif backend == "tensorflow":
            import tensorflow as tf

            out = tf.function(lambda v: layer(v), jit_compile=True)(x)
        else:
            out = layer(x)
        return keras.ops.convert_to_numpy(out)

    return run
