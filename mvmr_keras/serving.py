"""SavedModel export for TensorFlow Serving (the logic behind `mvmr-export`
and `python -m export.saved_model`; see `mvmr_keras.cli.export`).

A SavedModel is a TensorFlow graph, so `export_saved_model` must run with
the TensorFlow backend. `export_in_subprocess` gives every backend the same
path: it saves the encoder to a `.keras` file and runs the export command
in a fresh process, which is how `SavedModelExport` works during `fit` on
JAX and PyTorch (Keras files load on every backend with the same weights).

Signatures written:

- `serving_default`: `images`, uint8 `[batch, H, W, 3]` at the encoder's
  training size -> `embedding` float32 `[batch, D]`;
- `serving_bytes`: `image_bytes`, string `[batch]` of encoded JPEG or PNG
  images of any size (what a REST client sends base64-encoded), decoded
  and resized (bilinear) to `H x W` -> the same outputs.

With a head (a Keras model from features `[batch, D]` to class logits,
e.g. a linear classifier from evaluation) both also return `logits` and
`probabilities` (softmax).

The image input size is fixed rather than dynamic: the encoder was trained
at one size, and resizing raw tensors silently would hide a client sending
the wrong thing. The bytes signature resizes, since encoded images come in
any size.
"""


import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

RELATIVE_TOLERANCE = 1e-4


class ExportError(ValueError):
    """An export that cannot be done; the message says why."""


def next_version(output_dir):
    """1 + the largest numeric version directory in `output_dir` (or 1)."""
    if not os.path.exists(output_dir):
        return 1
    if not os.path.isdir(output_dir):
        raise ExportError(f"output path {output_dir} is a file, not a directory")
    versions = [int(n) for n in os.listdir(output_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def _require_tensorflow_backend():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "a SavedModel export needs the TensorFlow backend (this process runs "
            f"{keras.backend.backend()}); use `mvmr-export` or "
            "export_in_subprocess()"
        )


def _load_keras_model(path, what):
    import keras

    import mvmr_keras  # noqa: F401  (registers the serialisable classes)

    if not os.path.exists(path):
        raise ExportError(f"{what} file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{what} file {path} is truncated or not a .keras archive")
    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # a corrupt file or not a Keras archive at all
        reason = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{what} file {path} is not a loadable Keras model ({reason})") from None
    bad = [v.path for v in model.weights
           if "float" in str(v.dtype)
           and not np.all(np.isfinite(keras.ops.convert_to_numpy(v)))]
    if bad:
        raise ExportError(
            f"{what} file {path} has {len(bad)} non-finite weight arrays (e.g. {bad[0]}); "
            "it comes from a diverged run and is not exported"
        )
    return model


def _check_image_encoder(encoder, path):
    """An export takes an images -> features model, not e.g. model.keras."""
    try:
        in_shape, out_shape = tuple(encoder.input.shape), tuple(encoder.output.shape)
    except (AttributeError, ValueError):
        in_shape = out_shape = None
    if in_shape is None or len(in_shape) != 4 or len(out_shape) != 2:
        raise ExportError(
            f"{path} is not an image encoder (images -> features); export the "
            "workdir's encoder.keras, not model.keras"
        )


def _build_archive(encoder, head):
    import keras
    import tensorflow as tf

    height, width, channels = encoder.input.shape[1:]
    if height is None or width is None:
        raise ExportError("the encoder has no fixed input size; rebuild it with image_shape")

    def outputs(images_float):
        embedding = tf.cast(encoder(images_float, training=False), tf.float32)
        result = {"embedding": embedding}
        if head is not None:
            logits = tf.cast(head(embedding, training=False), tf.float32)
            result["logits"] = logits
            result["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return result

    def serve_images(images):
        return outputs(tf.cast(images, tf.float32))

    def decode(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width))
        return tf.clip_by_value(image, 0.0, 255.0)

    def serve_bytes(image_bytes):
        images = tf.map_fn(
            decode, image_bytes,
            fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32),
        )
        return outputs(images)

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    if head is not None:
        archive.track(head)
    archive.add_endpoint(
        "serving_default", serve_images,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serving_bytes", serve_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
    )
    return archive


def _check_reloaded(path, encoder, head, log):
    import tensorflow as tf

    height, width, channels = encoder.input.shape[1:]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, height, width, channels), dtype=np.uint8)
    expected = {"embedding": np.asarray(encoder.predict(images.astype("float32"), verbose=0))}
    if head is not None:
        expected["logits"] = np.asarray(head.predict(expected["embedding"], verbose=0))
    reloaded = tf.saved_model.load(path)
    got = reloaded.signatures["serving_default"](images=tf.constant(images))
    png = [tf.io.encode_png(image).numpy() for image in images]  # lossless
    got_bytes = reloaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    worst = 0.0
    for name, want in expected.items():
        if not np.all(np.isfinite(want)):
            raise ExportError(
                f"the Keras model's {name} is non-finite (NaN/inf) on test images; "
                "nothing to serve"
            )
        for signature, outputs in (("serving_default", got), ("serving_bytes", got_bytes)):
            have = outputs[name].numpy()
            difference = float(np.max(np.abs(have - want)))
            relative = difference / max(float(np.max(np.abs(want))), 1e-12)
            worst = max(worst, relative) if np.isfinite(relative) else float("nan")
            log(f"  {signature}/{name}: max abs difference {difference:.3g} (relative {relative:.3g})")
    if not worst <= RELATIVE_TOLERANCE:  # NaN fails too
        raise ExportError(
            f"the reloaded SavedModel differs from the Keras model by {worst:.3g} "
            f"relative (> {RELATIVE_TOLERANCE}); the export at {path} is not faithful"
        )
    return worst


def describe_signatures(path):
    """The signatures of a SavedModel, in `saved_model_cli show` style."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    lines = []
    for name, fn in loaded.signatures.items():
        lines.append(f"signature_def['{name}']:")
        for arg, spec in fn.structured_input_signature[1].items():
            lines.append(f"  input  {arg}: {spec.dtype.name} {spec.shape.as_list()}")
        for out, spec in fn.structured_outputs.items():
            lines.append(f"  output {out}: {spec.dtype.name} {spec.shape.as_list()}")
    return "\n".join(lines)


def export_saved_model(encoder_path, output_dir, version=None, head_path=None, log=print):
    """Writes `output_dir/<version>/`, checks it, and returns its path.

    After writing, the SavedModel is reloaded with TensorFlow and both
    signatures are compared with the Keras model on a few images; more than
    `RELATIVE_TOLERANCE` relative difference raises `ExportError`.
    """
    _require_tensorflow_backend()
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ExportError(f"output path {output_dir} is a file, not a directory")
    encoder = _load_keras_model(encoder_path, "encoder")
    _check_image_encoder(encoder, encoder_path)
    head = None
    if head_path:
        head = _load_keras_model(head_path, "head")
        encoder_out = encoder.output.shape[-1]
        head_in = head.inputs[0].shape[-1] if getattr(head, "inputs", None) else None
        if head_in is None:  # a subclassed head: try it on one feature vector
            try:
                head(np.zeros((1, encoder_out), "float32"))
                head_in = encoder_out
            except Exception:
                pass
        if head_in != encoder_out:
            raise ExportError(
                f"the head takes {head_in} features but the encoder gives {encoder_out}"
            )
    version = next_version(output_dir) if version is None else int(version)
    path = os.path.join(output_dir, str(version))
    if os.path.exists(path):
        raise ExportError(f"version {version} already exists at {path}; never overwritten")
    archive = _build_archive(encoder, head)
    try:
        os.makedirs(output_dir, exist_ok=True)
        archive.write_out(path, verbose=False)
    except Exception as e:  # OSError, or TensorFlow's own errors for a read-only folder
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0][:160]
        raise ExportError(f"cannot write the SavedModel to {path} ({reason})") from None
    log(f"Wrote SavedModel version {version} to {path}")
    log("Reloaded with TensorFlow and compared with the Keras model:")
    _check_reloaded(path, encoder, head, log)
    log(describe_signatures(path))
    return path




def export_in_subprocess(encoder, output_dir, version=None, head_path=None):
    """Exports a live encoder from any backend through the export command."""
    with tempfile.TemporaryDirectory() as tmp:
        encoder_path = os.path.join(tmp, "encoder.keras")
        encoder.save(encoder_path)
        command = [sys.executable, "-m", "mvmr_keras.cli.export",
                   f"--encoder={encoder_path}", f"--output={output_dir}"]
        if version is not None:
            command.append(f"--version={version}")
        if head_path:
            command.append(f"--head={head_path}")
        repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(result.stderr.strip().splitlines()[-1] if result.stderr else "export failed")
    return result.stdout
