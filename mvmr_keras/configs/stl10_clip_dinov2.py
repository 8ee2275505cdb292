"""CLIP + DINOv2 -> ResNet50 distillation on STL10: two teachers at once.

The STL10 distillation settings of `configs/stl10_clip.py` with two frozen
teachers, each adding `w_k (1 - dCor(z~, t_k(x)))` to the loss, logged as
`dcor_teacher_clip` and `dcor_teacher_dinov2`:

- `clip`: `clip_vit_base_patch16` at 224 px, bilinear (spec section 6),
  its projected image embedding;
- `dinov2`: `dinov2_base` (ViT-B/14) at 224 px (16 x 16 patches; 518 is its
  native resolution, see configs/stl10_dinov2.py) with its converter's
  bicubic resize, class token and mean patch token concatenated.

Both weigh 0.5, so the teachers together weigh what one teacher does in
`stl10_clip`. Each teacher's embeddings are cached under the workdir with
their own key, so changing one teacher recomputes only its cache. Offline,
pass local preset directories: `--config.teachers[0].preset=/path/to/clip
--config.teachers[1].preset=/path/to/dinov2`.
"""

from mvmr_keras.configs import stl10_clip


def get_config():
    config = stl10_clip.get_config()
    config.teacher.preset = ""  # the teachers list below instead
    config.teachers = [
        dict(name="clip", preset="clip_vit_base_patch16", image_size=224,
             embedding="projected", interpolation="bilinear", weight=0.5),
        dict(name="dinov2", preset="dinov2_base", image_size=224,
             embedding="cls+mean", interpolation="", weight=0.5),
    ]
    return config
