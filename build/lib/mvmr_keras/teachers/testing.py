"""Small CLIP presets built from config, for tests, demos and benchmarks.

Nothing here downloads anything: the weights are random, drawn from a fixed
seed, so a preset made twice with the same arguments is the same teacher.

Example:

>>> path = save_clip_preset("/tmp/tiny_clip", image_size=32)
>>> CLIPTeacher(path, image_size=32)(np.zeros((2, 32, 32, 3))).shape
(2, 16)
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


def main(argv=None):
    """`python -m mvmr_keras.teachers.testing DIR [--image_size=32] [--seed=0]
    [--size=tiny|vit_b16]`: writes a random-weight CLIP preset to DIR."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=("tiny", "vit_b16"), default="tiny")
    args = parser.parse_args(argv)
    sizes = TINY if args.size == "tiny" else VIT_B16
    path = save_clip_preset(args.directory, image_size=args.image_size, seed=args.seed, **sizes)
    print(f"Saved a random {args.size} CLIP preset ({args.image_size} px) to {path}")


if __name__ == "__main__":
    main()
