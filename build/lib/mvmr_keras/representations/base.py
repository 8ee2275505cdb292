"""What every representation layer shares: float32 compute, input checks."""

import keras


class Representation(keras.layers.Layer):
    """Base class of the hand-crafted representation layers.

    A representation maps a batch of normalised images `(B, H, W, C)` to a
    fixed feature tensor; it has no weights and no gradient of its own. It
    always computes in float32, also under a mixed precision policy: the
    features feed a distance correlation, which needs the full precision.

    Subclasses override `check_image_shape(height, width, channels)` to
    reject sizes they cannot handle; the check runs when the layer is built
    and again on every call, so a later call with another shape fails with
    the same clear message instead of deep inside the computation.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self._built_channels = None

    @property
    def description(self):
        """How error messages name this layer, e.g. `hog (HOG)`."""
        return f"{self.name!r} ({type(self).__name__})"

    def check_image_shape(self, height, width, channels):
        """Raises ValueError when the layer cannot take such images."""

    def validate_input_shape(self, input_shape):
        """Checks rank, static sizes and channel count; returns (H, W, C)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"Representation {self.description} needs NHWC images of "
                f"rank 4 (batch, height, width, channels); got shape "
                f"{input_shape}."
            )
        height, width, channels = input_shape[1:]
        if height is None or width is None or channels is None:
            raise ValueError(
                f"Representation {self.description} needs static height, "
                f"width and channels; got shape {input_shape}."
            )
        if self._built_channels is not None and channels != self._built_channels:
            raise ValueError(
                f"Representation {self.description} was built for "
                f"{self._built_channels} channels, shape (B, H, W, "
                f"{self._built_channels}); got shape {input_shape}."
            )
        self.check_image_shape(height, width, channels)
        return height, width, channels

    def build(self, input_shape):
        self.validate_input_shape(input_shape)
        self._built_channels = input_shape[-1]
        self.built = True

    def __call__(self, images, *args, **kwargs):
        # Shapes are static here on every backend (also inside jit and
        # tf.function), so this costs nothing at run time.
        if hasattr(images, "shape"):
            self.validate_input_shape(images.shape)
        return super().__call__(images, *args, **kwargs)

    def compute_output_spec(self, images, *args, **kwargs):
        shape = self.compute_output_shape(images.shape)
        return keras.KerasTensor(shape, dtype="float32")
