"""MOKD's T-Head: a small transformer over a model's spatial tokens.

Tokens come from a feature grid `(B, h, w, C)`: a CNN's last feature map
through a 1x1 convolution (with bias) to the head's width D, or a ViT's
final-LayerNormed patch tokens laid out as their grid (no projection). A
learned position embedding for a reference `grid_size` x `grid_size` grid
(truncated-normal 0.02; 7 x 7 for a ResNet50 at 224 px, 14 x 14 for a
ViT/16) is resized bicubically to the grid when it differs (local crops),
with the same NumPy interpolation matrices as the ViT's
(`vit.bicubic_resize_matrix`), so features match across backends. Then
`num_blocks` pre-LayerNorm transformer blocks (qkv bias, LayerNorm eps
1e-6, no dropout or drop-path), a final LayerNorm, the mean over the
tokens, and a weight-normalised `Linear(D -> K)` without bias whose gain
is trainable (MOKD's T-Heads) unless `norm_last_layer`. Unlike the DINO
head, nothing is L2-normalised before the last layer.

Cross-attention feature search (CAFS) prepends a query token after the
position embedding is added (so the query carries no position), and
drops the query's output before the mean: `head(tokens, query=q)`.

`embed(grid)` also gives the mean over the grid of the projected tokens
before the position embedding: a CNN student's CAFS query.

The last layer's variables are named `last_layer_*`, which the
distillation optimisers freeze during the first epoch.

Example:

>>> head = TransformerHead(out_dim=64, dim=32, grid_size=4, input_dim=16, num_heads=2)
>>> tokens, pooled = head.embed(np.zeros((2, 2, 2, 16)))      # a 2 x 2 grid
>>> head.head(tokens).shape, head.head(tokens, query=pooled).shape
((2, 64), (2, 64))
"""

import keras
from keras import layers, ops

from mvmr_keras.models.dino_head import weight_normalised_logits
from mvmr_keras.models.vit import TransformerBlock, bicubic_resize_matrix

_INIT_STD = 0.02


@keras.saving.register_keras_serializable(package="mvmr_keras")
class TransformerHead(layers.Layer):
    """Feature grid `(B, h, w, C)` -> logits `(B, out_dim)` (module docstring).

    Args:
        out_dim: K (65536 in MOKD).
        dim: token width D (the ViT's width in MOKD, 384 for ViT-S).
        grid_size: side of the reference grid of the position embedding.
        input_dim: channels C of a CNN's feature map, projected to `dim` by
            a 1x1 convolution; `None` for a ViT's tokens (C must be `dim`).
        num_blocks: transformer blocks (3).
        num_heads: attention heads (6); must divide `dim`.
        mlp_ratio: hidden width of each block's MLP over `dim` (4).
        layer_norm_epsilon: of every LayerNorm (1e-6).
        norm_last_layer: freeze the last layer's weight-norm gain at 1.
    """

    def __init__(self, out_dim, dim, grid_size, input_dim=None, num_blocks=3, num_heads=6,
                 mlp_ratio=4.0, layer_norm_epsilon=1e-6, norm_last_layer=False, **kwargs):
        super().__init__(**kwargs)
        if min(out_dim, dim, grid_size, num_blocks, num_heads) < 1:
            raise ValueError(
                f"TransformerHead sizes must be >= 1; got out_dim={out_dim}, dim={dim}, "
                f"grid_size={grid_size}, num_blocks={num_blocks}, num_heads={num_heads}")
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.out_dim = int(out_dim)
        self.dim = int(dim)
        self.grid_size = int(grid_size)
        self.input_dim = None if input_dim is None else int(input_dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm_last_layer = bool(norm_last_layer)
        common = dict(dtype=self.dtype_policy)
        # PyTorch's Conv2d default initialisation (uniform, variance 1 / (3 fan_in)).
        pytorch_default = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")
        self.projection = None if self.input_dim is None else layers.Conv2D(
            self.dim, 1, kernel_initializer=pytorch_default, bias_initializer=pytorch_default,
            name="projection", **common)
        self.blocks = [
            TransformerBlock(self.num_heads, int(round(self.mlp_ratio * self.dim)),
                             layer_norm_epsilon=self.layer_norm_epsilon, qkv_bias=True,
                             name=f"block{i + 1}", **common)
            for i in range(self.num_blocks)
        ]
        self.norm = layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm",
                                              **common)

    def build(self, input_shape=None):
        if self.projection is not None:
            self.projection.build((None, None, None, self.input_dim))
        init = keras.initializers.TruncatedNormal(stddev=_INIT_STD)
        self.position_embedding = self.add_weight(
            shape=(1, self.grid_size**2, self.dim), initializer=init, name="position_embedding")
        for block in self.blocks:
            block.build((None, None, self.dim))
        self.norm.build((None, None, self.dim))
        self.last_layer_direction = self.add_weight(
            shape=(self.dim, self.out_dim), initializer=init, name="last_layer_direction",
            autocast=False)
        self.last_layer_gain = self.add_weight(
            shape=(1, self.out_dim), initializer="ones", name="last_layer_gain",
            trainable=not self.norm_last_layer, autocast=False)
        self.built = True

    def grid_position_embedding(self, height, width):
        """The position embedding at a `(height, width)` grid: `(h w, D)`."""
        g = self.grid_size
        grid = ops.reshape(self.position_embedding[0], (g, g, self.dim))
        if (height, width) != (g, g):
            rows = ops.convert_to_tensor(bicubic_resize_matrix(g, height), grid.dtype)
            cols = ops.convert_to_tensor(bicubic_resize_matrix(g, width), grid.dtype)
            grid = ops.einsum("hg,wk,gkd->hwd", rows, cols, grid)
        return ops.reshape(grid, (height * width, self.dim))

    def embed(self, grid):
        """`(B, h, w, C)` -> `(tokens (B, h w, D) with positions, pooled (B, D))`;
        `pooled` is the mean of the projected tokens, before the positions."""
        height, width = grid.shape[1], grid.shape[2]
        if height is None or width is None:
            raise ValueError("TransformerHead needs a feature grid of static size")
        x = grid if self.projection is None else self.projection(grid)
        tokens = ops.reshape(x, (-1, height * width, self.dim))
        pooled = ops.mean(tokens, axis=1)
        position = ops.cast(self.grid_position_embedding(height, width), tokens.dtype)
        return tokens + position[None], pooled

    def head(self, tokens, query=None, training=None):
        """Tokens `(B, N, D)` (from `embed`) -> logits `(B, K)`; a `query`
        `(B, D)` is prepended as a token, and its output left out of the mean."""
        x = tokens
        if query is not None:
            x = ops.concatenate([ops.cast(query, x.dtype)[:, None], x], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.norm(x)
        if query is not None:
            x = x[:, 1:]
        x = ops.mean(x, axis=1)
        return weight_normalised_logits(x, self.last_layer_direction, self.last_layer_gain)

    def call(self, grid, query=None, training=None):
        tokens, _ = self.embed(grid)
        return self.head(tokens, query=query, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.out_dim)

    def get_config(self):
        config = super().get_config()
        config.update(out_dim=self.out_dim, dim=self.dim, grid_size=self.grid_size,
                      input_dim=self.input_dim, num_blocks=self.num_blocks,
                      num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      layer_norm_epsilon=self.layer_norm_epsilon,
                      norm_last_layer=self.norm_last_layer)
        return config
