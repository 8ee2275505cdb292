"""Teacher.from_preset against KerasHub's own backbone + image converter,
for a tiny random preset of every family saved to disk."""

import shutil

import keras
import numpy as np
import pytest

from conftest import to_numpy
from mvmr_keras.teachers import Teacher, TeacherPresetError
from mvmr_keras.teachers.teacher import EMBEDDINGS, FAMILIES
from mvmr_keras.teachers.testing import save_preset

CASES = [(family, embedding) for family in sorted(EMBEDDINGS) for embedding in EMBEDDINGS[family]]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {family: save_preset(family, root / family, image_size=32) for family in EMBEDDINGS}


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _keras_hub_embedding(preset, family, embedding, images, image_size=32):
    """KerasHub's own: the preset's converter, its backbone, then the
    documented read-out (token 0; the mean of the tokens after the class
    and register tokens; both concatenated)."""
    import keras_hub

    converter = keras_hub.layers.ImageConverter.from_preset(preset)
    kwargs = {}
    if image_size != 32:  # a DINOv2/v3 backbone rebuilt at another resolution
        kwargs["image_shape"] = (image_size, image_size, 3)
        converter.image_size = (image_size, image_size)
    backbone = keras_hub.models.Backbone.from_preset(preset, **kwargs)
    assert type(backbone).__name__ in FAMILIES and FAMILIES[type(backbone).__name__] == family
    pixels = converter(images)
    if family in ("clip", "siglip"):
        return to_numpy(backbone.get_vision_embeddings(pixels))
    inputs = {"dinov3": {"pixel_values": pixels}, "vit": pixels}.get(family, {"images": pixels})
    tokens = to_numpy(backbone(inputs))
    prefix = 1 + getattr(backbone, "num_register_tokens", 0)
    cls, mean = tokens[:, 0], tokens[:, prefix:].mean(axis=1)
    return {"cls": cls, "mean_patch": mean, "cls+mean": np.concatenate([cls, mean], -1)}[
        embedding]


@pytest.mark.parametrize("family,embedding", CASES)
def test_embedding_equals_keras_hubs(presets, family, embedding):
    teacher = Teacher.from_preset(presets[family], 32, embedding=embedding)
    assert teacher.family == family and teacher.trainable_weights == []
    for size in (32, 24):  # the image size, then a resize by the converter's rule
        images = _images(6, size, seed=size)
        got = to_numpy(teacher(images))
        expected = _keras_hub_embedding(presets[family], family, embedding, images)
        assert got.shape == (6, teacher.output_dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=str(size))
        assert np.std(got, axis=0).min() > 1e-3  # images map to different embeddings


@pytest.mark.parametrize("family", ["dinov2", "dinov3"])
def test_dino_runs_at_another_resolution(presets, family):
    teacher = Teacher.from_preset(presets[family], 40, embedding="cls+mean")
    assert teacher.image_size == 40
    images = _images(4, 32)
    expected = _keras_hub_embedding(presets[family], family, "cls+mean", images, image_size=40)
    np.testing.assert_allclose(to_numpy(teacher(images)), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of .* patch size 8"):
        Teacher.from_preset(presets[family], 36)


def test_the_family_default_and_errors(presets):
    assert Teacher.from_preset(presets["dinov2"]).embedding == "cls"
    assert Teacher.from_preset(presets["siglip"]).embedding == "projected"
    with pytest.raises(ValueError, match="unknown embedding 'cls' for the clip preset"):
        Teacher.from_preset(presets["clip"], 32, embedding="cls")
    with pytest.raises(ValueError, match="takes 32 px images.*image_size to 32"):
        Teacher.from_preset(presets["vit"], 48)
    with pytest.raises(TeacherPresetError, match="does not exist"):
        Teacher.from_preset("/nowhere/dinov2_base")


@pytest.mark.parametrize("name", [
    "clip_vit_base_patch16", "siglip_base_patch16_224", "dinov2_base",
    "dinov3_vit_small_lvd1689m", "vit_base_patch16_224_imagenet",
])
def test_preset_name_without_internet_explains_the_local_directory(monkeypatch, name):
    from keras_hub.src.utils import preset_utils

    def offline(preset, path):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(preset_utils, "get_file", offline)
    with pytest.raises(TeacherPresetError) as error:
        Teacher.from_preset(name, 224)
    message = str(error.value)
    assert "\n" not in message and name in message
    assert "needs internet" in message and "save_to_preset(DIR)" in message
    assert "--config.teacher.preset=/path/to/DIR" in message


@pytest.mark.parametrize("family", sorted(EMBEDDINGS))
def test_saved_teacher_loads_without_its_preset(presets, family, tmp_path):
    preset = shutil.copytree(presets[family], tmp_path / "preset")
    embedding = EMBEDDINGS[family][-1]
    teacher = Teacher.from_preset(str(preset), 32, embedding=embedding)
    model = keras.Sequential([keras.Input((32, 32, 3)), teacher])
    images = _images(4, 24)
    expected = to_numpy(model(images))
    model.save(tmp_path / "teacher.keras")
    shutil.rmtree(preset)
    loaded = keras.saving.load_model(tmp_path / "teacher.keras").layers[0]
    assert type(loaded) is Teacher and loaded.embedding == embedding
    assert (loaded.interpolation, loaded.antialias) == (teacher.interpolation, teacher.antialias)
    np.testing.assert_allclose(to_numpy(loaded(images)), expected, rtol=1e-6, atol=1e-6)
