"""Exports an encoder to a SavedModel that TensorFlow Serving can serve.

    python -m export.saved_model --encoder=WORKDIR/encoder.keras --output=DIR \\
        [--version=N] [--head=HEAD.keras]

The same program as the installed `mvmr-export`; it lives in
`mvmr_keras/cli/export.py`, which says more.
"""

import os

# Before mvmr_keras imports Keras: a SavedModel needs TensorFlow's backend.
os.environ["KERAS_BACKEND"] = "tensorflow"

from mvmr_keras.cli.export import main  # noqa: E402

if __name__ == "__main__":
    main()
