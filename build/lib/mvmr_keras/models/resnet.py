"""ResNet backbones for MV-MR, written for small images.

KerasHub's `ResNetBackbone` fixes the stem convolution's stride at 2 and has
no zero-init residual, both of which MV-MR needs (spec section 1), so the
backbone is written here: torchvision's ResNet v1.5 layout (stride on the
3x3 convolution of a bottleneck), with

- `small_kernel_stem=True`: the 7x7 stride-2 stem convolution becomes a
  3x3 stride-1 one (the max-pool stays), for 32-96 px images;
- `zero_init_residual=True`: the last BatchNorm of every residual block
  starts with gamma = 0, so each block starts as the identity;
- `width` and `stackwise_num_blocks` free, so tests can build tiny models.

Every convolution pads explicitly and then runs "valid": Keras's "same"
padding with stride 2 is asymmetric, and explicit padding keeps the
features identical on TensorFlow, JAX and PyTorch, so a model saved on one
backend gives the same features on another.

Example:

>>> backbone = ResNetBackbone.from_name("resnet18", width=8)
>>> backbone(np.zeros((2, 32, 32, 3))).shape
(2, 64)
"""

import keras
from keras import layers

# name -> (block type, blocks per stage)
RESNET_ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
BLOCK_TYPES = ("basic", "bottleneck")
_BN = dict(momentum=0.9, epsilon=1e-5)  # PyTorch's defaults


def _conv(x, filters, kernel_size, strides, name, dtype):
    if kernel_size > 1:
        x = layers.ZeroPadding2D(
            (kernel_size - 1) // 2, name=f"{name}_pad", dtype=dtype
        )(x)
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
        dtype=dtype,
    )(x)


def _bn(x, name, dtype, zero_init=False):
    return layers.BatchNormalization(
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
        dtype=dtype,
        **_BN,
    )(x)


def _residual_block(x, block_type, filters, stride, zero_init, name, dtype):
    expansion = 4 if block_type == "bottleneck" else 1
    out_filters = filters * expansion
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv(x, out_filters, 1, stride, f"{name}_down_conv", dtype)
        shortcut = _bn(shortcut, f"{name}_down_bn", dtype)
    if block_type == "basic":
        convs = [(filters, 3, stride), (filters, 3, 1)]
    else:
        convs = [(filters, 1, 1), (filters, 3, stride), (out_filters, 1, 1)]
    for i, (f, k, s) in enumerate(convs):
        last = i == len(convs) - 1
        x = _conv(x, f, k, s, f"{name}_conv{i + 1}", dtype)
        x = _bn(x, f"{name}_bn{i + 1}", dtype, zero_init=last and zero_init)
        if not last:
            x = layers.ReLU(name=f"{name}_relu{i + 1}", dtype=dtype)(x)
    x = layers.Add(name=f"{name}_add", dtype=dtype)([shortcut, x])
    return layers.ReLU(name=f"{name}_out", dtype=dtype)(x)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class ResNetBackbone(keras.Model):
    """ResNet feature extractor: images `(B, H, W, C)` -> features `(B, D)`.

    Takes normalised images (see `ImageEncoder` for the model that takes
    pixel values in [0, 255]). `D = 8 * width` for basic blocks and
    `32 * width` for bottlenecks: 512 for ResNet18, 2048 for ResNet50.

    Args:
        block_type: `"basic"` (ResNet18/34) or `"bottleneck"` (ResNet50+).
        stackwise_num_blocks: residual blocks in each of the stages.
        width: filters of the first stage; stage i has `width * 2^i`.
        small_kernel_stem: 3x3 stride-1 stem instead of 7x7 stride-2.
        zero_init_residual: gamma = 0 in the last BatchNorm of each block.
        image_shape: input shape; `(None, None, C)` takes any size.
    """

    def __init__(
        self,
        block_type="basic",
        stackwise_num_blocks=(2, 2, 2, 2),
        width=64,
        small_kernel_stem=True,
        zero_init_residual=True,
        image_shape=(None, None, 3),
        dtype=None,
        **kwargs,
    ):
        if block_type not in BLOCK_TYPES:
            raise ValueError(
                f"Unknown block_type {block_type!r}; expected one of "
                f"{BLOCK_TYPES}."
            )
        if not stackwise_num_blocks or min(stackwise_num_blocks) < 1:
            raise ValueError(
                "stackwise_num_blocks must list at least one stage, each "
                f"with >= 1 block; got {stackwise_num_blocks}."
            )
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}.")
        inputs = keras.Input(shape=tuple(image_shape), name="images")
        if small_kernel_stem:
            x = _conv(inputs, width, 3, 1, "stem_conv", dtype)
        else:
            x = _conv(inputs, width, 7, 2, "stem_conv", dtype)
        x = _bn(x, "stem_bn", dtype)
        x = layers.ReLU(name="stem_relu", dtype=dtype)(x)
        x = layers.ZeroPadding2D(1, name="stem_pool_pad", dtype=dtype)(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool", dtype=dtype)(x)
        for stage, num_blocks in enumerate(stackwise_num_blocks):
            for block in range(num_blocks):
                x = _residual_block(
                    x,
                    block_type,
                    filters=width * 2**stage,
                    stride=2 if (stage > 0 and block == 0) else 1,
                    zero_init=zero_init_residual,
                    name=f"stage{stage + 1}_block{block + 1}",
                    dtype=dtype,
                )
        features = layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
        super().__init__(inputs=inputs, outputs=features, dtype=dtype, **kwargs)
        self.block_type = block_type
        self.stackwise_num_blocks = tuple(stackwise_num_blocks)
        self.width = width
        self.small_kernel_stem = small_kernel_stem
        self.zero_init_residual = zero_init_residual
        self.image_shape = tuple(image_shape)

    @property
    def output_dim(self):
        return self.output.shape[-1]

    @classmethod
    def from_name(cls, name, width=64, stackwise_num_blocks=None, **kwargs):
        """Builds `resnet18`, `resnet34`, `resnet50` or `resnet101`.

        `width` and `stackwise_num_blocks` override the architecture's
        defaults (64, and its blocks per stage).
        """
        if name not in RESNET_ARCHITECTURES:
            raise ValueError(
                f"Unknown backbone {name!r}; available: "
                f"{sorted(RESNET_ARCHITECTURES)}."
            )
        block_type, blocks = RESNET_ARCHITECTURES[name]
        return cls(
            block_type=block_type,
            stackwise_num_blocks=stackwise_num_blocks or blocks,
            width=width,
            name=name,
            **kwargs,
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "block_type": self.block_type,
            "stackwise_num_blocks": list(self.stackwise_num_blocks),
            "width": self.width,
            "small_kernel_stem": self.small_kernel_stem,
            "zero_init_residual": self.zero_init_residual,
            "image_shape": list(self.image_shape),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(
                config["dtype"]
            )
        return cls(**config)
