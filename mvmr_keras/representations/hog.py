"""`hog`: the reference HOG layer, and `hog_interpolated`, a conventional one.

Both take Sobel gradients of each channel, vote each pixel's gradient into
orientation bins and average the votes over `pool x pool` cells (spec
section 4). They differ only in the votes.
"""

import math

import keras
from keras import ops

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register


def sobel_gradients(images):
    """`(gx, gy)` of `(B, H, W, C)` images, each channel on its own.

    Cross-correlation with `Kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]` and
    `Ky = Kx^T`, zero padding 1. Both kernels are separable ([1, 2, 1] times
    [1, 0, -1]), so shifted slices do it without a convolution op.
    """
    height, width = images.shape[1], images.shape[2]
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def shifted(dy, dx):
        return padded[:, dy:dy + height, dx:dx + width, :]

    gx = sum(
        weight * (shifted(dy, 0) - shifted(dy, 2))
        for dy, weight in enumerate((1.0, 2.0, 1.0))
    )
    gy = sum(
        weight * (shifted(0, dx) - shifted(2, dx))
        for dx, weight in enumerate((1.0, 2.0, 1.0))
    )
    return gx, gy


@register("hog")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class HOG(Representation):
    """Histogram of oriented gradients, exactly as the reference computes it.

    Per channel: Sobel gradients `gx, gy`, `mag = sqrt(gx^2 + gy^2)`,
    `p = atan2(gx, gy) / pi * nbins` (the reference's argument order); the
    pixel puts `mag` into bin `floor(p) mod nbins` and `1 - mag` into bin
    `ceil(p) mod nbins` (both into the same bin when p is an integer, which
    then holds 1); then a `pool x pool` average pool with stride `pool`.
    `1 - mag` instead of a fractional weight is the reference's quirk, kept
    so that published numbers stay reachable; `hog_interpolated` is the
    conventional alternative.

    Args:
        nbins: orientation bins per channel.
        pool: cell size; height and width must be multiples of it.

    Input `(B, H, W, C)`; output `(B, H / pool, W / pool, C * nbins)`
    float32, channel c's bin k at index `c * nbins + k`.

    Example:

    >>> HOG(nbins=24, pool=8)(np.random.rand(2, 32, 32, 3)).shape
    (2, 4, 4, 72)
    """

    def __init__(self, nbins=24, pool=8, **kwargs):
        super().__init__(**kwargs)
        self.nbins = int(nbins)
        self.pool = int(pool)
        if self.nbins < 1 or self.pool < 1:
            raise ValueError(
                f"Representation {self.description} needs nbins >= 1 and "
                f"pool >= 1; got nbins={nbins}, pool={pool}."
            )

    def check_image_shape(self, height, width, channels):
        if height % self.pool or width % self.pool:
            raise ValueError(
                f"Representation {self.description} with pool={self.pool} "
                f"needs height and width divisible by {self.pool}, shape "
                f"(B, {self.pool}*h, {self.pool}*w, C); got {height}x{width}."
            )

    def votes(self, magnitude, position):
        """Per-pixel histograms `(..., nbins)` from magnitude and bin position."""
        bins = ops.arange(self.nbins, dtype="float32")
        low = ops.mod(ops.floor(position), self.nbins)[..., None]
        high = ops.mod(ops.ceil(position), self.nbins)[..., None]
        magnitude = magnitude[..., None]
        return ops.where(ops.equal(low, bins), magnitude, 0.0) + ops.where(
            ops.equal(high, bins), 1.0 - magnitude, 0.0
        )

    def call(self, images):
        images = ops.cast(images, "float32")
        batch_shape = ops.shape(images)[0]
        height, width, channels = images.shape[1:]
        gx, gy = sobel_gradients(images)
        magnitude = ops.sqrt(gx * gx + gy * gy)
        position = ops.arctan2(gx, gy) * (self.nbins / math.pi)
        histograms = self.votes(magnitude, position)  # (B, H, W, C, nbins)
        histograms = ops.reshape(
            histograms, (batch_shape, height, width, channels * self.nbins)
        )
        return ops.average_pool(
            histograms,
            pool_size=self.pool,
            strides=self.pool,
            padding="valid",
            data_format="channels_last",
        )

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // self.pool, width // self.pool, channels * self.nbins)

    def get_config(self):
        config = super().get_config()
        config.update({"nbins": self.nbins, "pool": self.pool})
        return config


@register("hog_interpolated")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class InterpolatedHOG(HOG):
    """HOG with the conventional linear vote between neighbouring bins.

    As `HOG`, except that a pixel at bin position `p` gives
    `mag * (1 - frac(p))` to bin `floor(p) mod nbins` and `mag * frac(p)` to
    the next bin, so every pixel votes exactly its gradient magnitude.

    Example:

    >>> InterpolatedHOG(nbins=12, pool=4)(np.random.rand(2, 16, 16, 3)).shape
    (2, 4, 4, 36)
    """

    def votes(self, magnitude, position):
        bins = ops.arange(self.nbins, dtype="float32")
        floor = ops.floor(position)
        fraction = (position - floor)[..., None]
        low = ops.mod(floor, self.nbins)[..., None]
        high = ops.mod(floor + 1.0, self.nbins)[..., None]
        magnitude = magnitude[..., None]
        return ops.where(
            ops.equal(low, bins), magnitude * (1.0 - fraction), 0.0
        ) + ops.where(ops.equal(high, bins), magnitude * fraction, 0.0)
