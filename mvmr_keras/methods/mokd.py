"""MOKD as a training method: two models that teach each other (`models.MOKD`).

The config is a DINO config (views, `crop_augmentation`, the top-level
backbone and optimiser fields) whose top-level model fields describe the
first model (the evaluated one, whose teacher is `encoder.keras`), plus a
`mokd` block (configs/mokd_digits.py, configs/mokd_imagenet.py):

- the shared DINO parts: `out_dim`, `hidden_dim`, `bottleneck_dim`,
  `use_bn_in_head`, `student_temperature`, `teacher_temperature`,
  `warmup_teacher_temperature`, `center_momentum`, `teacher_momentum`,
  `freeze_last_layer_epochs`, `sgd_momentum`;
- the T-Heads: `thead_blocks`, `thead_heads`, `thead_dim` (the token width
  when neither model is a ViT; else the ViT's width);
- `cross_warmup_fraction`: the teacher-temperature warm-up of every cross
  loss, as a fraction of the run (reference 30 of 100 epochs);
- `monitor` (optional, default both): the names of the models the online
  probe and kNN monitor follow during training; the first logs
  `probe_top1` and `knn_top1`, the second `probe_<name>_top1` and
  `knn_<name>_top1` (`online_probe_<name>.keras` in each checkpoint);
- `first` and `second`: each model's `name`, `cross_weight` (lambda),
  `self_warmup_fraction` (its own losses' warm-up; CNN 0.5, ViT 0.3),
  `norm_last_layer` (its DINO head's frozen gain), `clip_grad`,
  `final_weight_decay`, and `thead_schedule`: `own` (the T-Head is stepped
  with the model's other variables) or `other` (MOKD's CNN: a third
  parameter group, stepped by the model's optimiser but on the other
  model's learning-rate and weight-decay schedules, decayed in every
  tensor). `second` also overrides any top-level model field for the
  second model: `backbone`, `backbone_width`, `backbone_depths`,
  `patch_size`, `drop_path_rate`, `small_kernel_stem`, `optimizer`,
  `learning_rate`, `final_learning_rate`, `weight_decay`, `warmup_epochs`.

Saved: `encoder.keras` (the first model's teacher), `encoder_<second
name>.keras` (the second's), `model.keras` (both students and teachers);
`results.json` has the first model's scores at the top level and the
second's under its name.

Example:

>>> method = MOKDMethod(mokd_digits.get_config())
>>> model = method.build_model(steps_per_epoch=11)
>>> model.compile(optimizer=method.build_optimizer(steps_per_epoch=11))
"""

import keras
from ml_collections import config_dict

from mvmr_keras import schedules
from mvmr_keras.methods.base import ConfigError, config_encoder
from mvmr_keras.methods.dino import (DINOMethod, validate_backbone, validate_distillation,
                                     validate_views)
from mvmr_keras.models import BACKBONES, VIT_ARCHITECTURES
from mvmr_keras.models.dino_head import DINOHead
from mvmr_keras.models.mokd import MOKD
from mvmr_keras.models.transformer_head import TransformerHead
from mvmr_keras.optimizers import DistillationAdamW, DistillationSGD, GroupedOptimizer

OPTIMIZERS = ("adamw", "sgd")
THEAD_SCHEDULES = ("own", "other")
SHARED_FIELDS = (
    "out_dim", "hidden_dim", "bottleneck_dim", "use_bn_in_head", "student_temperature",
    "teacher_temperature", "warmup_teacher_temperature", "center_momentum", "teacher_momentum",
    "freeze_last_layer_epochs", "sgd_momentum", "thead_blocks", "thead_heads", "thead_dim",
    "cross_warmup_fraction", "first", "second",
)
MODEL_FIELDS = ("name", "cross_weight", "self_warmup_fraction", "norm_last_layer", "clip_grad",
                "final_weight_decay", "thead_schedule")
# Top-level fields the `second` block may override.
OVERRIDABLE = ("backbone", "backbone_width", "backbone_depths", "patch_size", "drop_path_rate",
               "small_kernel_stem", "zero_init_residual", "optimizer", "learning_rate",
               "final_learning_rate", "weight_decay", "warmup_epochs")


def _plain(block):
    return block.to_dict() if hasattr(block, "to_dict") else dict(block or {})


def model_config(config, index):
    """The flat config of model `index` (0: the top-level fields; 1: those
    overridden by `mokd.second`), with its `mokd.first`/`second` fields."""
    flat = _plain(config)
    own = _plain(config["mokd"]["first" if index == 0 else "second"])
    flat.update(own)
    return config_dict.ConfigDict(flat)


def _warmup_epochs(fraction, epochs):
    return int(round(fraction * epochs))


class MOKDMethod(DINOMethod):
    name = "mokd"
    required_fields = ("local_crop_size", "num_local_crops", "global_crop_scale",
                       "local_crop_scale", "drop_path_rate", "patch_size", "mokd")
    example_config = "configs/mokd_digits.py"

    @classmethod
    def validate(cls, config):
        c = _plain(config)
        m = c["mokd"] or {}
        missing = [f for f in SHARED_FIELDS if f not in m]
        if missing:
            raise ConfigError(f"the config's mokd block lacks {', '.join(missing)}; derive it "
                              f"from {cls.example_config}")
        for which in ("first", "second"):
            missing = [f for f in MODEL_FIELDS if f not in (m[which] or {})]
            if missing:
                raise ConfigError(f"mokd.{which} lacks {', '.join(missing)}; derive it from "
                                  f"{cls.example_config}")
            unknown = set(m[which]) - set(MODEL_FIELDS) - (
                set(OVERRIDABLE) if which == "second" else set())
            if unknown:
                raise ConfigError(f"mokd.{which} has unknown fields {sorted(unknown)}")
        if m["first"]["name"] == m["second"]["name"] or not all(
                str(m[w]["name"]).isidentifier() for w in ("first", "second")):
            raise ConfigError("mokd.first.name and mokd.second.name must be two different "
                              f"identifiers; got {m['first']['name']!r}, {m['second']['name']!r}")
        if (c.get("gradient_accumulation_steps") or 1) > 1:
            raise ConfigError(
                "gradient_accumulation_steps > 1 is not supported for mokd: its EMA teachers, "
                "centres and weight-decay schedules move every batch; use a smaller batch_size")
        validate_views(c)
        vit_widths = set()
        for index, which in enumerate(("first", "second")):
            mc = _plain(model_config(config, index))
            where = f"mokd.{which}" if index else "the first model"
            if mc["backbone"] not in BACKBONES:
                raise ConfigError(f"unknown backbone {mc['backbone']!r} for {where}; available: "
                                  f"{sorted(BACKBONES)}")
            if mc["optimizer"] not in OPTIMIZERS:
                raise ConfigError(f"unknown optimizer {mc['optimizer']!r} for {where}; "
                                  f"available: {list(OPTIMIZERS)}")
            if mc["thead_schedule"] not in THEAD_SCHEDULES:
                raise ConfigError(f"{where}: thead_schedule must be one of "
                                  f"{list(THEAD_SCHEDULES)}; got {mc['thead_schedule']!r}")
            validate_backbone(mc, where)
            if mc["backbone"] in VIT_ARCHITECTURES:
                vit_widths.add(mc["backbone_width"])
            for field in ("self_warmup_fraction",):
                if not 0 <= mc[field] <= 1:
                    raise ConfigError(f"mokd.{which}.{field} must be in [0, 1]")
            if mc["cross_weight"] < 0 or mc["clip_grad"] < 0 or mc["final_weight_decay"] < 0:
                raise ConfigError(f"mokd.{which}: cross_weight, clip_grad and "
                                  "final_weight_decay must be >= 0")
            if mc["learning_rate"] <= 0:
                raise ConfigError(f"{where}: learning_rate must be > 0")
        if len(vit_widths) > 1:
            raise ConfigError(
                f"two ViTs of different widths {sorted(vit_widths)}: each one's CLS query "
                "must fit the other's T-Head")
        unknown = set(m.get("monitor") or ()) - {m["first"]["name"], m["second"]["name"]}
        if unknown or isinstance(m.get("monitor"), str):
            raise ConfigError(
                f"mokd.monitor must be a list of the models' names "
                f"({m['first']['name']!r}, {m['second']['name']!r}); got {m.get('monitor')!r}")
        if not 0 <= m["cross_warmup_fraction"] <= 1:
            raise ConfigError("mokd.cross_warmup_fraction must be in [0, 1]")
        validate_distillation(m, "mokd")
        for field in ("thead_blocks", "thead_heads", "thead_dim"):
            if m[field] < 1:
                raise ConfigError(f"mokd.{field} must be >= 1; got {m[field]}")
        width = next(iter(vit_widths)) if vit_widths else m["thead_dim"]
        if width % m["thead_heads"]:
            raise ConfigError(f"the T-Heads' width {width} is not divisible by "
                              f"mokd.thead_heads {m['thead_heads']}")

    # -- the model

    def names(self):
        return [self.config.mokd.first.name, self.config.mokd.second.name]

    def _encoders(self, index):
        c = model_config(self.config, index)
        name = self.names()[index]
        student = config_encoder(c, f"{name}_student", drop_path_rate=c.drop_path_rate,
                                 image_shape=(None, None, 3))
        # The evaluated encoder keeps MV-MR's and DINO's name.
        teacher = config_encoder(c, "encoder" if index == 0 else f"encoder_{name}",
                                 drop_path_rate=0.0, image_shape=(None, None, 3))
        return student, teacher

    def _thead(self, encoder, width, name):
        m = self.config.mokd
        size = self.config.image_size
        if hasattr(encoder.backbone, "patch_size"):  # a ViT: its patch tokens
            input_dim, grid = None, size // encoder.backbone.patch_size
        else:  # a CNN: its last map, projected
            feature_map = keras.Model(encoder.backbone.inputs,
                                      encoder.backbone.get_layer("avg_pool").input)
            shape = feature_map.compute_output_shape((1, size, size, 3))
            input_dim, grid = shape[-1], shape[1]
        return TransformerHead(m.out_dim, width, grid, input_dim=input_dim,
                               num_blocks=m.thead_blocks, num_heads=m.thead_heads, name=name)

    def build_model(self, steps_per_epoch=1):
        config, m = self.config, self.config.mokd
        names = self.names()
        encoders = [self._encoders(i) for i in range(2)]
        vits = [s.backbone.hidden_dim for s, _ in encoders if hasattr(s.backbone, "patch_size")]
        width = vits[0] if vits else m.thead_dim
        parts = {key: [] for key in ("students", "teachers", "student_heads", "teacher_heads",
                                     "student_theads", "teacher_theads")}
        for index, (student, teacher) in enumerate(encoders):
            c = model_config(config, index)
            name = names[index]
            parts["students"].append(student)
            parts["teachers"].append(teacher)
            for key, suffix in (("student_heads", "head"), ("teacher_heads", "teacher_head")):
                parts[key].append(DINOHead(
                    out_dim=m.out_dim, hidden_dim=m.hidden_dim, bottleneck_dim=m.bottleneck_dim,
                    norm_last_layer=c.norm_last_layer, use_bn=m.use_bn_in_head,
                    name=f"{name}_{suffix}"))
            parts["student_theads"].append(self._thead(student, width, f"{name}_thead"))
            parts["teacher_theads"].append(self._thead(teacher, width, f"{name}_teacher_thead"))
        epochs = config.epochs
        model = MOKD(
            names, **parts,
            cross_weights=[model_config(config, i).cross_weight for i in range(2)],
            self_warmup_epochs=[_warmup_epochs(model_config(config, i).self_warmup_fraction,
                                               epochs) for i in range(2)],
            cross_warmup_epochs=_warmup_epochs(m.cross_warmup_fraction, epochs),
            student_temperature=m.student_temperature,
            teacher_temperature=m.teacher_temperature,
            warmup_teacher_temperature=m.warmup_teacher_temperature,
            center_momentum=m.center_momentum,
            teacher_momentum=m.teacher_momentum,
            steps_per_epoch=steps_per_epoch,
            total_steps=epochs * steps_per_epoch,
            optimizer_groups=[names for names, _ in self._optimizer_plan()],
            name="mokd",
        )
        model.build()
        return model

    # -- optimisation

    def _optimizer_plan(self):
        """`[(variable group names, (model index whose rule, model index
        whose schedules, decay_all))]`, one entry per optimiser."""
        plan = []
        for index, name in enumerate(self.names()):
            if model_config(self.config, index).thead_schedule == "other":
                plan.append(([name], (index, index, False)))
                plan.append(([f"{name}_thead"], (index, 1 - index, True)))
            else:
                plan.append(([name, f"{name}_thead"], (index, index, False)))
        return plan

    def build_optimizer(self, steps_per_epoch):
        config, m = self.config, self.config.mokd
        total = config.epochs * steps_per_epoch
        optimizers = []
        for groups, (rule, schedule, decay_all) in self._optimizer_plan():
            rc, sc = model_config(config, rule), model_config(config, schedule)
            common = dict(
                learning_rate=schedules.learning_rate_schedule(sc, steps_per_epoch),
                weight_decay=sc.weight_decay,
                final_weight_decay=sc.final_weight_decay,
                decay_steps=total,
                freeze_steps=m.freeze_last_layer_epochs * steps_per_epoch,
                clipnorm=rc.clip_grad or None,
                decay_all=decay_all,
                name="_".join(groups[:1]) + f"_{rc.optimizer}",
            )
            if rc.optimizer == "sgd":
                optimizers.append(DistillationSGD(momentum=m.sgd_momentum, **common))
            else:
                optimizers.append(DistillationAdamW(**common))
        return GroupedOptimizer(optimizers)

    # -- outputs

    def extra_encoders(self, model):
        return {name: encoder for name, encoder in list(model.encoders().items())[1:]}

    def monitored_encoders(self, model):
        """`mokd.monitor` (default both models): the first model's encoder as
        "" (`probe_top1`, `knn_top1`), the second's under its name."""
        names = self.names()
        wanted = self.config.mokd.get("monitor") or names
        teachers = model.encoders()
        return {("" if name == names[0] else name): teachers[name] for name in wanted}

    def saved_models(self, model):
        saved = {"model.keras": model, "encoder.keras": model.encoder}
        for name, encoder in self.extra_encoders(model).items():
            saved[f"encoder_{name}.keras"] = encoder
        return saved

    def results(self, model, heldout_images):
        return {"method": self.name, "models": self.names()}


METHOD = MOKDMethod
