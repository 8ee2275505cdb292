import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.models import ResNetBackbone


@pytest.mark.parametrize(
    "name, width, expected_dim", [("resnet18", 8, 64), ("resnet50", 4, 128)]
)
def test_feature_dimension(name, width, expected_dim):
    backbone = ResNetBackbone.from_name(name, width=width, stackwise_num_blocks=(1, 1, 1, 1))
    features = backbone(np.zeros((2, 32, 32, 3), "float32"))
    assert tuple(features.shape) == (2, expected_dim)
    assert backbone.output_dim == expected_dim


def test_reference_depths_and_widths():
    # Full-size ResNet18 and ResNet50 have the published parameter counts
    # (11.2M and 23.5M without the classifier).
    r18 = ResNetBackbone.from_name("resnet18", image_shape=(32, 32, 3))
    r50 = ResNetBackbone.from_name("resnet50", image_shape=(32, 32, 3))
    assert r18.output_dim == 512 and r50.output_dim == 2048
    assert abs(r18.count_params() - 11_186_112) / 11_186_112 < 0.01
    assert abs(r50.count_params() - 23_561_152) / 23_561_152 < 0.01


def _stem_output(backbone):
    return backbone.get_layer("stem_pool").output.shape[1:3]


def test_small_kernel_stem_keeps_resolution():
    small = ResNetBackbone.from_name("resnet18", width=4, image_shape=(32, 32, 3))
    standard = ResNetBackbone.from_name(
        "resnet18", width=4, small_kernel_stem=False, image_shape=(32, 32, 3)
    )
    assert small.get_layer("stem_conv").kernel.shape[:2] == (3, 3)
    assert standard.get_layer("stem_conv").kernel.shape[:2] == (7, 7)
    assert tuple(_stem_output(small)) == (16, 16)  # stride-1 conv, max-pool kept
    assert tuple(_stem_output(standard)) == (8, 8)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual(name):
    backbone = ResNetBackbone.from_name(name, width=4, stackwise_num_blocks=(1, 2))
    last_bn = [l for l in backbone.layers if l.name.endswith("_bn2" if name == "resnet18" else "_bn3")]
    assert len(last_bn) == 3
    for layer in last_bn:
        assert np.all(to_numpy(layer.gamma) == 0.0)
    plain = ResNetBackbone.from_name(name, width=4, stackwise_num_blocks=(1, 2), zero_init_residual=False)
    assert all(np.all(to_numpy(l.gamma) == 1.0) for l in plain.layers if l.name == last_bn[0].name)
    # Other BatchNorms start at gamma = 1.
    assert np.all(to_numpy(backbone.get_layer("stem_bn").gamma) == 1.0)


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet19'"):
        ResNetBackbone.from_name("resnet19")


def test_config_round_trip_and_save(tmp_path):
    backbone = ResNetBackbone.from_name(
        "resnet18", width=4, stackwise_num_blocks=(1, 1), small_kernel_stem=False
    )
    clone = ResNetBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(backbone(x)), atol=1e-6)
