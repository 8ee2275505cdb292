"""Trains MV-MR: `python train.py --config=configs/digits.py --workdir=DIR`.

The same program as the installed `mvmr-train`; it lives in
`mvmr_keras/cli/train.py`, which says more.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from mvmr_keras.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
