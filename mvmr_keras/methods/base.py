"""What a training method gives the shared trainer (`mvmr_keras.training`).

A method is a `Method` subclass in its own module (registered in
`methods.METHODS`), made from a config for one run. The trainer calls, in
order: `validate` (its own fields; the shared ones are checked by
`training.validate_config`), `train_dataset`, `build_model`,
`before_training`, `build_optimizer`, `callbacks`, then after `fit`
`saved_models` and `results`. `encoder(model)` is what the online probe,
kNN, the baselines and `encoder.keras` use; `term_names(model)` the logged
loss terms that must stay finite.
"""

from mvmr_keras.models import ImageEncoder, build_backbone


def config_encoder(config, name, drop_path_rate=None, image_shape=None):
    """The `ImageEncoder` of a config's backbone fields (`backbone`,
    `backbone_width`, `backbone_depths`, the ResNet stem options, a ViT's
    `patch_size` and `drop_path_rate`), every method's encoder."""
    backbone = build_backbone(
        config.backbone,
        config.image_size,
        width=config.backbone_width,
        depths=tuple(config.backbone_depths),
        small_kernel_stem=config.small_kernel_stem,
        zero_init_residual=config.zero_init_residual,
        drop_path_rate=(config.get("drop_path_rate", 0.0) if drop_path_rate is None
                        else drop_path_rate),
        patch_size=config.get("patch_size") or None,
        image_shape=image_shape,
    )
    return ImageEncoder(backbone, normalization=config.normalization, name=name)


class ConfigError(ValueError):
    """A config that cannot run; the message says what to change."""


class Method:
    """The interface (module docstring); subclasses override what they need."""

    name = ""
    # Fields this method needs beyond the shared ones, in the order a
    # "the config lacks ..." message lists them.
    required_fields = ()
    # The config to derive a new one from, named in that message.
    example_config = "configs/digits.py"

    def __init__(self, config, log=print):
        self.config = config
        self.log = log

    @classmethod
    def validate(cls, config):
        """Raises `ConfigError` for a bad value of one of this method's fields."""

    def train_dataset(self, workdir, train_images, heldout_images):
        """The training batches (a `tf.data.Dataset`, one pass per epoch)
        from the labelled training stream `(image, label)`."""
        raise NotImplementedError

    def build_model(self, steps_per_epoch=1):
        """The built, uncompiled model; `steps_per_epoch` times `epochs` is
        the run's length, for schedules counted in steps."""
        raise NotImplementedError

    def build_optimizer(self, steps_per_epoch):
        raise NotImplementedError

    def before_training(self, model, heldout_images):
        """Scores to take before training (logged); nothing by default."""

    def callbacks(self, model):
        """Extra `fit` callbacks, put before the evaluation callbacks."""
        return []

    def encoder(self, model):
        """The evaluated and saved encoder ([0, 255] images -> features)."""
        return model.encoder

    def extra_encoders(self, model):
        """`{name: encoder}` also scored after training (under `name` in
        results.json, beside their own random init); MOKD's second model."""
        return {}

    def monitored_encoders(self, model):
        """`{name: encoder}` the online probe and kNN monitor follow during
        `fit`: "" is `encoder(model)` (logs `probe_top1`, `knn_top1`), any
        other name logs `probe_<name>_top1`, `knn_<name>_top1`."""
        return {"": None}

    def term_names(self, model):
        """The logged loss terms (besides `loss`) that must stay finite."""
        return list(model.term_names)

    def saved_models(self, model):
        """`{file name: keras model}` written into the workdir after training."""
        return {"model.keras": model, "encoder.keras": self.encoder(model)}

    def results(self, model, heldout_images):
        """Method-specific entries of `results.json`."""
        return {}
