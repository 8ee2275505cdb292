"""The DINO head: a 3-layer MLP, an L2-normalised bottleneck, a weight-normalised last layer.

`Linear(d -> hidden) GELU Linear(hidden -> hidden) GELU Linear(hidden ->
bottleneck)`, L2-normalise, then `Linear(bottleneck -> K)` without bias
whose weight is weight-normalised: `W = g * V / ||V||` per output unit.
The gain `g` (shape `(1, K)`, ones) is frozen with `norm_last_layer=True`
(DINO's default, MOKD's CNN) or trainable (MOKD's ViT). Weights are
truncated-normal(0.02), biases zero; GELU is the exact (erf) one.
With `use_bn=True` (DINO's `use_bn_in_head`) each hidden Linear is
followed by BatchNorm before its GELU.
The last layer's variables are named `last_layer_*`, which is what
`DistillationAdamW(freeze_steps=...)` freezes during the first epoch.

Example:

>>> head = DINOHead(out_dim=1024, hidden_dim=64, bottleneck_dim=32)
>>> head(np.ones((4, 16))).shape
(4, 1024)
"""

import keras
from keras import ops


def weight_normalised_logits(x, direction, gain):
    """`x @ W`, `W = gain * direction / ||direction||` per output column, in
    float32 whatever the inputs' dtype (DINO's and the T-Head's last layer).
    Read the variables un-autocast (`autocast=False`): in float16 the weight
    norm's backward overflowed at loss scales up to 2^10 (its columns'
    norms are ~0.06, divided by twice)."""
    direction = ops.cast(direction, "float32")
    weight = direction / ops.norm(direction, axis=0, keepdims=True)
    return ops.matmul(ops.cast(x, "float32"), weight) * ops.cast(gain, "float32")


@keras.saving.register_keras_serializable(package="mvmr_keras")
class DINOHead(keras.layers.Layer):
    """Features `(B, d)` -> logits `(B, out_dim)` (module docstring).

    Args:
        out_dim: K, the number of outputs (65536 in DINO).
        hidden_dim: width of the two hidden layers (2048).
        bottleneck_dim: width before the last layer (256).
        num_layers: linear layers before the last one (3; 1 = one Linear).
        norm_last_layer: freeze the weight-norm gain at 1.
        use_bn: BatchNorm after each hidden Linear (DINO's `use_bn_in_head`).
    """

    def __init__(self, out_dim=65536, hidden_dim=2048, bottleneck_dim=256, num_layers=3,
                 norm_last_layer=True, use_bn=False, **kwargs):
        super().__init__(**kwargs)
        if min(out_dim, hidden_dim, bottleneck_dim, num_layers) < 1:
            raise ValueError(
                f"DINOHead sizes must be >= 1; got out_dim={out_dim}, hidden_dim={hidden_dim}, "
                f"bottleneck_dim={bottleneck_dim}, num_layers={num_layers}"
            )
        self.out_dim = int(out_dim)
        self.hidden_dim = int(hidden_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        self.num_layers = int(num_layers)
        self.norm_last_layer = bool(norm_last_layer)
        self.use_bn = bool(use_bn)
        init = dict(kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                    bias_initializer="zeros", dtype=self.dtype_policy)
        sizes = [self.hidden_dim] * (self.num_layers - 1) + [self.bottleneck_dim]
        hidden = len(sizes) - 1
        # The bottleneck layer (and so the L2 normalisation after it) in
        # float32 under mixed precision: the normalisation divides the
        # gradient by its small output's norm, which overflowed float16 at
        # all but tiny loss scales; and its 1e-12 floor is 0 in float16.
        self.mlp = [
            keras.layers.Dense(size, activation="gelu" if i < hidden and not self.use_bn else None,
                               name=f"mlp_{i + 1}",
                               **dict(init, dtype="float32") if i == hidden else init)
            for i, size in enumerate(sizes)
        ]
        # (DINO's BatchNorm1d: momentum 0.1, eps 1e-5.)
        self.norms = [
            keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"mlp_{i + 1}_bn",
                                            dtype=self.dtype_policy)
            for i in range(hidden)
        ] if self.use_bn else []

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, layer in enumerate(self.mlp):
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
            if i < len(self.norms):
                self.norms[i].build(shape)
        self.last_layer_direction = self.add_weight(
            shape=(self.bottleneck_dim, self.out_dim), name="last_layer_direction",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), autocast=False,
        )
        self.last_layer_gain = self.add_weight(
            shape=(1, self.out_dim), name="last_layer_gain", initializer="ones",
            trainable=not self.norm_last_layer, autocast=False,
        )
        self.built = True

    def call(self, features, training=None):
        x = features
        for i, layer in enumerate(self.mlp):
            x = layer(x)
            if i < len(self.norms):
                x = keras.activations.gelu(self.norms[i](x, training=training), approximate=False)
        x = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
        return weight_normalised_logits(x, self.last_layer_direction, self.last_layer_gain)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.out_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(out_dim=self.out_dim, hidden_dim=self.hidden_dim,
                      bottleneck_dim=self.bottleneck_dim, num_layers=self.num_layers,
                      norm_last_layer=self.norm_last_layer, use_bn=self.use_bn)
        return config
