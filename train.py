"""Trains MV-MR: `python train.py --config=configs/digits.py --workdir=DIR`.

The same program as the installed `mvmr-train`; it lives in
`mvmr_keras/cli/train.py`, which says more.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

try:
    from mvmr_keras.cli.train import main  # noqa: E402  (imports Keras)
except ValueError as e:  # Keras refuses an unknown KERAS_BACKEND at import
    sys.exit(f"error: {e}; KERAS_BACKEND must be tensorflow, jax or torch")

if __name__ == "__main__":
    main()
