"""What `train.py` and `evaluate.py` share: a config flag and one-line errors.

absl and ml_collections report a bad command line with tracebacks; a user
should get one line saying what is wrong. Example (a script's top level):

>>> CONFIG = define_config_flag()
>>> app.run(main, flags_parser=parse_flags)  # in main: config = config_value(CONFIG, argv)
"""

import logging
import sys

from absl import flags
from ml_collections import config_flags


def exit_unknown_field(error, argv):
    """ml_collections' error for an override naming no field of the config."""
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    field = str(error).strip("\"'")
    sys.exit(
        f"error: unknown config field '{field}' (overrides given: "
        f"{', '.join(overrides)}); the config file lists the fields"
    )


def define_config_flag(default="configs/digits.py"):
    """`--config=FILE` with `--config.FIELD=VALUE` overrides."""
    try:
        # With a default config, ml_collections applies overrides right here.
        return config_flags.DEFINE_config_file(
            "config", default, "Path to a config file with get_config()."
        )
    except (AttributeError, KeyError) as e:
        exit_unknown_field(e, sys.argv)
    except Exception as e:  # the config file itself fails: a syntax error, a bad import
        exit_config_file(e)


def exit_config_file(error):
    """One line for a config file that does not load."""
    if isinstance(error, SyntaxError):
        sys.exit(f"error: config file {error.filename}, line {error.lineno}: {error.msg}")
    text = str(error).strip().splitlines()
    sys.exit(f"error: the config file does not load: {type(error).__name__}: "
             f"{text[-1].strip() if text else ''}")


def parse_flags(argv):
    """absl's parsing, with every failure reported as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {e}")
    except (AttributeError, KeyError) as e:
        exit_unknown_field(e, argv)
    except ValueError as e:  # a value of the wrong type or form
        sys.exit(f"error: {e}")
    except Exception as e:  # the config file fails while it is loaded
        exit_config_file(e)


def config_value(config_flag, argv):
    """The parsed config, or exit with one line; also quiets TF's Python log.

    KerasCV's augmentations warn at every trace that TensorFlow vectorises
    them with a while_loop; that is expected and not actionable.
    """
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        config = config_flag.value
        config.keys()  # a config that failed to load or override raises here
    except OSError as e:
        sys.exit(f"error: {str(e).splitlines()[-1].strip()}")
    except (AttributeError, KeyError) as e:
        exit_unknown_field(e, argv)
    except Exception as e:
        exit_config_file(e)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return config
