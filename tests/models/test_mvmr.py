"""The MVMR model: training through Keras's own train_step on each backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT, random_views, tiny_model, to_numpy
from mvmr_keras import MVMR


def _weights(variables):
    return [to_numpy(v).copy() for v in variables]


def test_gradients_reach_every_trainable_encoder_weight():
    # Zero-init residual makes the first step's gradient zero for the convs
    # feeding a zero gamma; the second step reaches them. Three steps of
    # plain SGD must move every trainable weight of encoder and projector.
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = _weights(model.trainable_variables)
    original, augmented = random_views(16)
    for _ in range(3):
        model.train_on_batch(original, augmented)
    after = _weights(model.trainable_variables)
    names = [v.path for v in model.trainable_variables]
    unchanged = [n for n, b, a in zip(names, before, after) if np.array_equal(b, a)]
    assert not unchanged, f"weights without gradient: {unchanged}"
    encoder_paths = {v.path for v in model.encoder.trainable_variables}
    assert encoder_paths and encoder_paths <= set(names)


def test_fit_lowers_the_loss_and_logs_every_term():
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    original, augmented = random_views(32)
    history = model.fit(original, augmented, batch_size=16, epochs=6, verbose=0).history
    assert set(history) == {"loss", "mse", "std", "dcor_zz", "dcor_pixels"}
    assert history["loss"][-1] < history["loss"][0] - 0.05
    assert all(np.isfinite(v).all() for v in history.values())


def test_loss_matches_the_loss_terms():
    model = tiny_model(representation_objective="minimize")
    original, augmented = random_views(16)
    terms = model.compute_terms(original, augmented, training=False)
    expected = (
        terms["mse"] + terms["std"] + (1 - terms["dcor_zz"]) + terms["dcor_pixels"]
    )
    np.testing.assert_allclose(to_numpy(terms["loss"]), to_numpy(expected), rtol=1e-6)
    model.compile(optimizer="adam")
    logs = model.evaluate(original, augmented, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], to_numpy(terms["loss"]), rtol=1e-4)


def test_representations_see_the_normalised_original_view():
    model = tiny_model()
    original, augmented = random_views(8)
    normalized = to_numpy(model.encoder.normalize(original))
    np.testing.assert_allclose(normalized.mean(), ((original / 255 - 0.45) / 0.226).mean(), atol=0.05)
    # dcor_pixels depends on the original view only through r(x).
    same = model.compute_terms(original, augmented, training=False)["dcor_pixels"]
    other = model.compute_terms(original[::-1], augmented, training=False)["dcor_pixels"]
    assert not np.isclose(to_numpy(same), to_numpy(other))


def test_missing_augmented_view_is_a_clear_error():
    model = tiny_model()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="original_view, augmented_view"):
        model.fit(random_views(16)[0], batch_size=8, epochs=1, verbose=0)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="representation_objective"):
        tiny_model(representation_objective="max")
    with pytest.raises(ValueError, match="representation weights"):
        tiny_model(representation_weights=[1.0, 2.0])


def test_save_and_load_whole_model(tmp_path):
    model = tiny_model()
    model.compile(optimizer="adam")
    original, augmented = random_views(16)
    model.fit(original, augmented, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, MVMR)
    assert restored.term_names == model.term_names
    np.testing.assert_allclose(
        to_numpy(restored.predict(original, verbose=0)),
        to_numpy(model.predict(original, verbose=0)),
        atol=1e-5,
    )


def test_mixed_precision_trains_with_float32_losses():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = tiny_model()
    assert model.encoder.backbone.get_layer("stem_conv").compute_dtype == "bfloat16"
    model.compile(optimizer="adam")
    original, augmented = random_views(16)
    terms = model.compute_terms(original, augmented, training=True)
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in terms.values())
    history = model.fit(original, augmented, batch_size=8, epochs=2, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values())


_LOAD_ON_OTHER_BACKEND = """
import json, sys, numpy as np, keras
encoder = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])
features = np.asarray(keras.ops.convert_to_numpy(encoder.predict(images, verbose=0)))
np.save(sys.argv[3], features)
"""


@pytest.mark.parametrize(
    "other_backend", [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]
)
def test_encoder_saved_here_gives_same_features_on_other_backend(tmp_path, other_backend):
    model = tiny_model()
    model.compile(optimizer="adam")
    original, augmented = random_views(16)
    model.fit(original, augmented, batch_size=8, epochs=1, verbose=0)  # non-trivial BN stats
    encoder_path = str(tmp_path / "encoder.keras")
    model.encoder.save(encoder_path)
    images = original[:4]
    np.save(tmp_path / "images.npy", images)
    expected = to_numpy(model.encoder.predict(images, verbose=0))
    env = dict(os.environ, KERAS_BACKEND=other_backend, PYTHONPATH=REPO_ROOT)
    script = tmp_path / "load.py"
    script.write_text("import mvmr_keras\n" + _LOAD_ON_OTHER_BACKEND)
    subprocess.run(
        [sys.executable, str(script), encoder_path, str(tmp_path / "images.npy"),
         str(tmp_path / "features.npy")],
        env=env, check=True, capture_output=True, timeout=300,
    )
    got = np.load(tmp_path / "features.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
