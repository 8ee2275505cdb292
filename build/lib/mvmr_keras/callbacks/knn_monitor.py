"""kNN monitor: weighted k-nearest-neighbour accuracy during training."""

import keras

from mvmr_keras.callbacks.labelled_data import encoder_of, predict_features, to_arrays


class KNNMonitor(keras.callbacks.Callback):
    """Writes weighted kNN top-1/top-5 into `logs` every `every_n_epochs`.

    The bank is the features of `train_data`, the queries those of
    `validation_data`, both from the encoder in inference mode; each query's
    `k` most cosine-similar bank examples vote for their labels with weight
    `exp(sim / temperature)` (`mvmr_keras.evaluation.knn_scores`). Logged
    as `<prefix>_top1` / `<prefix>_top5` (fractions in [0, 1]); epochs in
    between log nothing. Put it before callbacks that read those logs.

    Args:
        train_data, validation_data: `(images, labels)` arrays or a labelled
            `tf.data.Dataset` (see `OnlineLinearProbe`), read once.
        every_n_epochs: 1 = every epoch; the last epoch is always scored.
        k, temperature: the vote (defaults 20 and 0.07, as is usual).
        encoder: default `model.encoder`, else the model.

    Example:

    >>> model.fit(ds, epochs=100, callbacks=[KNNMonitor(train, test, every_n_epochs=10)])
    """

    def __init__(self, train_data, validation_data, every_n_epochs=1, k=20,
                 temperature=0.07, batch_size=256, encoder=None, prefix="knn"):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1; got {every_n_epochs}")
        if k < 1 or temperature <= 0:
            raise ValueError(f"need k >= 1 and temperature > 0; got {k}, {temperature}")
        self.train_data = train_data
        self.validation_data = validation_data
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self._encoder = encoder
        self.prefix = prefix
        self._arrays = None

    def scores(self):
        from mvmr_keras.evaluation.knn import knn_accuracy

        if self._arrays is None:
            self._arrays = (to_arrays(self.train_data, self.batch_size),
                            to_arrays(self.validation_data, self.batch_size))
        (train_x, train_y), (val_x, val_y) = self._arrays
        encoder = encoder_of(self.model, self._encoder)
        result = knn_accuracy(
            predict_features(encoder, train_x, self.batch_size), train_y,
            predict_features(encoder, val_x, self.batch_size), val_y,
            k=self.k, temperature=self.temperature,
        )
        return {f"{self.prefix}_{name}": value for name, value in result.items()}

    def on_epoch_end(self, epoch, logs=None):
        last = self.params and epoch + 1 == self.params.get("epochs")
        if ((epoch + 1) % self.every_n_epochs == 0 or last) and logs is not None:
            logs.update(self.scores())
