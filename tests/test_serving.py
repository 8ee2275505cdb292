"""SavedModel export for TF Serving, from an encoder trained on this backend."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO_ROOT, random_views, tiny_model
from mvmr_keras import serving
from mvmr_keras.callbacks import SavedModelExport


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 2 epochs, exported by the callback after each."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("serving")
    model = tiny_model()
    model.compile(optimizer="adam")
    original, augmented = random_views(16)
    callback = SavedModelExport(str(root / "mvmr"), every_n_epochs=1)
    model.fit(original, augmented, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    return model, root, callback


def _tf_features(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    by_tensor = loaded.signatures["serving_default"](images=tf.constant(images))
    png = [tf.io.encode_png(image).numpy() for image in images]
    by_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    return {k: v.numpy() for k, v in by_tensor.items()}, {k: v.numpy() for k, v in by_bytes.items()}


def _assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_callback_writes_versions_in_tf_serving_layout(trained):
    _, root, callback = trained
    assert callback.exported == [1, 2]
    assert sorted(os.listdir(root / "mvmr")) == ["1", "2"]
    for version in ("1", "2"):
        assert {"saved_model.pb", "variables"} <= set(os.listdir(root / "mvmr" / version))


def test_both_signatures_match_the_keras_encoder(trained):
    model, root, _ = trained
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    want = np.asarray(keras.ops.convert_to_numpy(model.encoder.predict(images.astype("float32"), verbose=0)))
    by_tensor, by_bytes = _tf_features(str(root / "mvmr" / "2"), images)
    assert set(by_tensor) == {"embedding"} and by_tensor["embedding"].dtype == np.float32
    _assert_close(by_tensor["embedding"], want)
    _assert_close(by_bytes["embedding"], want)


def test_head_adds_logits_and_probabilities(trained, tmp_path):
    model, _, _ = trained
    head = keras.Sequential([keras.Input((model.encoder.output_dim,)), keras.layers.Dense(10)])
    head_path = str(tmp_path / "head.keras")
    head.save(head_path)
    out = serving.export_in_subprocess(model.encoder, str(tmp_path / "served"), head_path=head_path)
    assert "max abs difference" in out and "output probabilities: float32 [None, 10]" in out
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    by_tensor, by_bytes = _tf_features(str(tmp_path / "served" / "1"), images)
    features = model.encoder.predict(images.astype("float32"), verbose=0)
    logits = np.asarray(keras.ops.convert_to_numpy(head.predict(features, verbose=0)))
    for outputs in (by_tensor, by_bytes):
        _assert_close(outputs["logits"], logits)
        np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_saved_model_cli_show_runs(trained):
    _, root, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", str(root / "mvmr" / "1"), "--all"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "serving_default" in result.stdout and "serving_bytes" in result.stdout


def _export_cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "export.saved_model", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_bad_inputs_are_clear_errors(trained, tmp_path):
    model, root, _ = trained
    encoder_path = str(tmp_path / "encoder.keras")
    model.encoder.save(encoder_path)
    wrong_head = keras.Sequential([keras.Input((7,)), keras.layers.Dense(3)])
    wrong_head.save(str(tmp_path / "wrong_head.keras"))
    (tmp_path / "a_file").write_text("x")
    cases = [
        ([f"--encoder={tmp_path / 'missing.keras'}", f"--output={tmp_path / 'o1'}"], "does not exist"),
        ([f"--encoder={tmp_path / 'a_file'}", f"--output={tmp_path / 'o2'}"], "not a .keras archive"),
        ([f"--encoder={encoder_path}", f"--output={tmp_path / 'a_file'}"], "is a file, not a directory"),
        ([f"--encoder={encoder_path}", f"--output={tmp_path / 'o3'}", f"--head={tmp_path / 'wrong_head.keras'}"],
         f"the head takes 7 features but the encoder gives {model.encoder.output_dim}"),
        ([f"--encoder={encoder_path}", f"--output={root / 'mvmr'}", "--version=1"], "already exists"),
    ]
    for args, message in cases:
        result = _export_cli(*args)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1], result.stderr[-1500:]
    assert sorted(os.listdir(root / "mvmr")) == ["1", "2"]  # nothing overwritten


def test_in_process_export_needs_tensorflow_backend(trained, tmp_path):
    if keras.backend.backend() == "tensorflow":
        model, _, _ = trained
        path = str(tmp_path / "enc.keras")
        model.encoder.save(path)
        assert serving.export_saved_model(path, str(tmp_path / "out"), log=lambda *a: None).endswith("1")
    else:
        with pytest.raises(serving.ExportError, match="needs the TensorFlow backend"):
            serving.export_saved_model("unused.keras", str(tmp_path / "out"))
