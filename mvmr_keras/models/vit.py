"""A Vision Transformer that takes images of any size with the same weights.

DINO's ViT (and MOKD's): patch embedding (a convolution with stride =
patch), a learned CLS token, a learned position embedding for the CLS token
and the token grid of a reference image size, pre-LayerNorm transformer
blocks with stochastic depth (drop-path, rates rising linearly over the
blocks from 0), and a final LayerNorm.

When an image's token grid differs from the reference grid (DINO's 96 px
local crops against its 224 px global ones), the grid part of the position
embedding is resized bicubically to the image's grid, as DINO's
`interpolate_pos_encoding`. The resize is a pair of interpolation matrices
computed in NumPy from the static grid sizes (PyTorch's bicubic,
`align_corners=False`, a = -0.75, edges clamped, so the same as DINO's
`nn.functional.interpolate`) and applied with `keras.ops.einsum`:
`keras.ops.image.resize(..., "bicubic")` is not the same function on every
backend (TensorFlow and JAX use a = -0.5, PyTorch a = -0.75), and a model
saved on one backend must give the same features on another.

Why not KerasHub's layers: KerasHub's ViT, DINOv2 and DeiT backbones fix
the input resolution; its public `TransformerEncoder` (with
`normalize_first=True`) has no drop-path, and drop-path must act on each
residual branch (attention, MLP) on its own, inside the block, which a
wrapper around the whole block cannot do; KerasHub's drop-path layers are
private to its models (`keras_hub.src...`); and `import keras_hub` imports
TensorFlow, which model modules here must not. So the block is written
here from `keras.layers.MultiHeadAttention`, two `Dense` layers and
`DropPath`: with qkv bias as DINO, `use_bias` also gives the attention's
output projection its bias (as DINO's `proj`); `qkv_bias=False` drops both.

Initialisation as DINO: Dense kernels truncated-normal(0.02) and zero
biases, CLS token and position embedding truncated-normal(0.02), the
patch convolution PyTorch's default (uniform, variance 1 / (3 fan_in)).

`call(images)` gives the CLS token after the final LayerNorm, `(B, D)`,
like `ResNetBackbone`'s pooled features, so it goes into `ImageEncoder`;
`tokens(images)` gives the CLS and the patch tokens.

Example:

>>> vit = VisionTransformerBackbone(image_size=32, patch_size=8,
...                                 hidden_dim=32, num_layers=2, num_heads=2)
>>> vit(np.zeros((2, 32, 32, 3))).shape, vit(np.zeros((2, 16, 16, 3))).shape
((2, 32), (2, 32))
>>> {k: v.shape for k, v in vit.tokens(np.zeros((2, 16, 16, 3))).items()}
{'cls': (2, 32), 'patches': (2, 4, 32)}
"""

import math

import keras
import numpy as np
from keras import layers, ops

_INIT_STD = 0.02


def _dense_init():
    return keras.initializers.TruncatedNormal(stddev=_INIT_STD)


def bicubic_resize_matrix(in_size, out_size, a=-0.75):
    """`(out_size, in_size)` float64 matrix of PyTorch's 1-D bicubic resize
    (`align_corners=False`, coefficient `a`, indices clamped at the edges):
    `matrix @ x` resizes `x` along its first axis."""
    matrix = np.zeros((out_size, in_size))
    scale = in_size / out_size

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    for i in range(out_size):
        source = (i + 0.5) * scale - 0.5
        left = math.floor(source)
        t = source - left
        weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
        for k, w in enumerate(weights):
            matrix[i, min(max(left - 1 + k, 0), in_size - 1)] += w
    return matrix


def bicubic_resize_matrix_ops(in_size, out_size, dtype="float32", a=-0.75):
    """`bicubic_resize_matrix` with tensor ops, for an `out_size` known
    only when the graph runs (a scalar tensor)."""
    out_float = ops.cast(out_size, "float32")
    source = (ops.cast(ops.arange(out_size), "float32") + 0.5) * (in_size / out_float) - 0.5
    left = ops.floor(source)
    t = source - left

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    matrix = 0.0
    for k, w in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))):
        index = ops.clip(ops.cast(left, "int32") - 1 + k, 0, in_size - 1)
        matrix = matrix + w[:, None] * ops.one_hot(index, in_size, dtype="float32")
    return ops.cast(matrix, dtype)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class DropPath(layers.Layer):
    """Stochastic depth: in training, zeroes a residual branch for a random
    `rate` of the samples and scales the others by `1 / (1 - rate)`; the
    identity in inference. Its seed generator exists for every rate, so
    models that differ only in `rate` (DINO's student and teacher) have the
    same variables."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1); got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.cast(draw < keep, x.dtype)
        return x * mask / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mvmr_keras")
class TransformerBlock(layers.Layer):
    """Pre-LayerNorm transformer block with drop-path on each branch:
    `x + drop(attn(ln1(x)))`, then `x + drop(mlp(ln2(x)))` (MLP: Dense,
    exact GELU, Dense). Input and output `(B, N, D)`."""

    def __init__(
        self,
        num_heads,
        mlp_dim,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        qkv_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.qkv_bias = bool(qkv_bias)
        common = dict(dtype=self.dtype_policy)
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1", **common)
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2", **common)
        self.drop_path = DropPath(drop_path_rate, name="drop_path", **common)
        self.attention = None
        self.mlp_in = layers.Dense(
            mlp_dim, activation="gelu", kernel_initializer=_dense_init(), name="mlp_in", **common
        )
        self.mlp_out = None

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {self.num_heads}.")
        self.attention = layers.MultiHeadAttention(
            self.num_heads,
            dim // self.num_heads,
            use_bias=self.qkv_bias,
            kernel_initializer=_dense_init(),
            name="attention",
            dtype=self.dtype_policy,
        )
        self.mlp_out = layers.Dense(
            dim, kernel_initializer=_dense_init(), name="mlp_out", dtype=self.dtype_policy
        )
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, x, training=None):
        y = self.norm1(x)
        x = x + self.drop_path(self.attention(y, y, training=training), training=training)
        y = self.mlp_out(self.mlp_in(self.norm2(x)))
        return x + self.drop_path(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "qkv_bias": self.qkv_bias,
        }


@keras.saving.register_keras_serializable(package="mvmr_keras")
class ClassTokenAndPositionEmbedding(layers.Layer):
    """Patch grid `(B, h, w, D)` -> tokens `(B, 1 + h w, D)`: a learned CLS
    token first, plus a learned position embedding for the CLS token and a
    `grid_size` x `grid_size` reference grid, the grid part resized
    bicubically to `(h, w)` when it differs."""

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = int(grid_size)

    def build(self, input_shape):
        dim = input_shape[-1]
        init = keras.initializers.TruncatedNormal(stddev=_INIT_STD)
        self.class_token = self.add_weight(shape=(1, 1, dim), initializer=init, name="class_token")
        self.position_embedding = self.add_weight(
            shape=(1, 1 + self.grid_size**2, dim), initializer=init, name="position_embedding"
        )

    def grid_embedding(self, height, width):
        """The grid's position embedding at `(height, width)`: `(h w, D)`.
        Static sizes use NumPy matrices; sizes known only when the graph
        runs (a TensorFlow function traced with relaxed shapes) the same
        matrices built with tensor ops."""
        g = self.grid_size
        grid = ops.reshape(self.position_embedding[0, 1:], (g, g, -1))
        static = isinstance(height, int) and isinstance(width, int)
        if static and (height, width) == (g, g):
            return ops.reshape(grid, (g * g, -1))
        if static:
            rows = ops.convert_to_tensor(bicubic_resize_matrix(g, height), grid.dtype)
            cols = ops.convert_to_tensor(bicubic_resize_matrix(g, width), grid.dtype)
        else:
            rows = bicubic_resize_matrix_ops(g, height, grid.dtype)
            cols = bicubic_resize_matrix_ops(g, width, grid.dtype)
        grid = ops.einsum("hg,wk,gkd->hwd", rows, cols, grid)
        return ops.reshape(grid, (-1, grid.shape[-1]))

    def call(self, patches):
        height, width = patches.shape[1], patches.shape[2]
        if height is None or width is None:
            dynamic = ops.shape(patches)
            height = dynamic[1] if height is None else height
            width = dynamic[2] if width is None else width
        batch = ops.shape(patches)[0]
        dim = patches.shape[-1]
        tokens = ops.reshape(patches, (batch, -1, dim))
        position = ops.concatenate(
            [self.position_embedding[0, :1], self.grid_embedding(height, width)], axis=0
        )
        cls = ops.broadcast_to(ops.cast(self.class_token, tokens.dtype), (batch, 1, dim))
        tokens = ops.concatenate([cls, tokens], axis=1)
        return tokens + ops.cast(position, tokens.dtype)[None]

    def compute_output_shape(self, input_shape):
        batch, height, width, dim = input_shape
        count = None if height is None or width is None else 1 + height * width
        return (batch, count, dim)

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size}


@keras.saving.register_keras_serializable(package="mvmr_keras")
class ClassTokenSelect(layers.Layer):
    """Tokens `(B, 1 + N, D)` -> the CLS token `(B, D)`."""

    def call(self, tokens):
        return tokens[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="mvmr_keras")
class VisionTransformerBackbone(keras.Model):
    """ViT feature extractor: images `(B, H, W, C)` -> CLS token `(B, D)`.

    Takes normalised images (`ImageEncoder` adds the normalisation). H and
    W must be multiples of `patch_size` (a remainder is cut off by the patch
    convolution); any such size works with the same weights.

    Args:
        image_size: the reference size the position embedding is built for
            (224 at patch 16: a 14 x 14 grid).
        patch_size: side of the square patches.
        hidden_dim: token width D (`output_dim`).
        num_layers: transformer blocks.
        num_heads: attention heads (must divide `hidden_dim`).
        mlp_dim: hidden width of each block's MLP (default
            `mlp_ratio * hidden_dim`).
        mlp_ratio: used when `mlp_dim` is not given.
        drop_path_rate: stochastic depth of the last block; block i gets
            `drop_path_rate * i / (num_layers - 1)` (DINO). Only with
            `training=True`.
        layer_norm_epsilon: of every LayerNorm.
        qkv_bias: biases on the query, key, value (and output) projections.
        image_shape: input shape; `(None, None, C)` takes any size.
    """

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        hidden_dim=384,
        num_layers=12,
        num_heads=6,
        mlp_dim=None,
        mlp_ratio=4.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        qkv_bias=True,
        image_shape=(None, None, 3),
        dtype=None,
        **kwargs,
    ):
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} must be a positive multiple of patch_size {patch_size}."
            )
        if num_layers < 1 or hidden_dim < 1 or num_heads < 1:
            raise ValueError(
                "num_layers, hidden_dim and num_heads must be >= 1; got "
                f"{num_layers}, {hidden_dim}, {num_heads}."
            )
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}.")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate}.")
        if mlp_dim is None:
            mlp_dim = int(round(mlp_ratio * hidden_dim))
        image_shape = tuple(image_shape)
        patch_embedding = layers.Conv2D(
            hidden_dim,
            patch_size,
            strides=patch_size,
            padding="valid",
            kernel_initializer=keras.initializers.VarianceScaling(
                1.0 / 3.0, "fan_in", "uniform"
            ),
            bias_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            name="patch_embedding",
            dtype=dtype,
        )
        embedding = ClassTokenAndPositionEmbedding(
            image_size // patch_size, name="position_embedding", dtype=dtype
        )
        rates = np.linspace(0.0, drop_path_rate, num_layers) if num_layers > 1 else [0.0]
        blocks = [
            TransformerBlock(
                num_heads,
                mlp_dim,
                drop_path_rate=float(rate),
                layer_norm_epsilon=layer_norm_epsilon,
                qkv_bias=qkv_bias,
                name=f"block{i + 1}",
                dtype=dtype,
            )
            for i, rate in enumerate(rates)
        ]
        final_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm", dtype=dtype)
        inputs = keras.Input(shape=image_shape, name="images")
        x = embedding(patch_embedding(inputs))
        for block in blocks:
            x = block(x)
        x = final_norm(x)
        features = ClassTokenSelect(name="cls", dtype=dtype)(x)
        super().__init__(inputs=inputs, outputs=features, dtype=dtype, **kwargs)
        self.patch_embedding = patch_embedding
        self.embedding = embedding
        self.blocks = blocks
        self.final_norm = final_norm
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.qkv_bias = bool(qkv_bias)
        self.image_shape = image_shape

    @property
    def output_dim(self):
        return self.hidden_dim

    def tokens(self, images, training=None):
        """`{"cls": (B, D), "patches": (B, N, D)}`, both after the final
        LayerNorm; N = (H / patch) (W / patch), row-major."""
        x = self.embedding(self.patch_embedding(images))
        for block in self.blocks:
            x = block(x, training=training)
        x = self.final_norm(x)
        return {"cls": x[:, 0], "patches": x[:, 1:]}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "qkv_bias": self.qkv_bias,
            "image_shape": list(self.image_shape),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)
