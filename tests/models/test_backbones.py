import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.models import (
    BACKBONES,
    RESNET_ARCHITECTURES,
    VIT_ARCHITECTURES,
    ImageEncoder,
    ResNetBackbone,
    VisionTransformerBackbone,
    build_backbone,
)


def test_names():
    assert set(BACKBONES) == set(RESNET_ARCHITECTURES) | {"vit_tiny", "vit_small", "vit_base", "vit_digits"}
    assert VIT_ARCHITECTURES["vit_tiny"] == (192, 12, 3, 16)
    assert VIT_ARCHITECTURES["vit_small"] == (384, 12, 6, 16)
    assert VIT_ARCHITECTURES["vit_base"] == (768, 12, 12, 16)


@pytest.mark.parametrize("name", BACKBONES)
def test_every_name_builds_tiny_and_runs(name):
    vit = name.startswith("vit")
    backbone = build_backbone(
        name, 32, width=8 if not vit else 16, depths=(1, 1) if not vit else (1,),
        patch_size=8 if vit else None,
    )
    assert isinstance(backbone, VisionTransformerBackbone if vit else ResNetBackbone)
    assert backbone.name == name
    features = to_numpy(backbone(np.zeros((2, 32, 32, 3), "float32")))
    assert features.shape == (2, backbone.output_dim) and np.all(np.isfinite(features))
    assert ImageEncoder(backbone).output_dim == backbone.output_dim


def test_resnet_gets_the_arguments_build_model_passes():
    backbone = build_backbone("resnet50", 32, width=4, depths=(1, 2), small_kernel_stem=True,
                              zero_init_residual=False)
    assert backbone.block_type == "bottleneck" and backbone.stackwise_num_blocks == (1, 2)
    assert backbone.width == 4 and backbone.small_kernel_stem and not backbone.zero_init_residual
    assert backbone.image_shape == (32, 32, 3)
    assert build_backbone("resnet18", 32).width == 64  # the architecture's own width


def test_vit_overrides_and_defaults():
    vit = build_backbone("vit_small", 32, width=64, depths=(2,), drop_path_rate=0.1, patch_size=8,
                         image_shape=(None, None, 3))
    assert (vit.hidden_dim, vit.num_layers, vit.num_heads, vit.patch_size) == (64, 2, 1, 8)
    assert vit.mlp_dim == 256 and vit.drop_path_rate == 0.1 and vit.layer_norm_epsilon == 1e-6
    assert vit.embedding.grid_size == 4
    # Takes two sizes when built with a free image shape.
    assert tuple(vit(np.zeros((1, 16, 16, 3), "float32")).shape) == (1, 64)
    digits = build_backbone("vit_digits", 32, depths=(1,))
    assert (digits.hidden_dim, digits.num_heads, digits.patch_size) == (96, 3, 4)
    assert build_backbone("vit_base", 32, width=128, depths=(1,), patch_size=16).num_heads == 2


def test_bad_requests_are_rejected():
    with pytest.raises(ValueError, match=r"Unknown backbone 'vit_huge'; available: \[.*'vit_small'"):
        build_backbone("vit_huge", 32)
    with pytest.raises(ValueError, match="drop_path_rate is for ViT"):
        build_backbone("resnet18", 32, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="not a multiple of"):
        build_backbone("vit_tiny", 40, depths=(1,), width=16)
    with pytest.raises(ValueError, match="num_layers"):
        build_backbone("vit_tiny", 32, depths=(1, 1), patch_size=8)
