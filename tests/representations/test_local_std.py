"""`local_std`: sqrt(box(x^2) - box(x)^2 + 1e-8), reflect padding, NaN -> 0."""

import keras
import numpy as np
import pytest

from mvmr_keras import representations
from mvmr_keras.representations import LocalStd


def reference(x, size):
    """The definition in float64 NumPy."""
    r = size // 2
    height, width = x.shape[1:3]
    padded = np.pad(x.astype("float64"), ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")

    def box(v):
        return sum(
            v[:, i:i + height, j:j + width] for i in range(size) for j in range(size)
        ) / size**2

    with np.errstate(invalid="ignore"):
        std = np.sqrt(box(padded**2) - box(padded) ** 2 + 1e-8)
    return np.nan_to_num(std, nan=0.0)


@pytest.mark.parametrize("height, width, size", [(32, 32, 3), (16, 16, 3), (24, 40, 5)])
def test_matches_numpy(images, apply, height, width, size):
    x = images((2, height, width, 3))
    out = apply(LocalStd(size=size), x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, reference(x, size), rtol=1e-4, atol=1e-4)


def test_constant_image_gives_finite_values(apply):
    # Rounding can make box(x^2) - box(x)^2 < -1e-8; NaN becomes 0.
    x = np.full((2, 8, 8, 3), 3.3, "float32")
    out = apply(LocalStd(), x)
    assert np.all(np.isfinite(out)) and out.max() < 1e-2


def test_config_round_trip():
    layer = representations.get("local_std", size=5)
    clone = LocalStd.from_config(layer.get_config())
    assert (clone.size, clone.name) == (5, "local_std")


def test_rejects_images_too_small_for_the_window(images):
    with pytest.raises(ValueError, match=r"local_std.*at least 2x2.*got 1x8"):
        representations.get("local_std")(images((2, 1, 8, 3)))
