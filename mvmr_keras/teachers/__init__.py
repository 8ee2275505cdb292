"""Distillation teachers (spec section 6) and their embedding cache.

`Teacher.from_preset(preset, image_size, embedding=...)` wraps a frozen
KerasHub vision backbone (CLIP, SigLIP, DINOv2, DINOv3, ViT); `CLIPTeacher`
is its CLIP case. `mvmr_keras.teachers.cache` computes a teacher's
embeddings of a dataset once (`python -m mvmr_keras.teachers.cache
--config=... --workdir=...`). KerasHub, and with it TensorFlow, is imported
only when a teacher is built.
"""

from mvmr_keras.teachers.clip import CLIPTeacher
from mvmr_keras.teachers.teacher import Teacher, TeacherPresetError
