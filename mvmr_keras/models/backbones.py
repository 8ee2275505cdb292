"""The backbone registry: every method builds its backbone by name here.

ResNets (`resnet18/34/50/101`, `ResNetBackbone`) and ViTs
(`VisionTransformerBackbone`): `vit_tiny` (192 wide, 12 blocks, 3 heads),
`vit_small` (384, 12, 6) and `vit_base` (768, 12, 12) at patch 16, as
DeiT and DINO, and `vit_digits` (96 wide, 4 blocks, 3 heads, patch 4) for
32 px images on a CPU. MLP ratio 4, qkv bias, LayerNorm eps 1e-6.

`width` and `depths` override an architecture's sizes (tests and small
configs): for a ResNet its first-stage width and blocks per stage; for a
ViT its token width (heads: the architecture's head width, 64, or 32 for
`vit_digits`, kept where it fits, at least one head) and `(num_layers,)`.

Example:

>>> build_backbone("vit_small", 32, width=32, depths=(2,), patch_size=8).output_dim
32
>>> build_backbone("resnet18", 32, width=8).output_dim
64
"""

from mvmr_keras.models.resnet import RESNET_ARCHITECTURES, ResNetBackbone
from mvmr_keras.models.vit import VisionTransformerBackbone

# name -> (hidden_dim, num_layers, num_heads, patch_size)
VIT_ARCHITECTURES = {
    "vit_tiny": (192, 12, 3, 16),
    "vit_small": (384, 12, 6, 16),
    "vit_base": (768, 12, 12, 16),
    "vit_digits": (96, 4, 3, 4),
}
BACKBONES = tuple(sorted(RESNET_ARCHITECTURES)) + tuple(VIT_ARCHITECTURES)


def is_vit(name):
    return name in VIT_ARCHITECTURES


def build_backbone(
    name,
    image_size,
    width=None,
    depths=(),
    small_kernel_stem=False,
    zero_init_residual=True,
    drop_path_rate=0.0,
    patch_size=None,
    image_shape=None,
    dtype=None,
):
    """The backbone called `name` (one of `BACKBONES`), not normalising.

    Args:
        name: a name from `BACKBONES`.
        image_size: the training image size; a ViT's position embedding
            grid is built for it (`image_size / patch_size` a side).
        width, depths: override the architecture's width and depth (see
            the module docstring); `None`/`0` and `()` keep its own.
        small_kernel_stem, zero_init_residual: ResNet options (ignored by
            ViTs).
        drop_path_rate: a ViT's stochastic depth (ResNets have none: > 0
            is an error there).
        patch_size: a ViT's patch side (default: the architecture's).
        image_shape: input shape; default `(image_size, image_size, 3)`.
            Pass `(None, None, 3)` for inputs of several sizes
            (multi-crop): a fixed shape rejects other sizes.
        dtype: dtype policy.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; available: {list(BACKBONES)}.")
    image_size = int(image_size)
    if image_shape is None:
        image_shape = (image_size, image_size, 3)
    depths = tuple(int(d) for d in (depths or ()))
    if name in RESNET_ARCHITECTURES:
        if drop_path_rate:
            raise ValueError(f"drop_path_rate is for ViT backbones; {name} has none (set it to 0).")
        if patch_size:
            raise ValueError(f"patch_size is for ViT backbones, not {name}.")
        return ResNetBackbone.from_name(
            name,
            width=width or 64,
            stackwise_num_blocks=depths or None,
            small_kernel_stem=small_kernel_stem,
            zero_init_residual=zero_init_residual,
            image_shape=image_shape,
            dtype=dtype,
        )
    hidden_dim, num_layers, num_heads, default_patch = VIT_ARCHITECTURES[name]
    head_dim = hidden_dim // num_heads
    if width:
        hidden_dim = int(width)
        num_heads = max(1, hidden_dim // head_dim)
        if hidden_dim % num_heads:
            num_heads = 1
    if depths:
        if len(depths) != 1:
            raise ValueError(f"a ViT's depths is (num_layers,); got {depths}.")
        num_layers = depths[0]
    patch_size = int(patch_size or default_patch)
    if image_size % patch_size:
        raise ValueError(
            f"image_size {image_size} is not a multiple of {name}'s patch_size {patch_size}."
        )
    return VisionTransformerBackbone(
        image_size=image_size,
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        drop_path_rate=drop_path_rate,
        image_shape=image_shape,
        dtype=dtype,
        name=name,
    )
