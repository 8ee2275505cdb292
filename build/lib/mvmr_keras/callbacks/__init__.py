"""Callbacks for `fit`."""

from mvmr_keras.callbacks.knn_monitor import KNNMonitor
from mvmr_keras.callbacks.online_probe import OnlineLinearProbe
from mvmr_keras.callbacks.saved_model_export import SavedModelExport
