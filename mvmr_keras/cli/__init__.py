"""The command-line programs, and what they share: a config flag and
one-line errors.

`mvmr-train`, `mvmr-evaluate` and `mvmr-export` (installed with the
package) run `train.main`, `evaluate.main` and `export.main`; `train.py`,
`evaluate.py` and `python -m export.saved_model` in a checkout are the same
programs. absl and ml_collections report a bad command line with
tracebacks; a user should get one line saying what is wrong. Example (a
program's `main`):

>>> use_shipped_config_names(sys.argv)
>>> CONFIG = define_config_flag()
>>> app.run(run, flags_parser=parse_flags)  # in run: config = config_value(CONFIG, argv)
"""

import logging
import os
import sys

from absl import flags
from ml_collections import config_flags

from mvmr_keras import configs


def exit_unknown_field(error, argv):
    """ml_collections' error for an override naming no field of the config."""
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    field = str(error).strip("\"'")
    sys.exit(
        f"error: unknown config field '{field}' (overrides given: "
        f"{', '.join(overrides)}); the config file lists the fields"
    )


def use_shipped_config_names(argv):
    """Rewrites `--config=NAME` (a shipped config, e.g. `digits`) in place
    to that config's file, unless NAME is a file here.

    In place, because ml_collections reads the overrides from `sys.argv`
    when the flag is defined.
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            value = arg[len("--config="):]
            if (value and not os.path.exists(value) and os.sep not in value
                    and os.path.exists(configs.path(value))):
                argv[i] = f"--config={configs.path(value)}"


def define_config_flag(default=None):
    """`--config=FILE` (or a shipped config's name, see
    `use_shipped_config_names`) with `--config.FIELD=VALUE` overrides; the
    default is the shipped `digits` config, wherever the package is."""
    if default is None:
        default = configs.path("digits")
    try:
        # With a default config, ml_collections applies overrides right here.
        return config_flags.DEFINE_config_file(
            "config", default,
            "A config file with get_config(), or the name of a shipped one "
            f"({', '.join(configs.names())}).",
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
    """absl's parsing, with every failure reported as one line.

    The flags a program defines here are shown by `--help`, which lists the
    main module's: the program lives in this package, not in the script.
    """
    for module, module_flags in list(flags.FLAGS.flags_by_module_dict().items()):
        if module.startswith(__name__):
            for flag in module_flags:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
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
