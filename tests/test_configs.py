"""Every shipped config is one the trainer accepts."""

import importlib
import os

import pytest

from conftest import REPO_ROOT
from mvmr_keras import training

CONFIG_NAMES = sorted(
    name[:-3]
    for name in os.listdir(os.path.join(REPO_ROOT, "configs"))
    if name.endswith(".py") and name != "__init__.py"
)


def test_the_paper_configs_are_all_shipped():
    for name in ("digits", "stl10", "cifar10", "cifar100", "cifar20", "imagenet",
                 "imagenet100", "stl10_clip", "cifar100_clip", "imagenet_clip"):
        assert name in CONFIG_NAMES


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_validates(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    training.validate_config(config)  # raises ConfigError with the reason
    if name.endswith("_clip"):
        assert config.teacher.preset and config.backbone == "resnet50"
        assert config.projector == "8192-8192-8192" and config.epochs == 200


def test_the_dinov2_and_two_teacher_configs():
    from mvmr_keras.teachers import distillation

    (dino,) = distillation.teacher_specs(importlib.import_module("configs.stl10_dinov2").get_config())
    assert dino.preset == "dinov2_base" and dino.image_size == 518 and dino.image_size % 14 == 0
    assert dino.embedding == "cls+mean" and dino.interpolation == ""  # the converter's own
    config = importlib.import_module("configs.stl10_clip_dinov2").get_config()
    specs = distillation.teacher_specs(config)
    assert [(s.name, s.preset) for s in specs] == [
        ("clip", "clip_vit_base_patch16"), ("dinov2", "dinov2_base")]
    assert not config.teacher.preset and config.backbone == "resnet50"
    assert sum(s.weight for s in specs) == 1.0


def test_fashion_mnist_comes_at_two_scales():
    from configs import fashion_mnist

    cpu, gpu = fashion_mnist.get_config(), fashion_mnist.get_config("gpu")
    for config in (cpu, gpu):
        training.validate_config(config)
        assert config.dataset == "fashion_mnist" and config.image_size == 28
    # The CPU scale: narrower, a subset per epoch, fewer epochs.
    assert cpu.backbone_width < gpu.backbone_width and cpu.epochs < gpu.epochs
    assert cpu.steps_per_epoch * cpu.batch_size < 60_000 and gpu.steps_per_epoch is None
    with pytest.raises(ValueError, match="unknown scale 'tpu'"):
        fashion_mnist.get_config("tpu")
