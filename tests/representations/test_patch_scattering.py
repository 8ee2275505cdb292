"""`patch_scattering`: kymatio's transform of each patch of a grid."""

import keras
import numpy as np
import pytest
from kymatio.scattering2d.frontend.numpy_frontend import ScatteringNumPy2D

from mvmr_keras import representations
from mvmr_keras.representations import PatchScattering2D


def reference(x, J, grid):
    """Each patch through kymatio, maps placed where the patches lie."""
    batch, height, width, channels = x.shape
    ph, pw = height // grid, width // grid
    scattering = ScatteringNumPy2D(J=J, shape=(ph, pw), L=8)
    rows = []
    for i in range(grid):
        row = []
        for j in range(grid):
            patch = x[:, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw]
            s = scattering(np.transpose(patch, (0, 3, 1, 2)).astype("float64"))
            _, _, paths, oh, ow = s.shape
            row.append(np.transpose(s, (0, 3, 4, 1, 2)).reshape(batch, oh, ow, channels * paths))
        rows.append(np.concatenate(row, axis=2))
    return np.concatenate(rows, axis=1)


@pytest.mark.parametrize("height, width", [(32, 32), (34, 48)])
def test_matches_kymatio_per_patch(images, apply, height, width):
    x = images((2, height, width, 3))
    expected = reference(x, J=2, grid=4)
    layer = PatchScattering2D(J=2, grid=4)
    out = apply(layer, x)
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-3


def test_config_round_trip():
    layer = representations.get("patch_scattering", J=1, grid=2)
    clone = PatchScattering2D.from_config(layer.get_config())
    assert (clone.J, clone.L, clone.grid, clone.name) == (1, 8, 2, "patch_scattering")


def test_rejects_patches_smaller_than_2_to_the_J(images):
    with pytest.raises(ValueError, match=r"patch_scattering.*\(B, >=16, >=16, C\).*got 12x32"):
        representations.get("patch_scattering")(images((2, 12, 32, 3)))
