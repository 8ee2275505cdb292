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
        """`(low_bin, low_weight, high_bin, high_weight)` of every pixel.

        The reference: `mag` to `floor(p) mod nbins`, `1 - mag` to
        `ceil(p) mod nbins`.
        """
        low = ops.mod(ops.floor(position), self.nbins)
        high = ops.mod(ops.ceil(position), self.nbins)
        return low, magnitude, high, 1.0 - magnitude

    def call(self, images):
        images = ops.cast(images, "float32")
        gx, gy = sobel_gradients(images)
        magnitude = ops.sqrt(gx * gx + gy * gy)
        position = ops.arctan2(gx, gy) * (self.nbins / math.pi)
        votes = self.votes(magnitude, position)
        if keras.backend.backend() in ("jax", "torch"):
            return self._pooled_histograms_by_segments(*votes)
        return self._pooled_histograms_dense(*votes)

    def _pooled_histograms_dense(self, low, low_weight, high, high_weight):
        """Every pixel's histogram `(B, H, W, C, nbins)`, then the pool.

        TensorFlow's XLA fuses this into a few fast loops, and it needs no
        batch size when tracing (Keras may trace the TensorFlow step with
        an unknown one).
        """
        batch = ops.shape(low)[0]
        height, width, channels = low.shape[1:]
        bins = ops.arange(self.nbins, dtype="float32")
        histograms = ops.where(
            ops.equal(low[..., None], bins), low_weight[..., None], 0.0
        ) + ops.where(ops.equal(high[..., None], bins), high_weight[..., None], 0.0)
        histograms = ops.reshape(
            histograms, (batch, height, width, channels * self.nbins)
        )
        return ops.average_pool(
            histograms,
            pool_size=self.pool,
            strides=self.pool,
            padding="valid",
            data_format="channels_last",
        )

    def _pooled_histograms_by_segments(self, low, low_weight, high, high_weight):
        """Sums the two votes of every pixel straight into its cell's bins.

        A segment sum over `(cell, channel, bin)` ids: two to three times
        faster than the dense histogram on JAX and PyTorch (CPU), whose
        `nbins`-times larger intermediate costs memory passes. Needs the
        batch size when tracing, which JAX and PyTorch always know.
        """
        batch, height, width, channels = low.shape
        cells_h, cells_w = height // self.pool, width // self.pool
        # Index of (image, cell row, cell column, channel) of every pixel.
        image = ops.reshape(ops.arange(batch, dtype="int32"), (batch, 1, 1, 1))
        row = ops.reshape(ops.arange(height, dtype="int32") // self.pool, (1, height, 1, 1))
        col = ops.reshape(ops.arange(width, dtype="int32") // self.pool, (1, 1, width, 1))
        channel = ops.reshape(ops.arange(channels, dtype="int32"), (1, 1, 1, channels))
        cell = ((image * cells_h + row) * cells_w + col) * channels + channel
        segment_ids = ops.concatenate(
            [
                ops.reshape(cell * self.nbins + ops.cast(low, "int32"), (-1,)),
                ops.reshape(cell * self.nbins + ops.cast(high, "int32"), (-1,)),
            ]
        )
        weights = ops.concatenate(
            [ops.reshape(low_weight, (-1,)), ops.reshape(high_weight, (-1,))]
        )
        sums = ops.segment_sum(
            weights,
            segment_ids,
            num_segments=batch * cells_h * cells_w * channels * self.nbins,
        )
        sums = sums / float(self.pool * self.pool)
        return ops.reshape(sums, (batch, cells_h, cells_w, channels * self.nbins))

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
        floor = ops.floor(position)
        fraction = position - floor
        low = ops.mod(floor, self.nbins)
        high = ops.mod(floor + 1.0, self.nbins)
        return low, magnitude * (1.0 - fraction), high, magnitude * fraction
