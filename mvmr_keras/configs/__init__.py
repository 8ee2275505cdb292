"""The shipped experiment configs, one `get_config()` file each.

They install with the package, so a command finds them from any directory:
`mvmr-train --config=digits` names `mvmr_keras/configs/digits.py` (the
repository's top-level `configs/` is a link to this folder, so
`--config=configs/digits.py` works in a checkout too). They live in the
package, not beside it, because they derive from one another (`from
mvmr_keras.configs import stl10`), an import that must resolve the same
way in a checkout and in an installed copy. In code:

>>> from mvmr_keras.configs import digits
>>> digits.get_config().dataset
'digits'
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def names():
    """The shipped configs' names (`digits`, `stl10`, ...), sorted."""
    return sorted(n[:-3] for n in os.listdir(DIRECTORY)
                  if n.endswith(".py") and not n.startswith("_"))


def path(name):
    """The file of the shipped config `name` (`digits` or `digits.py`)."""
    return os.path.join(DIRECTORY, name if name.endswith(".py") else f"{name}.py")
