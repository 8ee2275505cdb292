"""`augmented_pixels`: a fresh random augmentation at every call.

That it also draws anew at every step of `model.fit`, inside the compiled
train step, is checked in test_in_training.py.
"""

import keras
import numpy as np
import pytest

from mvmr_keras import representations
from mvmr_keras.representations import AugmentedPixels


def test_shape_dtype_and_finite(images):
    x = images((2, 32, 40, 3))
    out = keras.ops.convert_to_numpy(AugmentedPixels(seed=1)(x))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))


def test_successive_calls_draw_anew_and_the_seed_repeats_them(images):
    x = images((4, 32, 32, 3))
    layer = AugmentedPixels(seed=3)
    first, second = (keras.ops.convert_to_numpy(layer(x)) for _ in range(2))
    assert not np.allclose(first, second)
    again = keras.ops.convert_to_numpy(AugmentedPixels(seed=3)(x))
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)


def test_identity_policy_returns_the_input(images):
    # No crop, flip, jitter, grayscale or blur: the image comes back.
    x = images((2, 16, 16, 3))
    layer = AugmentedPixels(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_probability=0.0,
        jitter_probability=0.0,
        grayscale_probability=0.0,
    )
    out = keras.ops.convert_to_numpy(layer(x))  # 16 px: blur kernel size 1
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)


def test_config_round_trip():
    layer = representations.get("augmented_pixels", seed=5, flip_probability=0.25)
    clone = AugmentedPixels.from_config(layer.get_config())
    assert (clone.seed, clone.flip_probability, clone.name) == (5, 0.25, "augmented_pixels")
    assert clone.crop_scale == (0.08, 1.0) and clone.jitter == (0.8, 0.8, 0.8, 0.2)


def test_rejects_images_that_are_not_rgb(images):
    with pytest.raises(ValueError, match=r"augmented_pixels.*\(B, H, W, 3\).*got 1 channels"):
        representations.get("augmented_pixels")(images((2, 32, 32, 1)))
