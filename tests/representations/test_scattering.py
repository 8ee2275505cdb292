"""`scattering`: against kymatio's Scattering2D (NumPy frontend)."""

import keras
import numpy as np
import pytest

# kymatio's top-level `kymatio.numpy` fails to import with SciPy >= 1.15
# (`sph_harm` is gone); the 2-D NumPy frontend module itself imports fine.
from kymatio.scattering2d.frontend.numpy_frontend import ScatteringNumPy2D

from mvmr_keras import representations
from mvmr_keras.representations import Scattering2D


def kymatio_nhwc(x, J, L=8):
    """kymatio's transform of NHWC `x`, laid out as ours: `(B, h, w, C*K)`."""
    batch, height, width, channels = x.shape
    s = ScatteringNumPy2D(J=J, shape=(height, width), L=L)(
        np.transpose(x, (0, 3, 1, 2)).astype("float64")
    )
    _, _, paths, out_h, out_w = s.shape
    return np.transpose(s, (0, 3, 4, 1, 2)).reshape(
        batch, out_h, out_w, channels * paths
    )


@pytest.mark.parametrize(
    "height, width, J",
    [(32, 32, 2), (16, 16, 2), (24, 40, 2), (30, 18, 2), (16, 16, 3)],
)
def test_matches_kymatio(images, apply, height, width, J):
    x = images((2, height, width, 3))
    expected = kymatio_nhwc(x, J)
    layer = Scattering2D(J=J, L=8, shape=(height, width))
    out = apply(layer, x)
    assert out.dtype == np.float32
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    relative = np.linalg.norm(out - expected) / np.linalg.norm(expected)
    assert relative < 1e-3
    assert np.abs(out - expected).max() < 1e-3 * np.abs(expected).max()


def test_path_count_and_channel_layout(images, apply):
    # K = 1 + J*L + L*L*J*(J-1)/2, and channel c's path k at index c*K + k.
    x = images((2, 16, 16, 2))
    two_channels = Scattering2D(J=2, L=4)
    paths = two_channels.paths
    assert paths == 1 + 2 * 4 + 4 * 4 * 2 * 1 // 2
    out = apply(two_channels, x)
    second = apply(Scattering2D(J=2, L=4), x[..., 1:])
    np.testing.assert_allclose(out[..., paths:], second, rtol=1e-5, atol=1e-6)


def test_config_round_trip(images, apply):
    layer = representations.get("scattering", J=2, L=6, shape=(16, 16))
    clone = Scattering2D.from_config(layer.get_config())
    assert (clone.J, clone.L, clone.image_size, clone.name) == (2, 6, (16, 16), "scattering")
    x = images((2, 16, 16, 3))
    np.testing.assert_allclose(
        apply(clone, x), apply(layer, x), rtol=1e-6, atol=1e-6
    )


def test_rejects_images_smaller_than_2_to_the_J(images):
    with pytest.raises(ValueError, match=r"scattering.*at least 4x4.*got 3x8"):
        representations.get("scattering", J=2)(images((2, 3, 8, 3)))


def test_rejects_another_size_than_its_shape(images):
    layer = representations.get("scattering", shape=(32, 32))
    with pytest.raises(ValueError, match=r"scattering.*32x32.*got images of 16x16"):
        layer(images((2, 16, 16, 3)))


def test_rejects_another_channel_count_than_built_for(images):
    layer = representations.get("scattering")
    layer.build((2, 16, 16, 3))
    with pytest.raises(ValueError, match=r"scattering.*3 channels.*\(2, 16, 16, 1\)"):
        layer(images((2, 16, 16, 1)))
