"""Trains MV-MR: `python train.py --config=configs/digits.py --workdir=DIR`.

Any config field can be overridden: `--config.epochs=2`. The backend is
Keras's: `KERAS_BACKEND=jax python train.py ...`. Re-running the same
command after an interruption resumes from the last completed epoch.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

def _unknown_field(error, argv):
    """ml_collections' error for an override naming no field of the config."""
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    field = str(error).strip("\"'")
    sys.exit(
        f"error: unknown config field '{field}' (overrides given: "
        f"{', '.join(overrides)}); the config file lists the fields"
    )


try:
    # With the default config, ml_collections applies overrides right here.
    _CONFIG = config_flags.DEFINE_config_file(
        "config", "configs/digits.py", "Path to a config file with get_config()."
    )
except (AttributeError, KeyError) as e:
    _unknown_field(e, sys.argv)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs.", required=True)


def parse_flags(argv):
    """absl's parsing, with every failure reported as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {e}")
    except (AttributeError, KeyError) as e:
        _unknown_field(e, argv)
    except ValueError as e:  # a value of the wrong type or form
        sys.exit(f"error: {e}")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        config = _CONFIG.value
        config.keys()  # a config that failed to load or override raises here
    except OSError as e:
        sys.exit(f"error: {str(e).splitlines()[-1].strip()}")
    except (AttributeError, KeyError) as e:
        _unknown_field(e, argv)
    import logging

    # KerasCV's augmentations warn at every trace that TensorFlow vectorises
    # them with a while_loop; that is expected and not actionable.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from mvmr_keras import training

    try:
        training.train(config, _WORKDIR.value)
    except (training.ConfigError, training.TrainingDiverged) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
