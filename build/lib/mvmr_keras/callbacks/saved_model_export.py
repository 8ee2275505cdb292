"""Exports the encoder as a TF Serving SavedModel during `fit`."""

import keras

from mvmr_keras import serving


class SavedModelExport(keras.callbacks.Callback):
    """Writes `output_dir/<version>/` every `every_n_epochs` epochs.

    Each export is a new version (1, 2, ...), so TF Serving picks up the
    latest. It runs the export command in a separate process on every
    backend: the same path as `mvmr-export`, and the only
    one that works from JAX or PyTorch, where the training process has no
    TensorFlow graph to save.

    Example:

    >>> model.fit(ds, epochs=10, callbacks=[SavedModelExport("serving/mvmr", 5)])
    """

    def __init__(self, output_dir, every_n_epochs=1, head_path=None):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1; got {every_n_epochs}")
        self.output_dir = output_dir
        self.every_n_epochs = every_n_epochs
        self.head_path = head_path
        self.exported = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        encoder = getattr(self.model, "encoder", self.model)
        version = serving.next_version(self.output_dir)
        serving.export_in_subprocess(encoder, self.output_dir, version, self.head_path)
        self.exported.append(version)
