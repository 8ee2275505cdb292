"""MV-MR with a teacher: the step on each backend, cached vs live, saving."""

import os

import keras
import numpy as np
import pytest

from conftest import random_views, tiny_model, to_numpy
from mvmr_keras import MVMR, data
from mvmr_keras.teachers import CLIPTeacher
from mvmr_keras.teachers.cache import EmbeddingCache, cache_key


def _student_weights(model):
    return [to_numpy(v).copy() for v in model.encoder.weights + model.projector.weights]


def test_distillation_step_trains_the_student_not_the_teacher(tiny_preset):
    teacher = CLIPTeacher(tiny_preset, image_size=32)
    model = tiny_model(representations=(), teacher=teacher, teacher_weight=0.5)
    assert model.term_names == ["mse", "std", "dcor_zz", "dcor_teacher"]
    original, augmented = random_views(16)
    terms = model.compute_terms(original, augmented, training=False)
    expected = (terms["mse"] + terms["std"] + (1 - terms["dcor_zz"])
                + 0.5 * (1 - terms["dcor_teacher"]))
    np.testing.assert_allclose(to_numpy(terms["loss"]), to_numpy(expected), rtol=1e-6)
    assert 0 < float(terms["dcor_teacher"]) < 1

    teacher_before = [to_numpy(w).copy() for w in teacher.weights]
    student_before = _student_weights(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    logs = [model.train_on_batch(original, augmented, return_dict=True) for _ in range(3)]
    assert set(logs[-1]) == {"loss", "mse", "std", "dcor_zz", "dcor_teacher"}
    assert all(np.isfinite(v) for v in logs[-1].values())
    for before, w in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, to_numpy(w))
    moved = [not np.array_equal(b, to_numpy(w)) for b, w in
             zip(student_before, model.encoder.weights + model.projector.weights)]
    assert sum(moved) > len(moved) // 2


def test_teacher_beside_the_representations(tiny_preset):
    teacher = CLIPTeacher(tiny_preset, image_size=32)
    model = tiny_model(representations=("pixels",), teacher=teacher)
    model.compile(optimizer="adam")
    history = model.fit(*random_views(16), batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"loss", "mse", "std", "dcor_zz", "dcor_pixels", "dcor_teacher"}


def test_cached_and_live_training_give_the_same_loss(tiny_preset, tmp_path):
    # The digits pipeline with cached embeddings zipped in, shuffled: the
    # embedding that arrives with each image is the live teacher's.
    images, labels = data.load_digits("train")
    images, labels = images[:64], labels[:64]
    teacher = CLIPTeacher(tiny_preset, image_size=32)
    key = cache_key(tiny_preset, 32, "bilinear", "digits", "train", 32)
    cache = EmbeddingCache(tmp_path / "cache", key, chunk_size=32)
    cache.precompute(teacher, images, batch_size=16, verbose=0)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype("int64"), cache.load()))
    original, augmented, cached = next(iter(
        data.views(ds, "custom", image_size=32, batch_size=16, seed=3)
    ))
    original, augmented, cached = (np.asarray(t) for t in (original, augmented, cached))
    np.testing.assert_allclose(cached, to_numpy(teacher(original)), rtol=1e-5, atol=1e-5)

    keras.utils.set_random_seed(1)
    live = tiny_model(representations=(), teacher=teacher)
    keras.utils.set_random_seed(1)
    from_cache = tiny_model(representations=(), teacher_weight=1.0)
    from_cache.set_weights(live.get_weights()[: len(from_cache.get_weights())])
    for model in (live, from_cache):
        model.compile(optimizer=keras.optimizers.SGD(0.01))
    live_logs = live.train_on_batch(original, augmented, return_dict=True)
    cached_logs = from_cache.train_on_batch(original, augmented, cached, return_dict=True)
    for name in ("loss", "dcor_teacher", "dcor_zz"):
        np.testing.assert_allclose(cached_logs[name], live_logs[name], rtol=1e-5, err_msg=name)
    for a, b in zip(_student_weights(live), _student_weights(from_cache)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_missing_or_unexpected_teacher_embeddings_are_clear_errors(tiny_preset):
    original, augmented = random_views(8)
    with pytest.raises(ValueError, match="no teacher layer"):
        tiny_model(representations=(), teacher_weight=1.0).compute_terms(original, augmented)
    plain = tiny_model()
    plain.compile(optimizer="adam")
    with pytest.raises(ValueError, match="no teacher term"):
        plain.train_on_batch(original, augmented, np.zeros((8, 16), "float32"))


def test_save_and_load_with_a_teacher(tiny_preset, tmp_path):
    teacher = CLIPTeacher(tiny_preset, image_size=32)
    model = tiny_model(representations=(), teacher=teacher)
    original, augmented = random_views(8)
    terms = model.compute_terms(original, augmented, training=False)
    model.save(tmp_path / "model.keras")
    model.encoder.save(tmp_path / "encoder.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, MVMR) and isinstance(loaded.teacher, CLIPTeacher)
    loaded_terms = loaded.compute_terms(original, augmented, training=False)
    for name in ("loss", "dcor_teacher"):
        np.testing.assert_allclose(to_numpy(loaded_terms[name]), to_numpy(terms[name]),
                                   rtol=1e-5)
    # The encoder file is the plain image encoder: no teacher weight in it.
    encoder = keras.saving.load_model(tmp_path / "encoder.keras")
    assert not any("clip" in w.path or "vision" in w.path for w in encoder.weights)
    assert len(encoder.weights) == len(model.encoder.weights)
    # A cached-embedding model saves no teacher at all.
    cached = tiny_model(representations=(), teacher_weight=2.0)
    cached.save(tmp_path / "cached.keras")
    reloaded = keras.saving.load_model(tmp_path / "cached.keras")
    assert reloaded.teacher is None and reloaded.teacher_weight == 2.0
    assert os.path.getsize(tmp_path / "cached.keras") < os.path.getsize(tmp_path / "model.keras")


def _two_teachers(clip_preset, dinov2_preset):
    from mvmr_keras.teachers import Teacher

    return {
        "clip": Teacher.from_preset(clip_preset, 32, name="teacher_clip"),
        "dino": Teacher.from_preset(dinov2_preset, 32, embedding="cls+mean",
                                    name="teacher_dino"),
    }


def test_two_teachers_each_add_their_term(tiny_preset, tiny_dinov2_preset):
    teachers = _two_teachers(tiny_preset, tiny_dinov2_preset)
    model = tiny_model(representations=(), teachers=teachers,
                       teacher_weights={"clip": 0.5, "dino": 2.0})
    assert model.term_names == ["mse", "std", "dcor_zz", "dcor_teacher_clip",
                                "dcor_teacher_dino"]
    original, augmented = random_views(16)
    terms = model.compute_terms(original, augmented, training=False)
    expected = (terms["mse"] + terms["std"] + (1 - terms["dcor_zz"])
                + 0.5 * (1 - terms["dcor_teacher_clip"]) + 2.0 * (1 - terms["dcor_teacher_dino"]))
    np.testing.assert_allclose(to_numpy(terms["loss"]), to_numpy(expected), rtol=1e-6)
    # Each term is dCor with its own teacher's embedding.
    from mvmr_keras import losses

    z_aug = model(augmented)
    for name, teacher in teachers.items():
        np.testing.assert_allclose(
            to_numpy(terms[f"dcor_teacher_{name}"]),
            to_numpy(losses.distance_correlation(z_aug, teacher(original))), rtol=1e-5)
    assert abs(float(terms["dcor_teacher_clip"]) - float(terms["dcor_teacher_dino"])) > 1e-4
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    logs = model.train_on_batch(original, augmented, return_dict=True)
    assert set(logs) == {"loss", "mse", "std", "dcor_zz", "dcor_teacher_clip", "dcor_teacher_dino"}
    assert all(np.isfinite(v) for v in logs.values())


def test_cached_embeddings_of_several_teachers_as_the_third_element(
        tiny_preset, tiny_dinov2_preset):
    # A dict (or a tuple, in the teachers' order) in Keras's sample_weight
    # slot, through train_on_batch and through fit on a tf.data stream.
    teachers = _two_teachers(tiny_preset, tiny_dinov2_preset)
    original, augmented = random_views(16)
    embeddings = {name: to_numpy(t(original)) for name, t in teachers.items()}
    weights = {"clip": 1.0, "dino": 0.5}

    def fresh(layers):
        keras.utils.set_random_seed(1)
        model = tiny_model(representations=(), teachers=layers, teacher_weights=weights)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        return model

    live_logs = fresh(teachers).train_on_batch(original, augmented, return_dict=True)
    cached = {"clip": None, "dino": None}
    dict_logs = fresh(cached).train_on_batch(original, augmented, embeddings, return_dict=True)
    tuple_logs = fresh(cached).train_on_batch(
        original, augmented, (embeddings["clip"], embeddings["dino"]), return_dict=True)
    mixed_logs = fresh({"clip": teachers["clip"], "dino": None}).train_on_batch(
        original, augmented, {"dino": embeddings["dino"]}, return_dict=True)
    for logs in (dict_logs, tuple_logs, mixed_logs):
        for name in ("loss", "dcor_teacher_clip", "dcor_teacher_dino"):
            np.testing.assert_allclose(logs[name], live_logs[name], rtol=1e-5, err_msg=name)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((original, augmented, embeddings)).batch(8)
    history = fresh(cached).fit(ds, epochs=1, verbose=0, shuffle=False).history
    assert {"dcor_teacher_clip", "dcor_teacher_dino"} <= set(history)
    assert all(np.isfinite(v[-1]) for v in history.values())
    with pytest.raises(ValueError, match=r"no layer and the batch brings no embedding"):
        fresh(cached).compute_terms(original, augmented, teacher_embeddings={
            "clip": embeddings["clip"]})
    with pytest.raises(ValueError, match="not teachers without a layer"):
        fresh({"clip": teachers["clip"], "dino": None}).compute_terms(
            original, augmented, teacher_embeddings=embeddings)


def test_bad_teacher_arguments_are_clear_errors(tiny_preset):
    with pytest.raises(ValueError, match="either teacher/teacher_weight"):
        tiny_model(representations=(), teacher_weight=1.0, teachers={"a": None})
    with pytest.raises(ValueError, match="lower-case identifier"):
        tiny_model(representations=(), teachers={"Bad name": None})
    with pytest.raises(ValueError, match="unknown teachers"):
        tiny_model(representations=(), teachers={"a": None}, teacher_weights={"b": 1.0})


def test_save_and_load_with_several_teachers(tiny_preset, tiny_dinov2_preset, tmp_path):
    teachers = _two_teachers(tiny_preset, tiny_dinov2_preset)
    model = tiny_model(representations=(), teachers={"clip": teachers["clip"], "dino": None},
                       teacher_weights={"clip": 1.0, "dino": 0.25})
    original, augmented = random_views(8)
    given = {"dino": to_numpy(teachers["dino"](original))}
    terms = model.compute_terms(original, augmented, training=False, teacher_embeddings=given)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.teacher_names == ["clip", "dino"] and set(loaded.teachers) == {"clip"}
    assert loaded.teacher_weights == {"clip": 1.0, "dino": 0.25}
    loaded_terms = loaded.compute_terms(original, augmented, training=False,
                                        teacher_embeddings=given)
    for name in ("loss", "dcor_teacher_clip", "dcor_teacher_dino"):
        np.testing.assert_allclose(to_numpy(loaded_terms[name]), to_numpy(terms[name]),
                                   rtol=1e-5, err_msg=name)
