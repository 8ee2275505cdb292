"""Shared by the evaluation tests: a saved random encoder."""

import keras
import pytest


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    """A random ResNet encoder (width 16, one block per stage), as saved by
    a run: random features of digits are separable well above chance."""
    from mvmr_keras import ImageEncoder, ResNetBackbone

    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("run") / "encoder.keras")
    backbone = ResNetBackbone.from_name("resnet18", width=16, stackwise_num_blocks=(1, 1, 1, 1),
                                        image_shape=(32, 32, 3))
    ImageEncoder(backbone).save(path)
    return path
