"""Semi-supervised evaluation: fine-tune encoder + linear head on a labelled subset.

The whole network trains (BatchNorm in training mode) on a class-balanced
fraction of the train split's labels, e.g. 1% or 10% as in the ImageNet
protocol, and is scored on the test split.

Example:

>>> subset = label_subset(labels, fraction=0.1, seed=0)
>>> model = finetune(encoder, images[subset], labels[subset], num_classes=10,
...                  epochs=10, batch_size=64, learning_rate=1e-4)
"""

import numpy as np


def label_subset(labels, fraction, seed=0):
    """Sorted indices of a class-balanced `fraction` of `labels`: from each
    class `max(1, round(fraction * count))` examples, drawn with `seed`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1]; got {fraction}")
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def finetune(encoder, images, labels, num_classes, epochs=10, batch_size=64,
             learning_rate=1e-4, augment=None, seed=0, verbose=0):
    """Returns `encoder` + a Dense head, both trained on `(images, labels)`.

    `images` uint8 `(N, H, W, 3)` at the encoder's size; `augment` an
    optional Pipeline (`features.eval_augmentation`) applied per batch in
    `tf.data`. Adam with a cosine decay of `learning_rate` to 0.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    encoder.trainable = True
    inputs = keras.Input(tuple(encoder.input_shape[1:]), name="images")
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(encoder(inputs))
    model = keras.Model(inputs, logits, name="finetuned")
    batch_size = min(batch_size, len(images))
    steps = max(len(images) // batch_size, 1)

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        return (augment(x) if augment is not None else x), y

    ds = (tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, "int32")))
          .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size, drop_remainder=True)
          .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(epochs * steps, 1), alpha=0.0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(ds, epochs=epochs, verbose=verbose)
    return model
