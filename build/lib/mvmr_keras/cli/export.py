"""`mvmr-export` (or `python -m export.saved_model` in a checkout): exports
an encoder to a SavedModel that TensorFlow Serving can serve.

    mvmr-export --encoder=WORKDIR/encoder.keras --output=DIR \\
        [--version=N] [--head=HEAD.keras]

The `.keras` file may come from any backend: the export always runs on
TensorFlow (a process whose Keras already runs another backend starts this
command again with `KERAS_BACKEND=tensorflow`). It writes `DIR/<version>/`,
TensorFlow Serving's layout (by default the next version number; an
existing version is never overwritten), reloads it, checks it against the
Keras model and prints its signatures. The signatures are described in
`mvmr_keras/serving.py`.
"""

import os
import subprocess
import sys


def main(argv=None):
    """The console entry point; `argv` defaults to `sys.argv`."""
    argv = sys.argv if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() != "tensorflow":
        # Importing this module imported mvmr_keras, and so Keras, under
        # the caller's backend; a SavedModel needs TensorFlow's.
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        command = [sys.executable, "-m", "mvmr_keras.cli.export", *argv[1:]]
        sys.exit(subprocess.run(command, env=env).returncode)

    from absl import app, flags, logging

    encoder_flag = flags.DEFINE_string("encoder", None, "Path to encoder.keras.",
                                       required=True)
    output_flag = flags.DEFINE_string("output", None,
                                      "Model base directory for TF Serving.", required=True)
    version_flag = flags.DEFINE_integer("version", None,
                                        "Version number (default: the next one).")
    head_flag = flags.DEFINE_string("head", None, "Optional Keras classifier on the features.")

    def run(args):
        if len(args) > 1:
            sys.exit(f"error: unexpected arguments {args[1:]}")
        logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel INFO lines
        from mvmr_keras import serving

        try:
            serving.export_saved_model(encoder_flag.value, output_flag.value,
                                       version_flag.value, head_flag.value)
        except serving.ExportError as e:
            sys.exit(f"error: {e}")

    app.run(run, argv=argv)


if __name__ == "__main__":
    main()
