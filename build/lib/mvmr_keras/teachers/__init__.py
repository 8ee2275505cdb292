"""Distillation teachers (spec section 6) and their embedding cache.

`CLIPTeacher` wraps a KerasHub CLIP image encoder; `mvmr_keras.teachers.cache`
computes its embeddings of a dataset once (`python -m
mvmr_keras.teachers.cache --config=... --workdir=...`). KerasHub, and with it
TensorFlow, is imported only when a teacher is built.
"""

from mvmr_keras.teachers.clip import CLIPTeacher, TeacherPresetError
