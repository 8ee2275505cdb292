"""The image encoder: pixel values in [0, 255] -> backbone features.

This is the model users save, evaluate and serve: normalisation is inside,
so its input is a plain image batch `(B, H, W, 3)` with values in [0, 255].

Example:

>>> backbone = ResNetBackbone.from_name("resnet18", width=8)
>>> encoder = ImageEncoder(backbone)
>>> encoder(np.full((2, 32, 32, 3), 128.0)).shape
(2, 64)
"""

import keras

# Channel statistics in [0, 1] units (spec section 5).
NORMALIZATION_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.261)),
    # Grey images: one level in all three channels.
    "fashion_mnist": ((0.286, 0.286, 0.286), (0.353, 0.353, 0.353)),
}


def normalization_layer(mean, std, name="normalization", dtype=None):
    """(x - 255 * mean) / (255 * std) per channel, for [0, 255] inputs."""
    return keras.layers.Normalization(
        axis=-1,
        mean=[255.0 * m for m in mean],
        variance=[(255.0 * s) ** 2 for s in std],
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="mvmr_keras")
class ImageEncoder(keras.Model):
    """Normalisation followed by a backbone.

    Args:
        backbone: a `keras.Model` from normalised images to features.
        mean, std: per-channel statistics in [0, 1] units, or
        normalization: a name from `NORMALIZATION_STATS` (default
            `"imagenet"`) used when `mean`/`std` are not given.
    """

    def __init__(
        self,
        backbone,
        mean=None,
        std=None,
        normalization="imagenet",
        dtype=None,
        **kwargs,
    ):
        if mean is None or std is None:
            if normalization not in NORMALIZATION_STATS:
                raise ValueError(
                    f"Unknown normalization {normalization!r}; available: "
                    f"{sorted(NORMALIZATION_STATS)}."
                )
            mean, std = NORMALIZATION_STATS[normalization]
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        image_shape = tuple(backbone.input.shape[1:])
        normalize = normalization_layer(mean, std, dtype=dtype)
        images = keras.Input(shape=image_shape, name="images")
        features = backbone(normalize(images))
        super().__init__(inputs=images, outputs=features, dtype=dtype, **kwargs)
        self.backbone = backbone
        self.normalize = normalize
        self.mean = mean
        self.std = std

    @property
    def output_dim(self):
        return self.output.shape[-1]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(
            config["backbone"]
        )
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(
                config["dtype"]
            )
        return cls(**config)
