"""`patch_scattering`: the scattering transform of each patch of a grid."""

import keras
from keras import ops

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register
from mvmr_keras.representations.scattering import Scattering2D


@register("patch_scattering")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class PatchScattering2D(Representation):
    """Cuts each image into a `grid x grid` set of patches, scatters each.

    As the reference: patches of `H // grid x W // grid` pixels (a remainder
    is dropped), each transformed on its own (own reflect padding) by a
    `Scattering2D(J, L)`. The patch maps are laid out where their patches
    lie, so the output is one NHWC map; distance correlation does not
    depend on the order of the features, so this matches the reference's
    flattened patch-major order.

    Args:
        J, L: the scattering's scales and angles.
        grid: patches per side.

    Input `(B, H, W, C)`; output
    `(B, grid * (H // grid // 2**J), grid * (W // grid // 2**J), C * K)`
    float32, `K = 1 + J*L + L*L*J*(J-1)/2`.

    Example:

    >>> PatchScattering2D(J=2, grid=4)(np.random.rand(2, 32, 32, 3)).shape
    (2, 8, 8, 243)
    """

    def __init__(self, J=2, L=8, grid=4, **kwargs):
        super().__init__(**kwargs)
        self.J = int(J)
        self.L = int(L)
        self.grid = int(grid)
        if self.grid < 1:
            raise ValueError(
                f"Representation {self.description} needs grid >= 1; got "
                f"grid={grid}."
            )
        self.scattering = Scattering2D(J=self.J, L=self.L, name=f"{self.name}_scattering")

    def check_image_shape(self, height, width, channels):
        patch_h, patch_w = height // self.grid, width // self.grid
        if min(patch_h, patch_w) < 2**self.J:
            need = self.grid * 2**self.J
            raise ValueError(
                f"Representation {self.description} with grid={self.grid}, "
                f"J={self.J} needs patches of at least {2**self.J}x"
                f"{2**self.J} pixels, images of shape (B, >={need}, "
                f">={need}, C); got {height}x{width}."
            )

    def build(self, input_shape):
        super().build(input_shape)
        height, width, channels = input_shape[1:]
        self.scattering.build(
            (None, height // self.grid, width // self.grid, channels)
        )

    def call(self, images):
        images = ops.cast(images, "float32")
        height, width, channels = images.shape[1:]
        grid = self.grid
        patch_h, patch_w = height // grid, width // grid
        images = images[:, : grid * patch_h, : grid * patch_w]
        # (B, H, W, C) -> (B * grid * grid, patch_h, patch_w, C)
        patches = ops.reshape(images, (-1, grid, patch_h, grid, patch_w, channels))
        patches = ops.transpose(patches, (0, 1, 3, 2, 4, 5))
        patches = ops.reshape(patches, (-1, patch_h, patch_w, channels))
        maps = self.scattering(patches)
        _, out_h, out_w, depth = maps.shape
        # Each patch's map back where the patch lies.
        maps = ops.reshape(maps, (-1, grid, grid, out_h, out_w, depth))
        maps = ops.transpose(maps, (0, 1, 3, 2, 4, 5))
        return ops.reshape(maps, (-1, grid * out_h, grid * out_w, depth))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = 2**self.J
        return (
            batch,
            self.grid * (height // self.grid // scale),
            self.grid * (width // self.grid // scale),
            channels * self.scattering.paths,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"J": self.J, "L": self.L, "grid": self.grid})
        return config
