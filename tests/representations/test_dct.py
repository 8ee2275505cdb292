"""`dct`: equal to scipy.fft.dctn(x, type=2, axes=(1, 2))."""

import keras
import numpy as np
import pytest
import scipy.fft

from mvmr_keras import representations
from mvmr_keras.representations import DCT2D


@pytest.mark.parametrize("height, width", [(32, 32), (16, 16), (24, 40)])
def test_matches_scipy(images, apply, height, width):
    x = images((2, height, width, 3))
    expected = scipy.fft.dctn(x.astype("float64"), type=2, axes=(1, 2))
    out = apply(DCT2D(), x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - expected).max() < 1e-5 * np.abs(expected).max()


def test_config_round_trip():
    layer = representations.get("dct")
    assert DCT2D.from_config(layer.get_config()).name == "dct"


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"dct.*rank 4.*\(2, 32, 32\)"):
        representations.get("dct")(np.zeros((2, 32, 32), "float32"))
