"""Online linear probe: a linear classifier trained alongside SSL training."""

import os

import keras
import numpy as np

from mvmr_keras.callbacks.labelled_data import (
    cycle_batches,
    encoder_of,
    predict_features,
    to_arrays,
)


class OnlineLinearProbe(keras.callbacks.Callback):
    """Trains a linear probe on detached encoder features during `fit`.

    After every training batch, the probe takes one optimiser step (its own
    Adam, lr 1e-4 by default) on the next batch of `train_data`: the
    encoder computes that batch's features with `predict_on_batch`, i.e. in
    inference mode (BatchNorm reads, never updates, its moving statistics)
    and outside any gradient computation; the probe, a separate small
    `keras.Model` (Dense on the features), then `train_on_batch`es on those
    NumPy features. Gradients cannot reach the encoder and the probe's
    optimiser holds only the probe's variables, so the encoder is never
    changed. At each epoch's end it scores the validation set and writes
    `probe_top1` and `probe_top5` (fractions in [0, 1]) into `logs`.

    Callbacks run in list order on the same `logs`, and Keras appends its
    `History` and progress bar last, so both see the probe's numbers. Put
    this callback *before* any callback that reads them (`TensorBoard`,
    `ModelCheckpoint(monitor="probe_top1")`, `EarlyStopping`, CSV loggers).

    Args:
        train_data: labelled images, cycled for as long as training runs:
            `(images, labels)` arrays (reshuffled every pass) or a
            `tf.data.Dataset` of `(images, labels)` or
            `(original, augmented, labels)` (the original view is used),
            batched or not. Images are in [0, 255] at the encoder's size.
        validation_data: the same forms; scored in full every epoch.
        num_classes: default: the largest label seen + 1.
        learning_rate: the probe's Adam learning rate.
        batch_size: probe batch size (for unbatched data and arrays).
        encoder: the feature model; default `model.encoder`, else the model.
        prefix: log names are `<prefix>_top1` and `<prefix>_top5`.
        checkpoint_path: a `.keras` file. When given, the probe (weights and
            optimiser state) is saved there at every epoch's end and, if the
            file exists when training begins, restored from it: a run resumed
            with `BackupAndRestore` continues the probe instead of starting
            it again from scratch.

    Example:

    >>> probe = OnlineLinearProbe(load_digits("train"), load_digits("test"))
    >>> model.fit(views(images, batch_size=128), epochs=10,
    ...           callbacks=[probe, keras.callbacks.EarlyStopping("probe_top1")])
    """

    def __init__(self, train_data, validation_data, num_classes=None, learning_rate=1e-4,
                 batch_size=256, encoder=None, seed=0, prefix="probe", checkpoint_path=None):
        super().__init__()
        if checkpoint_path is not None and not str(checkpoint_path).endswith(".keras"):
            raise ValueError(f"checkpoint_path must end in .keras; got {checkpoint_path!r}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.train_data = train_data
        self.validation_data = validation_data
        self.num_classes = num_classes
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self._encoder = encoder
        self.seed = seed
        self.prefix = prefix
        self.checkpoint_path = None if checkpoint_path is None else str(checkpoint_path)
        self.probe = None
        self._batches = None
        self._validation = None

    @property
    def encoder(self):
        # `self.model` (not `_model`): on JAX, reading it copies the weights
        # being trained back into the model's variables first.
        return encoder_of(self.model, self._encoder)

    def _build(self, feature_dim):
        labels = self._validation[1]
        num_classes = self.num_classes or int(np.max(labels)) + 1
        inputs = keras.Input((feature_dim,), name="features")
        logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(inputs)
        self.probe = keras.Model(inputs, logits, name=f"{self.prefix}_linear")
        self.probe.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

    def on_train_begin(self, logs=None):
        if self._validation is None:
            self._validation = to_arrays(self.validation_data, self.batch_size)
        if self._batches is None:
            self._batches = cycle_batches(self.train_data, self.batch_size, self.seed)
        if self.probe is None and self.checkpoint_path and os.path.exists(self.checkpoint_path):
            # compile=True brings back the Adam moments and step count too.
            self.probe = keras.saving.load_model(self.checkpoint_path)

    def save(self):
        """Writes the probe to `checkpoint_path` (through a temporary file,
        so an interruption never leaves half a checkpoint)."""
        partial = self.checkpoint_path[: -len(".keras")] + ".partial.keras"
        self.probe.save(partial)
        os.replace(partial, self.checkpoint_path)

    def probe_step(self):
        """One probe update on the next labelled batch; returns its loss."""
        images, labels = next(self._batches)
        features = predict_features(self.encoder, images, len(images))
        if self.probe is None:
            self._build(features.shape[1])
        if self.num_classes is None and int(np.max(labels)) >= self.probe.output_shape[-1]:
            raise ValueError(
                f"training label {int(np.max(labels))} is beyond the validation set's "
                f"classes; pass num_classes"
            )
        return float(np.asarray(self.probe.train_on_batch(features, labels.astype("int32"))))

    def on_train_batch_end(self, batch, logs=None):
        self.probe_step()

    def scores(self):
        """`{"probe_top1": ..., "probe_top5": ...}` on the validation set now."""
        from mvmr_keras.evaluation.metrics import top_k_accuracy

        images, labels = self._validation
        features = predict_features(self.encoder, images, self.batch_size)
        if self.probe is None:
            self._build(features.shape[1])
        logits = np.asarray(self.probe.predict_on_batch(features))
        return {
            f"{self.prefix}_top1": top_k_accuracy(logits, labels, 1),
            f"{self.prefix}_top5": top_k_accuracy(logits, labels, 5),
        }

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.scores())
        if self.checkpoint_path:
            self.save()
