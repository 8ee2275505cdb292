"""Every representation inside the compiled MV-MR train step, and precision."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from mvmr_keras import representations
from mvmr_keras.representations import AugmentedPixels

ALL_NAMES = [
    "pixels",
    "scattering",
    "augmented_pixels",
    "hog",
    "local_std",
    "dct",
    "patch_scattering",
    "hog_interpolated",
]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class RecordingAugmentedPixels(AugmentedPixels):
    """Also stores the mean of its output at each call, in a variable.

    Writing into a variable is how a value gets out of the compiled train
    step on every backend (Keras threads it through JAX's stateless step).
    """

    def __init__(self, steps=4, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def build(self, input_shape):
        super().build(input_shape)
        self.means = self.add_weight(
            shape=(self.steps,), initializer="zeros", trainable=False, name="means"
        )
        self.calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="calls"
        )

    def call(self, images):
        out = super().call(images)
        calls, means = self.calls.value, self.means.value
        slot = ops.equal(ops.arange(self.steps, dtype="float32"), calls)
        self.means.assign(ops.where(slot, ops.mean(out), means))
        self.calls.assign(calls + 1.0)
        return out


def test_every_representation_in_fit_and_a_new_augmentation_each_step(
    tiny_mvmr, views
):
    # One model with all of them: a single compilation of the train step.
    recorder = RecordingAugmentedPixels(steps=4, name="augmented_pixels", seed=0)
    layers = [
        recorder if name == "augmented_pixels" else representations.get(name)
        for name in ALL_NAMES
    ]
    model = tiny_mvmr(layers)
    model.compile(optimizer="adam")
    # Two identical batches per epoch, two epochs: steps 1 and 3 (and 2
    # and 4) see the same images, so their augmentations differ only if
    # the layer drew anew.
    original, augmented = views(8)
    original = np.concatenate([original, original])
    augmented = np.concatenate([augmented, augmented])
    history = model.fit(
        original, augmented, batch_size=8, epochs=2, shuffle=False, verbose=0
    )
    for name in ALL_NAMES:
        value = history.history[f"dcor_{name}"][-1]
        assert np.isfinite(value) and 0.0 <= value <= 1.0 + 1e-5, (name, value)
    assert np.isfinite(history.history["loss"][-1])
    assert keras.ops.convert_to_numpy(recorder.calls) == 4
    means = keras.ops.convert_to_numpy(recorder.means)
    assert len(set(np.round(means, 6).tolist())) == 4, means


@pytest.mark.parametrize("name", ALL_NAMES)
def test_float32_output_under_mixed_precision(images, apply, name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = representations.get(name)
        assert layer.compute_dtype == "float32"
        x = keras.ops.cast(images((2, 32, 32, 3)), "bfloat16")
        # augmented_pixels updates its seed state, so it runs eagerly here.
        out = layer(x) if name == "augmented_pixels" else apply(layer, x)
        out = keras.ops.convert_to_numpy(out)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_no_tensorflow_import():
    # Checked in a subprocess on this backend, or on JAX when this run is
    # TensorFlow's (where TensorFlow is imported by design).
    # Import, build (kymatio's filter bank) and run every layer, compiled.
    code = (
        "import sys, keras, numpy as np\n"
        "from mvmr_keras import representations\n"
        "x = np.ones((2, 32, 32, 3), 'float32')\n"
        "for name in representations.available():\n"
        "    layer = representations.get(name)\n"
        "    layer.build(x.shape)\n"
        "    if keras.backend.backend() == 'jax' and name != 'augmented_pixels':\n"
        "        import jax\n"
        "        jax.jit(layer.call)(x)\n"
        "    else:\n"
        "        layer(x)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    backend = "jax" if keras.backend.backend() == "tensorflow" else keras.backend.backend()
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
