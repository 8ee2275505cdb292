"""Callbacks for `fit`."""

from mvmr_keras.callbacks.saved_model_export import SavedModelExport
