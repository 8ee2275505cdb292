"""Small KerasHub presets of every teacher family, for tests, demos and benchmarks.

Nothing here downloads anything: the weights are random, drawn from a fixed
seed, so a preset made twice with the same arguments is the same teacher.
Each family's image converter carries that family's real normalisation
(CLIP's statistics; ImageNet's for DINOv2/v3; [-1, 1] for SigLIP and ViT).

Example:

>>> path = save_clip_preset("/tmp/tiny_clip", image_size=32)
>>> CLIPTeacher(path, image_size=32)(np.zeros((2, 32, 32, 3))).shape
(2, 16)
>>> path = save_preset("dinov2", "/tmp/tiny_dinov2", image_size=32)
>>> Teacher.from_preset(path, 32, embedding="cls+mean")(np.zeros((2, 32, 32, 3))).shape
(2, 64)
"""

import numpy as np

# ViT-B/16's vision tower and projection (clip_vit_base_patch16).
VIT_B16 = dict(
    patch_size=16, hidden_dim=768, num_layers=12, num_heads=12,
    intermediate_dim=3072, projection_dim=512,
)
TINY = dict(
    patch_size=8, hidden_dim=32, num_layers=2, num_heads=2,
    intermediate_dim=64, projection_dim=16,
)


def build_clip(
    image_size=32,
    patch_size=8,
    hidden_dim=32,
    num_layers=2,
    num_heads=2,
    intermediate_dim=64,
    projection_dim=16,
    seed=0,
):
    """A randomly initialised KerasHub `CLIPBackbone` and its image converter.

    The text tower is the smallest KerasHub allows (it is never used here).
    Position ids are set to `0..N` as in real CLIP checkpoints (KerasHub
    initialises them to zeros and relies on the checkpoint to fill them).
    """
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        image_shape=(image_size, image_size, 3),
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=64, embedding_dim=8, hidden_dim=8, num_layers=1,
        num_heads=1, intermediate_dim=8, max_sequence_length=8,
    )
    backbone = keras_hub.models.CLIPBackbone(vision, text, projection_dim=projection_dim)
    position_ids = vision.embedding.position_ids
    position_ids.assign(
        np.arange(position_ids.shape[1]).reshape(position_ids.shape).astype(position_ids.dtype)
    )
    from mvmr_keras.teachers.clip import default_normalization

    scale, offset = default_normalization()
    converter = keras_hub.layers.CLIPImageConverter(
        image_size=(image_size, image_size), scale=scale, offset=offset,
        interpolation="bicubic",
    )
    return backbone, converter


def save_clip_preset(directory, image_size=32, seed=0, **sizes):
    """Builds `build_clip(...)` and saves it as a KerasHub preset directory."""
    backbone, converter = build_clip(image_size=image_size, seed=seed, **{**TINY, **sizes})
    backbone.save_to_preset(str(directory))
    converter.save_to_preset(str(directory))
    return str(directory)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_VIT = dict(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64)


def _normalization(mean, std):
    return [1.0 / (255.0 * s) for s in std], [-m / s for m, s in zip(mean, std)]


def build_siglip(image_size=32, seed=0, **sizes):
    """A random KerasHub `SigLIPBackbone` (tiny text tower) and its converter."""
    import keras
    import keras_hub

    sizes = {**TINY_VIT, **sizes}
    keras.utils.set_random_seed(seed)
    vision = keras_hub.models.SigLIPVisionEncoder(
        image_shape=(image_size, image_size, 3), **sizes
    )
    text = keras_hub.models.SigLIPTextEncoder(
        vocabulary_size=64, embedding_dim=8, hidden_dim=8, num_layers=1, num_heads=1,
        intermediate_dim=8, max_sequence_length=8,
    )
    backbone = keras_hub.models.SigLIPBackbone(vision, text)
    converter = keras_hub.layers.SigLIPImageConverter(
        image_size=(image_size, image_size), scale=1.0 / 127.5, offset=-1.0,
        interpolation="bicubic",
    )
    return backbone, converter


def build_dinov2(image_size=32, seed=0, num_register_tokens=2, **sizes):
    """A random KerasHub `DINOV2Backbone` (with register tokens, position
    embeddings trained at `image_size`) and its converter."""
    import keras
    import keras_hub

    sizes = {**TINY_VIT, **sizes}
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DINOV2Backbone(
        image_shape=(image_size, image_size, 3),
        position_embedding_shape=(image_size, image_size, 3),
        num_register_tokens=num_register_tokens, layer_scale_init_value=0.5, **sizes,
    )
    _randomize_tokens(backbone.embeddings, seed)
    scale, offset = _normalization(IMAGENET_MEAN, IMAGENET_STD)
    converter = keras_hub.layers.DINOV2ImageConverter(
        image_size=(image_size, image_size), scale=scale, offset=offset,
        interpolation="bicubic",
    )
    return backbone, converter


def build_dinov3(image_size=32, seed=0, num_register_tokens=2, **sizes):
    """A random KerasHub `DINOV3Backbone` and its converter (bilinear with
    antialiasing, so that the teachers' antialiasing path is exercised)."""
    import keras
    import keras_hub

    sizes = {**TINY_VIT, **sizes}
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DINOV3Backbone(
        image_shape=(image_size, image_size, 3), num_register_tokens=num_register_tokens,
        layer_scale_init_value=0.5, **sizes,
    )
    _randomize_tokens(backbone.embeddings, seed)
    scale, offset = _normalization(IMAGENET_MEAN, IMAGENET_STD)
    converter = keras_hub.layers.DINOV3ImageConverter(
        image_size=(image_size, image_size), scale=scale, offset=offset,
        interpolation="bilinear", antialias=True,
    )
    return backbone, converter


def build_vit(image_size=32, seed=0, **sizes):
    """A random KerasHub `ViTBackbone` and its converter."""
    import keras
    import keras_hub

    sizes = {**TINY_VIT, **sizes}
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=sizes["patch_size"],
        num_layers=sizes["num_layers"], num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"], mlp_dim=sizes["intermediate_dim"],
    )
    converter = keras_hub.layers.ViTImageConverter(
        image_size=(image_size, image_size), scale=1.0 / 127.5, offset=-1.0,
        interpolation="bilinear",
    )
    return backbone, converter


def _randomize_tokens(embeddings, seed):
    """Class, register and mask tokens drawn at random: KerasHub starts some
    at zero and relies on the checkpoint to fill them."""
    rng = np.random.default_rng(seed)
    for name in ("cls_token", "register_tokens", "mask_token"):
        variable = getattr(embeddings, name, None)
        if variable is not None:
            variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))


BUILDERS = {
    "clip": lambda image_size, seed, **sizes: build_clip(
        image_size=image_size, seed=seed, **{**TINY, **sizes}),
    "siglip": build_siglip,
    "dinov2": build_dinov2,
    "dinov3": build_dinov3,
    "vit": build_vit,
}


def save_preset(family, directory, image_size=32, seed=0, **sizes):
    """A random tiny preset of one family (`BUILDERS`), saved as a KerasHub
    preset directory (backbone and image converter); returns its path."""
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; available: {sorted(BUILDERS)}")
    backbone, converter = BUILDERS[family](image_size=image_size, seed=seed, **sizes)
    backbone.save_to_preset(str(directory))
    converter.save_to_preset(str(directory))
    return str(directory)


def main(argv=None):
    """`python -m mvmr_keras.teachers.testing DIR [--family=clip] [--image_size=32]
    [--seed=0] [--size=tiny|vit_b16]`: writes a random-weight preset to DIR
    (`--size=vit_b16` is CLIP's ViT-B/16 vision tower)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory")
    parser.add_argument("--family", choices=sorted(BUILDERS), default="clip")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=("tiny", "vit_b16"), default="tiny")
    args = parser.parse_args(argv)
    if args.family == "clip":
        sizes = TINY if args.size == "tiny" else VIT_B16
        path = save_clip_preset(args.directory, image_size=args.image_size, seed=args.seed,
                                **sizes)
    elif args.size != "tiny":
        parser.error("--size=vit_b16 is for --family=clip")
    else:
        path = save_preset(args.family, args.directory, args.image_size, args.seed)
    print(f"Saved a random {args.size} {args.family} preset ({args.image_size} px) to {path}")


if __name__ == "__main__":
    main()
