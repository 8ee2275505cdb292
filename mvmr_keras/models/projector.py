"""The MV-MR projector g: `(Dense(no bias) -> BatchNorm -> ReLU) x n, Dense`.

Example:

>>> projector = Projector("64-64-32")
>>> projector(np.zeros((4, 16))).shape
(4, 32)
"""

import keras
from keras import layers



def parse_sizes(sizes):
    """`"8192-8192-8192"` or a sequence of ints -> tuple of ints."""
    if isinstance(sizes, str):
        try:
            sizes = [int(s) for s in sizes.split("-")]
        except ValueError:
            raise ValueError(
                f"Projector sizes {sizes!r} are not of the form "
                "'8192-8192-8192'."
            ) from None
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"Projector sizes must be positive; got {sizes}.")
    return sizes


@keras.saving.register_keras_serializable(package="mvmr_keras")
class Projector(keras.layers.Layer):
    """Every size but the last is a hidden `Dense -> BatchNorm -> ReLU`
    block; the last is the output `Dense`. No Dense has a bias (each hidden
    one is followed by a BatchNorm, which has its own).

    `batchnorm_epsilon` and `batchnorm_momentum` are the BatchNorm layers'.
    The defaults are PyTorch's `BatchNorm1d` (epsilon 1e-5; momentum 0.1 in
    PyTorch's convention, 0.9 in Keras's), as in the reference projector and
    in our ResNet; Keras's own defaults are 1e-3 and 0.99.
    """

    def __init__(self, sizes="8192-8192-8192", batchnorm_epsilon=1e-5,
                 batchnorm_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.sizes = parse_sizes(sizes)
        self.batchnorm_epsilon = float(batchnorm_epsilon)
        self.batchnorm_momentum = float(batchnorm_momentum)
        self.hidden = []
        for i, size in enumerate(self.sizes[:-1]):
            self.hidden.append(
                (
                    layers.Dense(size, use_bias=False, name=f"dense{i + 1}",
                                 dtype=self.dtype_policy),
                    layers.BatchNormalization(
                        epsilon=self.batchnorm_epsilon,
                        momentum=self.batchnorm_momentum,
                        name=f"bn{i + 1}",
                        dtype=self.dtype_policy,
                    ),
                )
            )
        self.output_dense = layers.Dense(
            self.sizes[-1], use_bias=False, name="output_dense",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense, bn in self.hidden:
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            bn.build(shape)
        self.output_dense.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for dense, bn in self.hidden:
            x = keras.ops.relu(bn(dense(x), training=training))
        return self.output_dense(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.sizes[-1],)

    def get_config(self):
        config = super().get_config()
        config["sizes"] = "-".join(str(s) for s in self.sizes)
        config["batchnorm_epsilon"] = self.batchnorm_epsilon
        config["batchnorm_momentum"] = self.batchnorm_momentum
        return config
