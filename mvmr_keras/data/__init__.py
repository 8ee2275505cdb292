"""Data: datasets by name, the two-view input pipeline and DINO's multi-crop.

`load`, `views` and `multicrop_views` build `tf.data` pipelines and
import TensorFlow when called; `load_numpy("digits", ...)` and `load_digits` need only NumPy and
scikit-learn.
"""

from mvmr_keras.data.datasets import (
    DATASETS,
    DatasetNotFoundError,
    class_list,
    is_dataset_name,
    load,
    load_numpy,
    splits_of,
)
from mvmr_keras.data.folder import list_folder, load_folder
from mvmr_keras.data.digits import load_digits
from mvmr_keras.data.multicrop import MultiCrop, multicrop_views
from mvmr_keras.data.views import (
    NORMALIZATION_BY_DATASET,
    POLICIES,
    Policy,
    augmentation,
    normalization_for,
    views,
)
