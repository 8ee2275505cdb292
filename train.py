"""Trains MV-MR: `python train.py --config=configs/digits.py --workdir=DIR`.

Any config field can be overridden: `--config.epochs=2`. The backend is
Keras's: `KERAS_BACKEND=jax python train.py ...`. Re-running the same
command after an interruption resumes from the last completed epoch.
Errors are one line on stderr and a non-zero exit (130 after Ctrl-C).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter

from absl import app, flags  # noqa: E402

try:
    from mvmr_keras import cli  # noqa: E402  (imports Keras)
except ValueError as e:  # Keras refuses an unknown KERAS_BACKEND at import
    sys.exit(f"error: {e}; KERAS_BACKEND must be tensorflow, jax or torch")

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs.", required=True)


def main(argv):
    config = cli.config_value(_CONFIG, argv)
    from mvmr_keras import training

    try:
        training.train(config, _WORKDIR.value)
    except (training.ConfigError, training.TrainingDiverged) as e:
        sys.exit(f"error: {e}")
    except training.TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(130)  # the shell's code for Ctrl-C


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
