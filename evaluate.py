"""Evaluates a trained encoder: `python evaluate.py --mode=linear --encoder=W/encoder.keras`.

The same program as the installed `mvmr-evaluate`; it lives in
`mvmr_keras/cli/evaluate.py`, which lists the modes.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

try:
    from mvmr_keras.cli.evaluate import main  # noqa: E402  (imports Keras)
except ValueError as e:  # Keras refuses an unknown KERAS_BACKEND at import
    sys.exit(f"error: {e}; KERAS_BACKEND must be tensorflow, jax or torch")

if __name__ == "__main__":
    main()
