"""`hog` and `hog_interpolated`: against float64 NumPy restatements."""

import keras
import numpy as np
import pytest

from mvmr_keras import representations
from mvmr_keras.representations import HOG, InterpolatedHOG

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], "float64")


def sobel(x):
    """gx, gy: cross-correlation with Kx and Kx^T, zero padding 1."""
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def correlate(kernel):
        return sum(
            kernel[a, b] * padded[:, a:a + height, b:b + width]
            for a in range(3)
            for b in range(3)
        )

    return correlate(SOBEL_X), correlate(SOBEL_X.T)


def average_pool(hist, pool):
    batch, height, width, depth = hist.shape
    return hist.reshape(batch, height // pool, pool, width // pool, pool, depth).mean(axis=(2, 4))


def reference_hog(x, nbins, pool, interpolated=False):
    """Spec section 4, in float64: write mag to floor(p), add 1 - mag to ceil(p)."""
    x = x.astype("float64")
    batch, height, width, channels = x.shape
    gx, gy = sobel(x)
    mag = np.sqrt(gx**2 + gy**2)
    p = np.arctan2(gx, gy) / np.pi * nbins
    hist = np.zeros((batch, height, width, channels, nbins))
    low = np.floor(p).astype(int) % nbins
    if interpolated:
        fraction = p - np.floor(p)
        np.put_along_axis(hist, low[..., None], (mag * (1 - fraction))[..., None], axis=-1)
        high = (low + 1) % nbins
        hist += (np.arange(nbins) == high[..., None]) * (mag * fraction)[..., None]
    else:
        np.put_along_axis(hist, low[..., None], mag[..., None], axis=-1)
        high = np.ceil(p).astype(int) % nbins
        hist += (np.arange(nbins) == high[..., None]) * (1 - mag)[..., None]
    hist = hist.reshape(batch, height, width, channels * nbins)
    # Cells with a pixel whose p is within float32 rounding of an integer,
    # where float32 and float64 may pick different bins.
    ambiguous = np.abs(p - np.round(p)) < 1e-4
    ambiguous = np.repeat(ambiguous, nbins, axis=-1).astype("float64")
    return average_pool(hist, pool), average_pool(ambiguous, pool) > 0


@pytest.mark.parametrize(
    "cls, interpolated", [(HOG, False), (InterpolatedHOG, True)]
)
@pytest.mark.parametrize(
    "height, width, nbins, pool", [(32, 32, 24, 8), (16, 16, 24, 8), (24, 40, 9, 4)]
)
def test_matches_numpy(images, apply, cls, interpolated, height, width, nbins, pool):
    x = images((2, height, width, 3))
    expected, ambiguous = reference_hog(x, nbins, pool, interpolated)
    layer = cls(nbins=nbins, pool=pool)
    out = apply(layer, x)
    assert out.dtype == np.float32
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    assert ambiguous.mean() < 0.05
    np.testing.assert_allclose(out[~ambiguous], expected[~ambiguous], rtol=1e-4, atol=1e-4)


def test_reference_quirk_total_vote_is_one_per_pixel(images, apply):
    # mag + (1 - mag): every pixel adds 1 over its bins, whatever its gradient.
    out = apply(HOG(nbins=8, pool=4), images((2, 8, 8, 1)) * 10)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_config_round_trip():
    for name in ("hog", "hog_interpolated"):
        layer = representations.get(name, nbins=12, pool=4)
        clone = type(layer).from_config(layer.get_config())
        assert (clone.nbins, clone.pool, clone.name) == (12, 4, name)


def test_rejects_sizes_not_divisible_by_pool(images):
    with pytest.raises(ValueError, match=r"hog.*divisible by 8.*got 32x36"):
        representations.get("hog")(images((2, 32, 36, 3)))
