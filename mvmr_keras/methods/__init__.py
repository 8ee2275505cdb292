"""Training methods, one module each, looked up by the config's `method`.

`training.train` does what every method shares (data, workdir, checkpoints,
evaluation, results) and asks the method for the rest: its model, its
training views, its optimiser, extra callbacks, its logged loss terms and
the encoder it evaluates and saves (`base.Method`). A config without a
`method` field is an MV-MR config.

Example:

>>> method = methods.create(config, log=print)   # config.method == "dino"
>>> model = method.build_model(steps_per_epoch=11)
>>> method.encoder(model) is model.teacher
True
"""

import importlib

from mvmr_keras.methods.base import ConfigError, Method

# name -> module defining `METHOD`, a `Method` subclass (imported on use).
METHODS = {"mvmr": "mvmr_keras.methods.mvmr", "dino": "mvmr_keras.methods.dino",
           "mokd": "mvmr_keras.methods.mokd"}
DEFAULT = "mvmr"


def name_of(config):
    """The config's method name (`mvmr` when it has no `method` field)."""
    get = getattr(config, "get", None)
    return (get("method", DEFAULT) if get else DEFAULT) or DEFAULT


def get(name_or_config):
    """The `Method` subclass of a name or a config; `ConfigError` if unknown."""
    name = name_or_config if isinstance(name_or_config, str) else name_of(name_or_config)
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {list(METHODS)}")
    return importlib.import_module(METHODS[name]).METHOD


def create(config, log=print):
    """The config's method, ready to build its parts."""
    return get(config)(config, log=log)


__all__ = ["ConfigError", "Method", "METHODS", "DEFAULT", "name_of", "get", "create"]
