"""DINO as a training method: a student and its EMA teacher on multi-crop views.

Config fields beyond the shared ones (see configs/dino_digits.py):

- views: `image_size` is the global crops' side (and the evaluation
  images'), `local_crop_size`, `num_local_crops`, `global_crop_scale`,
  `local_crop_scale` (`mvmr_keras.data.multicrop_views`), and optionally
  a `crop_augmentation` block changing some of DINO's augmentation rates
  (`flip_rate`, `color_jitter_rate`, `grayscale_rate`, `global_blur_rates`,
  `local_blur_rate`, `solarize_rate`; `multicrop.DINO_AUGMENTATION`;
  absent = DINO's);
- `drop_path_rate` (the student ViT's; the teacher has none);
- `optimizer`: `adamw` or `sgd` (momentum `dino.sgd_momentum`), with
  `weight_decay` the decay at step 0, following a cosine to
  `dino.final_weight_decay` (equal: constant) on rank >= 2 tensors;
  `learning_rate` (already scaled to the batch), `final_learning_rate`
  and `warmup_epochs` as every method (`schedules.learning_rate_schedule`);
- the `dino` block: the head (`out_dim`, `hidden_dim`, `bottleneck_dim`,
  `norm_last_layer`, optional `use_bn_in_head`, default False), the temperatures (`student_temperature`,
  `teacher_temperature`, `warmup_teacher_temperature`,
  `warmup_teacher_temperature_epochs`, cut to the run's epochs when
  longer), `center_momentum`,
  `teacher_momentum`, `clip_grad` (per-tensor norm, 0 = off) and
  `freeze_last_layer_epochs`.

The evaluated and saved encoder (`encoder.keras`) is the teacher's.

Example:

>>> method = DINOMethod(dino_digits.get_config())
>>> model = method.build_model(steps_per_epoch=11)
>>> model.compile(optimizer=method.build_optimizer(steps_per_epoch=11))
"""

from mvmr_keras import data as data_lib
from mvmr_keras import schedules
from mvmr_keras.data.multicrop import augmentation_rates
from mvmr_keras.methods.base import ConfigError, Method, config_encoder
from mvmr_keras.models import VIT_ARCHITECTURES
from mvmr_keras.models.dino import DINO
from mvmr_keras.models.dino_head import DINOHead
from mvmr_keras.optimizers import DistillationAdamW, DistillationSGD

OPTIMIZERS = ("adamw", "sgd")
DINO_FIELDS = (
    "out_dim", "hidden_dim", "bottleneck_dim", "norm_last_layer", "student_temperature",
    "teacher_temperature", "warmup_teacher_temperature", "warmup_teacher_temperature_epochs",
    "center_momentum", "teacher_momentum", "final_weight_decay", "clip_grad",
    "freeze_last_layer_epochs", "sgd_momentum",
)


def _scale_pair(c, field):
    pair = tuple(c[field])
    if len(pair) != 2 or not 0 < pair[0] <= pair[1] <= 1:
        raise ConfigError(
            f"{field} must be a pair (min, max) with 0 < min <= max <= 1; got {c[field]}")


def validate_views(c):
    """The multi-crop views' fields of a config dict (DINO's and MOKD's)."""
    if c["local_crop_size"] < 1 or c["num_local_crops"] < 0:
        raise ConfigError(
            f"local_crop_size must be >= 1 and num_local_crops >= 0; got "
            f"{c['local_crop_size']} and {c['num_local_crops']}")
    _scale_pair(c, "global_crop_scale")
    _scale_pair(c, "local_crop_scale")
    try:
        augmentation_rates(c.get("crop_augmentation"))
    except ValueError as error:
        raise ConfigError(f"crop_augmentation: {error}") from None


def validate_backbone(c, where="the model"):
    """One model's drop-path and patch fields against its backbone and the
    crops (DINO's model, each of MOKD's)."""
    if not 0 <= c["drop_path_rate"] < 1:
        raise ConfigError(f"{where}: drop_path_rate must be in [0, 1); got {c['drop_path_rate']}")
    if c["backbone"] in VIT_ARCHITECTURES:
        patch = c.get("patch_size") or VIT_ARCHITECTURES[c["backbone"]][3]
        for field in ("image_size", "local_crop_size"):
            if c[field] % patch:
                raise ConfigError(f"{field} {c[field]} is not a multiple of the ViT's patch "
                                  f"size {patch} ({where})")
    elif c["drop_path_rate"] or c.get("patch_size"):
        raise ConfigError(f"drop_path_rate and patch_size are for ViT backbones; {where} "
                          f"({c['backbone']}) has neither (set them to 0)")


def validate_distillation(block, prefix):
    """The head sizes, temperatures, momenta and epoch counts DINO and MOKD
    share, in their `dino` or `mokd` block."""
    for field in ("out_dim", "hidden_dim", "bottleneck_dim"):
        if block[field] < 1:
            raise ConfigError(f"{prefix}.{field} must be >= 1; got {block[field]}")
    for field in ("student_temperature", "teacher_temperature", "warmup_teacher_temperature"):
        if not block[field] > 0:
            raise ConfigError(f"{prefix}.{field} must be > 0; got {block[field]}")
    for field in ("center_momentum", "teacher_momentum", "sgd_momentum"):
        if not 0 <= block[field] <= 1:
            raise ConfigError(f"{prefix}.{field} must be in [0, 1]; got {block[field]}")
    for field in ("warmup_teacher_temperature_epochs", "freeze_last_layer_epochs"):
        if block.get(field, 0) < 0:
            raise ConfigError(f"{prefix}.{field} must be >= 0; got {block[field]}")


def _to_dict(block):
    return block.to_dict() if hasattr(block, "to_dict") else block


class DINOMethod(Method):
    name = "dino"
    required_fields = ("local_crop_size", "num_local_crops", "global_crop_scale",
                       "local_crop_scale", "drop_path_rate", "patch_size", "dino")
    example_config = "configs/dino_digits.py"

    @classmethod
    def validate(cls, config):
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        missing = [f for f in DINO_FIELDS if f not in (c["dino"] or {})]
        if missing:
            raise ConfigError(
                f"the config's dino block lacks {', '.join(missing)}; derive it from "
                f"{cls.example_config}")
        d = c["dino"]
        if (c.get("gradient_accumulation_steps") or 1) > 1:
            raise ConfigError(
                "gradient_accumulation_steps > 1 is not supported for dino: its EMA teacher, "
                "centre and weight-decay schedule move every batch; use a smaller batch_size")
        if c["optimizer"] not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {c['optimizer']!r} for dino; available: {list(OPTIMIZERS)}")
        validate_views(c)
        validate_backbone(c)
        validate_distillation(d, "dino")
        if d["clip_grad"] < 0 or d["final_weight_decay"] < 0 or c["weight_decay"] < 0:
            raise ConfigError("dino.clip_grad, weight_decay and dino.final_weight_decay must be >= 0")

    def train_dataset(self, workdir, train_images, heldout_images):
        config = self.config
        return data_lib.multicrop_views(
            train_images,
            global_size=config.image_size,
            local_size=config.local_crop_size,
            num_local_crops=config.num_local_crops,
            global_crop_scale=tuple(config.global_crop_scale),
            local_crop_scale=tuple(config.local_crop_scale),
            augmentation=_to_dict(config.get("crop_augmentation")),
            batch_size=config.batch_size,
            seed=config.seed,
        )

    def _encoder(self, drop_path_rate, name):
        # Any image size: the global and the local crops.
        return config_encoder(self.config, name, drop_path_rate=drop_path_rate,
                              image_shape=(None, None, 3))

    def _head(self, name):
        d = self.config.dino
        return DINOHead(out_dim=d.out_dim, hidden_dim=d.hidden_dim,
                        bottleneck_dim=d.bottleneck_dim, norm_last_layer=d.norm_last_layer,
                        use_bn=d.get("use_bn_in_head", False), name=name)

    def build_model(self, steps_per_epoch=1):
        config, d = self.config, self.config.dino
        model = DINO(
            student=self._encoder(config.drop_path_rate, "student"),
            teacher=self._encoder(0.0, "encoder"),  # the saved encoder keeps MV-MR's name
            student_head=self._head("student_head"),
            teacher_head=self._head("teacher_head"),
            student_temperature=d.student_temperature,
            teacher_temperature=d.teacher_temperature,
            warmup_teacher_temperature=d.warmup_teacher_temperature,
            # A run shorter than the warm-up (a smoke test) ends it at its last epoch.
            warmup_teacher_temperature_epochs=min(d.warmup_teacher_temperature_epochs,
                                                  config.epochs),
            center_momentum=d.center_momentum,
            teacher_momentum=d.teacher_momentum,
            steps_per_epoch=steps_per_epoch,
            total_steps=config.epochs * steps_per_epoch,
            name="dino",
        )
        model.build()
        return model

    def build_optimizer(self, steps_per_epoch):
        config, d = self.config, self.config.dino
        common = dict(
            learning_rate=schedules.learning_rate_schedule(config, steps_per_epoch),
            weight_decay=config.weight_decay,
            final_weight_decay=d.final_weight_decay,
            decay_steps=config.epochs * steps_per_epoch,
            freeze_steps=d.freeze_last_layer_epochs * steps_per_epoch,
            clipnorm=d.clip_grad or None,
        )
        if config.optimizer == "sgd":
            return DistillationSGD(momentum=d.sgd_momentum, **common)
        return DistillationAdamW(**common)

    def results(self, model, heldout_images):
        return {"method": self.name}


METHOD = DINOMethod
