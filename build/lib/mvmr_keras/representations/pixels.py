"""`pixels`: the normalised original view itself (spec section 4)."""

import keras

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register


@register("pixels")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class Pixels(Representation):
    """Returns the image unchanged, in float32.

    The reference divides the pixels by 32 first; distance correlation is
    scale-invariant and ours standardises its inputs, so that is skipped.

    Example:

    >>> Pixels()(np.zeros((2, 32, 32, 3))).shape
    (2, 32, 32, 3)
    """

    def call(self, images):
        return keras.ops.cast(images, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
