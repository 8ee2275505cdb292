"""Every shipped config is one the trainer accepts, and ships with the package."""

import importlib
import os

import pytest

from conftest import REPO_ROOT
from mvmr_keras import configs, training

CONFIG_NAMES = configs.names()


def test_the_paper_configs_are_all_shipped():
    for name in ("digits", "stl10", "cifar10", "cifar100", "cifar20", "imagenet",
                 "imagenet100", "stl10_clip", "cifar100_clip", "imagenet_clip"):
        assert name in CONFIG_NAMES


def test_the_checkout_configs_folder_is_the_package_one():
    # One copy of each file: `configs/` in a checkout links to the package's.
    assert os.path.samefile(os.path.join(REPO_ROOT, "configs"), configs.DIRECTORY)
    assert configs.path("digits") == os.path.join(configs.DIRECTORY, "digits.py")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_validates(name):
    config = importlib.import_module(f"mvmr_keras.configs.{name}").get_config()
    training.validate_config(config)  # raises ConfigError with the reason
    if name.endswith("_clip"):
        assert config.teacher.preset and config.backbone == "resnet50"
        assert config.projector == "8192-8192-8192" and config.epochs == 200


def test_cifar20_is_the_reference_config():
    # configs/cifar20_self_supervsised.yaml of the authors' code.
    config = importlib.import_module("mvmr_keras.configs.cifar20").get_config()
    assert (config.backbone, config.batch_size, config.learning_rate) == ("resnet50", 512, 2e-4)
    assert config.small_kernel_stem and config.policy == "cifar20"


def test_the_dinov2_and_two_teacher_configs():
    from mvmr_keras.teachers import distillation

    (dino,) = distillation.teacher_specs(importlib.import_module("mvmr_keras.configs.stl10_dinov2").get_config())
    assert dino.preset == "dinov2_base" and dino.image_size == 518 and dino.image_size % 14 == 0
    assert dino.embedding == "cls+mean" and dino.interpolation == ""  # the converter's own
    config = importlib.import_module("mvmr_keras.configs.stl10_clip_dinov2").get_config()
    specs = distillation.teacher_specs(config)
    assert [(s.name, s.preset) for s in specs] == [
        ("clip", "clip_vit_base_patch16"), ("dinov2", "dinov2_base")]
    assert not config.teacher.preset and config.backbone == "resnet50"
    assert sum(s.weight for s in specs) == 1.0


def test_fashion_mnist_comes_at_two_scales():
    from mvmr_keras.configs import fashion_mnist

    cpu, gpu = fashion_mnist.get_config(), fashion_mnist.get_config("gpu")
    for config in (cpu, gpu):
        training.validate_config(config)
        assert config.dataset == "fashion_mnist" and config.image_size == 28
    # The CPU scale: narrower, a subset per epoch, fewer epochs.
    assert cpu.backbone_width < gpu.backbone_width and cpu.epochs < gpu.epochs
    assert cpu.steps_per_epoch * cpu.batch_size < 60_000 and gpu.steps_per_epoch is None
    with pytest.raises(ValueError, match="unknown scale 'tpu'"):
        fashion_mnist.get_config("tpu")


def test_the_dino_configs_come_in_variants():
    from mvmr_keras.configs import dino_digits, dino_imagenet

    for config in (dino_digits.get_config(), dino_digits.get_config("vit"),
                   dino_imagenet.get_config(), dino_imagenet.get_config("vit_small")):
        training.validate_config(config)
        assert config.method == "dino"
    assert dino_digits.get_config("vit").backbone == "vit_digits"
    resnet, vit = dino_imagenet.get_config(), dino_imagenet.get_config("vit_small")
    assert (resnet.optimizer, resnet.dino.norm_last_layer, vit.optimizer, vit.patch_size) == (
        "sgd", True, "adamw", 16)
    assert (resnet.image_size, resnet.local_crop_size, resnet.num_local_crops) == (224, 96, 8)
    assert resnet.weight_decay == resnet.dino.final_weight_decay == 1e-4
    assert (vit.weight_decay, vit.dino.final_weight_decay, vit.drop_path_rate) == (0.04, 0.4, 0.1)
    with pytest.raises(ValueError, match="unknown variant 'vgg'"):
        dino_digits.get_config("vgg")


def test_dino_and_mokd_on_fashion_mnist_share_views_and_scales():
    from mvmr_keras.configs import dino_fashion_mnist, mokd_fashion_mnist

    views = ("image_size", "global_crop_scale", "num_local_crops", "local_crop_size",
             "local_crop_scale", "batch_size", "epochs", "steps_per_epoch")
    for scale in ("cpu", "gpu"):
        mokd = mokd_fashion_mnist.get_config(scale)
        training.validate_config(mokd)
        for model in ("resnet", "vit"):
            dino = dino_fashion_mnist.get_config(model if scale == "cpu" else f"{model}_gpu")
            training.validate_config(dino)
            assert dino.dataset == mokd.dataset == "fashion_mnist"
            assert [dino[f] for f in views] == [mokd[f] for f in views]
            assert dino.crop_augmentation.flip_rate == mokd.crop_augmentation.flip_rate == 0.5
            # Each model alone is MOKD's model of that name.
            width = mokd.backbone_width if model == "resnet" else mokd.mokd.second.backbone_width
            assert dino.backbone_width == width
    cpu, gpu = mokd_fashion_mnist.get_config(), mokd_fashion_mnist.get_config("gpu")
    assert cpu.steps_per_epoch * cpu.batch_size * cpu.epochs < 60_000
    assert gpu.steps_per_epoch is None
    assert cpu.evaluation.max_probe_images == 10_000 and gpu.evaluation.max_probe_images == 0
    assert cpu.mokd.second.warmup_epochs == cpu.warmup_epochs
    with pytest.raises(ValueError, match="unknown variant 'vit_tpu'"):
        dino_fashion_mnist.get_config("vit_tpu")
    with pytest.raises(ValueError, match="unknown scale 'tpu'"):
        mokd_fashion_mnist.get_config("tpu")
