"""`local_std`: the standard deviation of each pixel's neighbourhood."""

import keras
from keras import ops

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register

# Added under the square root, as in the reference.
_EPSILON = 1e-8


@register("local_std")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class LocalStd(Representation):
    """Local standard deviation `sqrt(box(x^2) - box(x)^2 + 1e-8)` per channel.

    `box` is the `size x size` mean with reflect padding (the edge pixel is
    not repeated, as NumPy's `mode="reflect"`). Where rounding makes the
    variance more negative than -1e-8 the square root is NaN; such values
    are set to 0, as in the reference.

    Args:
        size: odd window size.

    Input `(B, H, W, C)`; output `(B, H, W, C)` float32.

    Example:

    >>> LocalStd(size=3)(np.random.rand(2, 32, 32, 3)).shape
    (2, 32, 32, 3)
    """

    def __init__(self, size=3, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        if self.size < 1 or self.size % 2 == 0:
            raise ValueError(
                f"Representation {self.description} needs an odd window "
                f"size >= 1; got size={size}."
            )

    def check_image_shape(self, height, width, channels):
        # Reflect padding by r needs more than r pixels.
        radius = self.size // 2
        if min(height, width) <= radius:
            raise ValueError(
                f"Representation {self.description} with size={self.size} "
                f"needs images of at least {radius + 1}x{radius + 1} "
                f"pixels, shape (B, >={radius + 1}, >={radius + 1}, C); got "
                f"{height}x{width}."
            )

    def box_mean(self, x):
        """size x size mean, reflect padded; separable, as shifted slices."""
        radius = self.size // 2
        height, width = x.shape[1], x.shape[2]
        x = ops.pad(
            x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect"
        )
        rows = sum(x[:, i:i + height] for i in range(self.size))
        both = sum(rows[:, :, j:j + width] for j in range(self.size))
        return both / float(self.size * self.size)

    def call(self, images):
        images = ops.cast(images, "float32")
        mean = self.box_mean(images)
        mean_of_squares = self.box_mean(images * images)
        std = ops.sqrt(mean_of_squares - mean * mean + _EPSILON)
        return ops.where(ops.isnan(std), 0.0, std)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size})
        return config
