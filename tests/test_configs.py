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
