"""Trains MV-MR: `python train.py --config=configs/digits.py --workdir=DIR`.

Any config field can be overridden: `--config.epochs=2`. The backend is
Keras's: `KERAS_BACKEND=jax python train.py ...`. Re-running the same
command after an interruption resumes from the last completed epoch.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Path to a config file with get_config()."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs.", required=True)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    from mvmr_keras import training

    try:
        training.train(_CONFIG.value, _WORKDIR.value)
    except (training.ConfigError, training.TrainingDiverged) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
