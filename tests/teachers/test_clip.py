"""CLIPTeacher against KerasHub's own CLIP, on a tiny preset saved to disk."""

import os
import shutil

import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.teachers import CLIPTeacher, TeacherPresetError


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _keras_hub_embeddings(preset, images):
    """What KerasHub's CLIP gives: its image converter, then its backbone."""
    import keras_hub

    backbone = keras_hub.models.CLIPBackbone.from_preset(preset)
    converter = keras_hub.layers.CLIPImageConverter.from_preset(preset)
    return to_numpy(backbone.get_vision_embeddings(converter(images)))


@pytest.mark.parametrize("size", [32, 20])
def test_embeddings_equal_keras_hubs_clip(tiny_preset, size):
    # The preset's converter resizes bicubically (as real CLIP presets do);
    # at 20 px both resize, at 32 px neither does.
    images = _images(6, size)
    teacher = CLIPTeacher(tiny_preset, image_size=32, interpolation="bicubic")
    got = to_numpy(teacher(images))
    expected = _keras_hub_embeddings(tiny_preset, images)
    assert got.shape == (6, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.std(got, axis=0).min() > 1e-3  # images map to different embeddings


def test_default_bilinear_resize_and_clip_normalisation(tiny_preset):
    import keras_hub

    teacher = CLIPTeacher(tiny_preset, image_size=32)  # bilinear (spec section 6)
    small = _images(4, 24, seed=1)
    resized = to_numpy(keras.ops.image.resize(small, (32, 32), interpolation="bilinear"))
    np.testing.assert_allclose(
        to_numpy(teacher(small)), to_numpy(teacher(resized)), rtol=1e-5, atol=1e-5
    )
    # CLIP's statistics: mid-grey 0.5 maps to (0.5 - mean) / std.
    normalized = to_numpy(teacher.preprocess(np.full((1, 32, 32, 3), 127.5)))[0, 0, 0]
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    np.testing.assert_allclose(normalized, (0.5 - mean) / std, rtol=1e-5)
    backbone = keras_hub.models.CLIPBackbone.from_preset(tiny_preset)
    expected = to_numpy(backbone.get_vision_embeddings(teacher.preprocess(resized)))
    np.testing.assert_allclose(to_numpy(teacher(resized)), expected, rtol=1e-5, atol=1e-5)


def test_keeps_only_the_frozen_vision_tower(tiny_preset):
    import keras_hub

    teacher = CLIPTeacher(tiny_preset, image_size=32)
    backbone = keras_hub.models.CLIPBackbone.from_preset(tiny_preset)
    assert teacher.trainable_weights == []
    assert len(teacher.weights) == len(backbone.vision_encoder.weights) + 1  # + projection
    assert not any("text" in w.path for w in teacher.weights)
    # Inference mode whatever the caller says.
    images = _images(3, 32)
    np.testing.assert_array_equal(
        to_numpy(teacher(images, training=True)), to_numpy(teacher(images))
    )


def test_wrong_resolution_is_a_clear_error(tiny_preset):
    with pytest.raises(ValueError, match="takes 32 px images.*image_size to 32"):
        CLIPTeacher(tiny_preset)  # default 224


def test_preset_name_without_internet_explains_the_local_directory(monkeypatch):
    pytest.importorskip("keras_hub")
    from keras_hub.src.utils import preset_utils

    def offline(preset, path):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(preset_utils, "get_file", offline)
    with pytest.raises(TeacherPresetError) as error:
        CLIPTeacher("clip_vit_base_patch16")
    message = str(error.value)
    assert "\n" not in message
    assert "needs internet" in message and "save_to_preset" in message
    assert "--config.teacher.preset=/path/to/DIR" in message


def test_missing_preset_directory_is_a_clear_error(tmp_path):
    with pytest.raises(TeacherPresetError, match="does not exist"):
        CLIPTeacher(str(tmp_path / "nowhere" / "clip"))


def test_saved_teacher_loads_without_its_preset(tiny_preset, tmp_path):
    # A copy of the preset, deleted before loading: the .keras file alone
    # rebuilds the vision tower and restores its weights.
    preset = shutil.copytree(tiny_preset, tmp_path / "preset")
    teacher = CLIPTeacher(str(preset), image_size=32)
    model = keras.Sequential([keras.Input((32, 32, 3)), teacher])
    images = _images(4, 32)
    expected = to_numpy(model(images))
    model.save(tmp_path / "teacher.keras")
    shutil.rmtree(preset)
    loaded = keras.saving.load_model(tmp_path / "teacher.keras")
    np.testing.assert_allclose(to_numpy(loaded(images)), expected, rtol=1e-6, atol=1e-6)
    assert loaded.layers[0].preset == str(preset)
    assert not os.path.exists(preset)


def test_a_file_saved_before_the_teacher_class_still_loads():
    # tests/teachers/data/clip_teacher_v1.keras: keras.Sequential([Input((32,
    # 32, 3)), CLIPTeacher(save_clip_preset(DIR, 32, seed=0), 32)]) saved by
    # the CLIPTeacher that predates `Teacher`, with its output on these images.
    data = os.path.join(os.path.dirname(__file__), "data")
    loaded = keras.saving.load_model(os.path.join(data, "clip_teacher_v1.keras"))
    teacher = loaded.layers[0]
    assert isinstance(teacher, CLIPTeacher) and teacher.family == "clip"
    assert teacher.interpolation == "bilinear" and teacher.output_dim == 16
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = np.load(os.path.join(data, "clip_teacher_v1_embeddings.npy"))
    np.testing.assert_allclose(to_numpy(loaded(images)), expected, rtol=1e-5, atol=1e-5)
