"""Exports an encoder to a SavedModel that TensorFlow Serving can serve.

    python -m export.saved_model --encoder=WORKDIR/encoder.keras --output=DIR \\
        [--version=N] [--head=HEAD.keras]

The `.keras` file may come from any backend: this command always runs on
TensorFlow (it sets `KERAS_BACKEND=tensorflow` before Keras is imported).
It writes `DIR/<version>/`, TensorFlow Serving's layout (by default the
next version number; an existing version is never overwritten), reloads it,
checks it against the Keras model and prints its signatures. The
signatures are described in `mvmr_keras/serving.py`.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

_ENCODER = flags.DEFINE_string("encoder", None, "Path to encoder.keras.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Model base directory for TF Serving.", required=True)
_VERSION = flags.DEFINE_integer("version", None, "Version number (default: the next one).")
_HEAD = flags.DEFINE_string("head", None, "Optional Keras classifier on the features.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel INFO lines
    from mvmr_keras import serving

    try:
        serving.export_saved_model(_ENCODER.value, _OUTPUT.value, _VERSION.value, _HEAD.value)
    except serving.ExportError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
