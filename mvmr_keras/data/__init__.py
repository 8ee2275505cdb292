"""Data: datasets by name and the two-view input pipeline.

`load` and `load_digits` need only NumPy and scikit-learn; `views` builds a
`tf.data` pipeline and imports TensorFlow when called.
"""

from mvmr_keras.data.datasets import DATASETS, DatasetNotFoundError, load
from mvmr_keras.data.digits import load_digits
from mvmr_keras.data.views import POLICIES, augmentation, views
