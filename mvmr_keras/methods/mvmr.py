"""MV-MR as a training method: an encoder and projector on two views.

Its config fields beyond the shared ones are the views (`policy`,
`crop_scale`), the projector, the representations and their objective,
the variance margin, and the optional frozen teachers (`teacher`,
`teachers`; `mvmr_keras.teachers.distillation`), whose embeddings travel
with the images (cached) or run live in the model. See configs/digits.py.

Example:

>>> method = MVMRMethod(digits.get_config())
>>> model = method.build_model()
>>> model.compile(optimizer=method.build_optimizer(steps_per_epoch=11))
"""

import keras
import numpy as np

from mvmr_keras import data as data_lib
from mvmr_keras import losses, schedules
from mvmr_keras import representations as representations_lib
from mvmr_keras.methods.base import ConfigError, Method, config_encoder
from mvmr_keras.models import MVMR
from mvmr_keras.teachers import distillation

OPTIMIZERS = ("adam", "adamw")


class MVMRMethod(Method):
    name = "mvmr"
    required_fields = ("policy", "crop_scale", "projector", "representations",
                       "representation_objective", "variance_margin")
    example_config = "configs/digits.py"

    def __init__(self, config, log=print):
        super().__init__(config, log)
        self.teacher = None  # the live teacher layer(s), when distilling without a cache
        self.setup = None
        self._init_dcor = None

    @classmethod
    def validate(cls, config):
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if c["batch_size"] < 2:
            raise ConfigError(
                f"batch_size must be >= 2 (distance correlation needs at least two "
                f"samples); got {c['batch_size']}"
            )
        if c["optimizer"] not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {c['optimizer']!r}; available: {list(OPTIMIZERS)}")
        if c["representation_objective"] not in losses.REPRESENTATION_OBJECTIVES:
            raise ConfigError(
                f"unknown representation_objective {c['representation_objective']!r}; "
                f"available: {list(losses.REPRESENTATION_OBJECTIVES)}"
            )
        crop_scale = tuple(c["crop_scale"])
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ConfigError(
                f"crop_scale must be a pair (min, max) with 0 < min <= max <= 1; "
                f"got {c['crop_scale']}"
            )
        if c["policy"] not in data_lib.POLICIES:
            raise ConfigError(f"unknown policy {c['policy']!r}; available: {list(data_lib.POLICIES)}")
        try:
            parsed = representations_lib.parse(c["representations"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
        _check_representations_take(parsed, c["image_size"])
        try:
            distillation.validate(config)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def train_dataset(self, workdir, train_images, heldout_images):
        config = self.config
        if distillation.enabled(config):
            try:
                self.setup = distillation.prepare(config, workdir, train_images, heldout_images,
                                                  log=self.log)
            except ValueError as e:  # a preset that cannot load, a stale cache
                raise ConfigError(str(e)) from None
            self.teacher = self.setup.teacher
            if self.setup.train_embeddings is not None:
                import tensorflow as tf

                # (image, label, embedding): the embedding (a dict of them for
                # several teachers) travels with its image (the stream's order
                # is the cache's order).
                train_images = tf.data.Dataset.zip(
                    train_images, tf.data.Dataset.from_tensor_slices(self.setup.train_embeddings)
                ).map(lambda example, embedding: (*example, embedding))
        return data_lib.views(
            train_images,
            config.policy,
            image_size=config.image_size,
            batch_size=config.batch_size,
            seed=config.seed,
            crop_scale=tuple(config.crop_scale),
        )

    def build_model(self, steps_per_epoch=1):
        config = self.config
        encoder = config_encoder(config, "encoder")
        parsed = representations_lib.parse(config.representations)
        model = MVMR(
            encoder,
            projector=config.projector,
            representations=[layer for layer, _ in parsed],
            representation_weights=[weight for _, weight in parsed],
            representation_objective=config.representation_objective,
            variance_margin=config.variance_margin,
            **distillation.model_arguments(config, self.teacher),
        )
        model.build((None, config.image_size, config.image_size, 3))
        return model

    def build_optimizer(self, steps_per_epoch):
        """Adam or AdamW with (decoupled) weight decay and the LR schedule."""
        config = self.config
        optimizer_class = {
            "adam": keras.optimizers.Adam,
            "adamw": keras.optimizers.AdamW,
        }[config.optimizer]
        accumulation = schedules.gradient_accumulation_steps(config)
        return optimizer_class(
            learning_rate=schedules.learning_rate_schedule(config, steps_per_epoch),
            weight_decay=config.weight_decay or None,
            # Keras averages the gradients of this many batches into one
            # update; each batch's loss (every dCor) is its own.
            gradient_accumulation_steps=accumulation if accumulation > 1 else None,
        )

    def before_training(self, model, heldout_images):
        if distillation.enabled(self.config):
            self._init_dcor = distillation.heldout_dcors(model, self.config, self.setup,
                                                         heldout_images)
            self.log("Held-out dCor(z, teacher) at initialisation: "
                     f"{distillation.describe(self._init_dcor)}")

    def results(self, model, heldout_images):
        found = {"representation_objective": self.config.representation_objective}
        if distillation.enabled(self.config):
            final_dcor = distillation.heldout_dcors(model, self.config, self.setup, heldout_images)
            found.update(distillation.results(final_dcor, self._init_dcor))
            self.log(f"Held-out dCor(z, teacher): {distillation.describe(final_dcor)} "
                     f"(at initialisation: {distillation.describe(self._init_dcor)}).")
        return found


def _check_representations_take(parsed, image_size):
    """Runs each representation on one blank image of the config's size, so
    that a size one of them cannot take (HOG's pooling of 30 px) fails here,
    not after the data has loaded."""
    images = np.zeros((1, image_size, image_size, 3), "float32")
    for layer, _ in parsed:
        try:
            out = keras.ops.convert_to_numpy(layer(images))
        except Exception as e:  # shape errors differ per backend
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"representation {layer.name!r} cannot take {image_size}x{image_size} images "
                f"({reason}); choose another image_size"
            ) from None
        if out.size == 0:
            raise ConfigError(
                f"representation {layer.name!r} gives no features at {image_size}x{image_size}; "
                "choose a larger image_size"
            )


METHOD = MVMRMethod
