"""The method registry: config.method picks the method; MV-MR is the default."""

import pytest

from mvmr_keras import methods, training
from mvmr_keras.configs import dino_digits
from mvmr_keras.methods.dino import DINOMethod
from mvmr_keras.methods.mvmr import MVMRMethod
from tiny_training_config import tiny_config


def test_a_config_without_method_is_mvmr():
    config = tiny_config()
    assert "method" not in config
    assert methods.name_of(config) == "mvmr" and methods.get(config) is MVMRMethod
    assert methods.get(dino_digits.get_config()) is DINOMethod
    assert training.ConfigError is methods.ConfigError


def test_an_unknown_method_is_one_clear_line():
    config = tiny_config()
    config.method = "byol"
    with pytest.raises(training.ConfigError, match=r"unknown method 'byol'; available: \['mvmr', 'dino', 'mokd'\]"):
        training.validate_config(config)


def test_missing_fields_name_the_methods_example():
    config = dino_digits.get_config()
    del config["num_local_crops"]
    with pytest.raises(training.ConfigError, match="lacks num_local_crops; derive it from configs/dino_digits.py"):
        training.validate_config(config)
    config = tiny_config()
    del config["projector"]
    with pytest.raises(training.ConfigError, match="lacks projector; derive it from configs/digits.py"):
        training.validate_config(config)


def _dino(**overrides):
    config = dino_digits.get_config()
    dino = overrides.pop("dino", {})
    config.update(overrides)
    config.dino.update(dino)
    return config


def _augmented(**rates):
    config = dino_digits.get_config()
    config.crop_augmentation = dict(config.crop_augmentation.to_dict(), **rates)
    return config


@pytest.mark.parametrize(
    "config, match",
    [
        (_dino(optimizer="adam"), "unknown optimizer 'adam' for dino; available: \\['adamw', 'sgd'\\]"),
        (_dino(global_crop_scale=(0.5, 0.2)), "global_crop_scale must be a pair"),
        (_dino(num_local_crops=-1), "num_local_crops >= 0"),
        (_dino(dino={"out_dim": 0}), "dino.out_dim must be >= 1"),
        (_dino(dino={"teacher_momentum": 1.5}), "dino.teacher_momentum must be in \\[0, 1\\]"),
        (_dino(dino={"student_temperature": 0.0}), "dino.student_temperature must be > 0"),
        (_dino(drop_path_rate=0.1), "drop_path_rate and patch_size are for ViT backbones"),
        (_dino(backbone="vit_digits", local_crop_size=18), "local_crop_size 18 is not a multiple of the ViT's patch size 4"),
        (_augmented(blur_rate=0.5), "crop_augmentation: unknown multi-crop augmentation 'blur_rate'"),
        (_augmented(solarize_rate=2.0), "crop_augmentation: multi-crop augmentation solarize_rate must be a rate"),
    ],
)
def test_bad_dino_configs_are_rejected_with_a_reason(config, match):
    with pytest.raises(training.ConfigError, match=match):
        training.validate_config(config)


def test_dino_builds_a_model_whose_evaluated_encoder_is_the_teacher():
    config = _dino(backbone_width=4, dino={"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8})
    method = methods.create(config)
    model = method.build_model(steps_per_epoch=3)
    assert method.encoder(model) is model.teacher and model.total_steps == 3 * config.epochs
    short = methods.create(_dino(epochs=3, dino={"warmup_teacher_temperature_epochs": 10}))
    assert short.build_model(steps_per_epoch=1).warmup_teacher_temperature_epochs == 3  # cut to the run
    assert method.term_names(model) == ["teacher_entropy", "teacher_marginal_entropy",
                                        "teacher_temperature"]
    optimizer = method.build_optimizer(steps_per_epoch=3)
    assert (optimizer.freeze_steps, optimizer.decay_steps, optimizer.clipnorm) == (
        3, 3 * config.epochs, 3.0)
    assert optimizer.final_weight_decay == 0.4 and optimizer.weight_decay_start == 0.04
    sgd = methods.create(_dino(optimizer="sgd")).build_optimizer(steps_per_epoch=3)
    assert type(sgd).__name__ == "DistillationSGD" and sgd.momentum == 0.9
    # training.build_model (evaluate.py's random-init baseline) goes through the method.
    assert type(training.build_model(config)).__name__ == "DINO"


def test_dino_with_a_vit_student_with_drop_path_and_a_teacher_without():
    import numpy as np

    config = _dino(backbone="vit_digits", backbone_width=32, backbone_depths=(1,), patch_size=8,
                   drop_path_rate=0.1, dino={"out_dim": 32, "hidden_dim": 16,
                                             "bottleneck_dim": 8, "norm_last_layer": False})
    training.validate_config(config)
    method = methods.create(config)
    model = method.build_model(steps_per_epoch=1)
    assert model.student.backbone.drop_path_rate == 0.1
    assert model.teacher.backbone.drop_path_rate == 0.0
    model.compile(optimizer=method.build_optimizer(steps_per_epoch=1))
    rng = np.random.default_rng(0)
    batch = {"global_crops": rng.uniform(0, 255, (4, 2, 32, 32, 3)).astype("float32"),
             "local_crops": rng.uniform(0, 255, (4, 2, 16, 16, 3)).astype("float32")}
    logs = model.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 < logs["teacher_entropy"] <= np.log(32) + 1e-5
    features = model.encoder.predict(batch["local_crops"][:, 0], verbose=0)
    assert features.shape == (4, 32)


def test_dino_crop_augmentation_reaches_the_views_and_defaults_to_dinos(monkeypatch):
    import mvmr_keras.methods.dino as dino_method
    from mvmr_keras.data.multicrop import DINO_AUGMENTATION

    config = _dino()
    del config["crop_augmentation"]
    training.validate_config(config)  # optional: absent = DINO's rates
    seen = {}
    monkeypatch.setattr(dino_method.data_lib, "multicrop_views",
                        lambda images, **kwargs: seen.update(kwargs))
    methods.create(config).train_dataset(None, None, None)
    assert seen["augmentation"] is None
    methods.create(_dino()).train_dataset(None, None, None)
    assert seen["augmentation"]["solarize_rate"] == 0.0
    assert set(seen["augmentation"]) == set(DINO_AUGMENTATION)
