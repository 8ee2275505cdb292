"""Evaluates a trained encoder: `python evaluate.py --mode=linear --encoder=W/encoder.keras`.

The same program as the installed `mvmr-evaluate`; it lives in
`mvmr_keras/cli/evaluate.py`, which lists the modes.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from mvmr_keras.cli.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
