"""The MV-MR model: one encoder + projector trained on two views.

`MVMR.fit` takes a dataset of `(original_view, augmented_view)` batches of
images with pixel values in [0, 255]. Keras unpacks such a pair as `(x, y)`,
and this model uses that: `call(x)` embeds the original view and
`compute_loss` embeds the augmented view `y`, computes the representations
of the original view, and returns the MV-MR loss. Everything backend
specific (gradient tape, `jax.grad`, `loss.backward()`, loss scaling for
mixed precision) is Keras's own `train_step`, unchanged.

Example:

>>> backbone = ResNetBackbone.from_name("resnet18", width=8)
>>> model = MVMR(ImageEncoder(backbone), projector="64-64",
...              representations=[representations.get("pixels")])
>>> model.compile(optimizer="adam")
>>> views = (np.random.uniform(0, 255, (16, 32, 32, 3)),) * 2
>>> history = model.fit(*views, batch_size=8, epochs=1)
>>> sorted(history.history)
['dcor_pixels', 'dcor_zz', 'loss', 'mse', 'std']

Distillation (spec section 6) adds `1 - dCor(z~, t(x))` for a frozen teacher
`t`, logged as `dcor_teacher`. The teacher embedding comes either from a
teacher layer the model runs on the original view, or, precomputed, as the
third element of each batch, `(original, augmented, teacher_embedding)`:

>>> teacher = CLIPTeacher("/presets/clip_vit_base_patch16")
>>> live = MVMR(encoder, projector="64-64", teacher=teacher)
>>> cached = MVMR(encoder, projector="64-64", teacher_weight=1.0)
>>> cached.fit(tf.data.Dataset.from_tensor_slices(
...     (original, augmented, teacher.predict(original))).batch(8))

Keras unpacks a batch's third element as `sample_weight`; MVMR has no use
for sample weights and reads it as the teacher embedding instead.

Several teachers (`teachers={name: layer or None}`, `teacher_weights={name:
w}`) each add `w (1 - dCor(z~, t_k(x)))`, logged as `dcor_teacher_<name>`;
a teacher given as `None` brings its embeddings precomputed, in a dict
`{name: embedding}` as the batch's third element:

>>> model = MVMR(encoder, projector="64-64", teachers={"clip": None, "dino": None},
...              teacher_weights={"clip": 1.0, "dino": 0.5})
>>> model.fit(tf.data.Dataset.from_tensor_slices(
...     (original, augmented, {"clip": t_clip, "dino": t_dino})).batch(8))
"""

import re

import keras

from mvmr_keras import distribution, losses
from mvmr_keras.models.projector import Projector


def _empty_dict(value):
    return isinstance(value, dict) and not value


@keras.saving.register_keras_serializable(package="mvmr_keras")
class MVMR(keras.Model):
    """Multi-view, multi-representation self-supervised model.

    Args:
        encoder: an `ImageEncoder` ([0, 255] images -> features `h`); the
            part to keep after training (`model.encoder`).
        projector: a `Projector`, or its sizes (`"8192-8192-8192"`).
        representations: representation layers r_k applied to the
            normalised original view (see `mvmr_keras.representations`).
        representation_weights: one weight w_k per representation
            (default 1 each).
        representation_objective: `"maximize"` (the paper's T(d) = 1 - d,
            default) or `"minimize"` (T(d) = d, what the reference code
            runs); spec section 2.1.
        variance_margin: m of the variance hinge.
        teacher: optional frozen layer `t` ([0, 255] images -> `(B, D_t)`,
            e.g. a `CLIPTeacher`) run on the original view when a batch
            brings no precomputed teacher embedding. It is saved with the
            model, never with `model.encoder`.
        teacher_weight: weight of the teacher term `1 - dCor(z~, t(x))`;
            `None` (default) means 1 with a teacher and no term without
            one. A float without a teacher: every batch must carry the
            precomputed embedding as its third element.
        teachers: several teachers instead of `teacher`: a dict name ->
            frozen layer, or `None` for a teacher whose embeddings the
            batches bring (a dict name -> `(B, D_k)` as third element).
            Names are lower-case identifiers; the live layers are saved
            with the model.
        teacher_weights: dict name -> weight of each of `teachers` (default
            1 each).
    """

    def __init__(
        self,
        encoder,
        projector="8192-8192-8192",
        representations=(),
        representation_weights=None,
        representation_objective="maximize",
        variance_margin=1.0,
        teacher=None,
        teacher_weight=None,
        teachers=None,
        teacher_weights=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if representation_objective not in losses.REPRESENTATION_OBJECTIVES:
            raise ValueError(
                f"Unknown representation_objective "
                f"{representation_objective!r}; expected one of "
                f"{losses.REPRESENTATION_OBJECTIVES}."
            )
        representations = list(representations)
        if representation_weights is None:
            representation_weights = [1.0] * len(representations)
        if len(representation_weights) != len(representations):
            raise ValueError(
                f"Got {len(representation_weights)} representation weights "
                f"for {len(representations)} representations."
            )
        if not isinstance(projector, keras.layers.Layer):
            projector = Projector(projector, dtype=self.dtype_policy)
        self.encoder = encoder
        self.projector = projector
        self.representations = representations
        self.representation_weights = [float(w) for w in representation_weights]
        self.representation_objective = representation_objective
        self.variance_margin = float(variance_margin)
        if teacher_weight is None and teacher is not None:
            teacher_weight = 1.0
        self.teacher = teacher
        self.teacher_weight = None if teacher_weight is None else float(teacher_weight)
        teachers = dict(teachers or {})
        teacher_weights = dict(teacher_weights or {})
        if teachers and self.teacher_weight is not None:
            raise ValueError(
                "Give either teacher/teacher_weight (one teacher) or teachers "
                "(several), not both."
            )
        for name in teachers:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
                raise ValueError(
                    f"Teacher name {name!r} must be a lower-case identifier "
                    "(letters, digits, underscores); it names dcor_teacher_<name>."
                )
        unknown = set(teacher_weights) - set(teachers)
        if unknown:
            raise ValueError(f"Weights given for unknown teachers {sorted(unknown)}.")
        self.teacher_names = list(teachers)
        self.teacher_weights = {n: float(teacher_weights.get(n, 1.0)) for n in teachers}
        # The live teachers only: Keras tracks (and saves) the layers in it.
        self.teachers = {n: layer for n, layer in teachers.items() if layer is not None}
        # One running mean per loss term; Keras's own tracker logs `loss`.
        self.term_names = ["mse", "std", "dcor_zz"] + [
            f"dcor_{layer.name}" for layer in representations
        ] + (["dcor_teacher"] if self.teacher_weight is not None else []) + [
            f"dcor_teacher_{name}" for name in self.teacher_names
        ]
        self.term_trackers = [keras.metrics.Mean(name=n) for n in self.term_names]

    def build(self, input_shape):
        # Sublayers deserialised from a `.keras` file arrive already built.
        for layer, shape in [
            (self.encoder, input_shape),
            (self.projector, (None, self.encoder.output_dim)),
        ] + [(layer, input_shape) for layer in self.representations] + (
            [(self.teacher, input_shape)] if self.teacher is not None else []
        ) + [(layer, input_shape) for layer in self.teachers.values()]:
            if not layer.built:
                layer.build(shape)
        self.built = True

    def call(self, images, training=None):
        """Embeddings `z = g(f(images))` of a batch of [0, 255] images."""
        return self.projector(self.encoder(images, training=training),
                              training=training)

    def compute_terms(self, original, augmented, z=None, training=None,
                      teacher_embeddings=None):
        """All loss terms for one batch of views, as a dict of scalars.

        `teacher_embeddings` (`(B, D_t)`, precomputed t(original)) takes the
        place of running `self.teacher`; with several `teachers`, a dict
        name -> `(B, D_k)` (or a tuple in the order of the teachers without
        a layer) takes the place of running theirs.
        """
        if z is None:
            z = self(original, training=training)
        z_aug = self(augmented, training=training)
        normalized = self.encoder.normalize(original)
        features = {layer.name: layer(normalized) for layer in self.representations}
        weights = {
            layer.name: w
            for layer, w in zip(self.representations, self.representation_weights)
        }
        if self.teacher_names:
            several = self._several_teacher_embeddings(original, teacher_embeddings)
            teacher_embeddings = None
        else:
            several = None
        if self.teacher_weight is not None and teacher_embeddings is None:
            if self.teacher is None:
                raise ValueError(
                    "This MVMR has a teacher term but no teacher layer; feed "
                    "batches (original, augmented, teacher_embedding) with "
                    "precomputed embeddings (mvmr_keras.teachers.cache)."
                )
            teacher_embeddings = self.teacher(original, training=False)
        if self.teacher_weight is None and teacher_embeddings is not None:
            raise ValueError(
                "The batch carries a third element (a teacher embedding) but "
                "this MVMR has no teacher term; build it with teacher_weight."
            )
        # Under a TensorFlow strategy each replica holds a slice of the
        # batch; distance correlation is not a mean over samples, so every
        # term is computed on the whole (gathered) batch. No-op otherwise.
        parts = {"z": z, "z_aug": z_aug, "features": features,
                 "teacher": teacher_embeddings, "teachers": several}
        parts.update(distribution.gather_replicas(
            {k: v for k, v in parts.items() if v is not None and not _empty_dict(v)}))
        return losses.mvmr_loss(
            parts["z"],
            parts["z_aug"],
            parts["features"],
            weights,
            objective=self.representation_objective,
            variance_margin=self.variance_margin,
            teacher=parts["teacher"],
            teacher_weight=self.teacher_weight or 0.0,
            teachers=parts["teachers"],
            teacher_weights=self.teacher_weights,
        )

    def _several_teacher_embeddings(self, original, given):
        """`{name: (B, D_k)}` for every teacher: the live ones run here, the
        others come from `given` (a dict, or a tuple in their order)."""
        cached = [n for n in self.teacher_names if n not in self.teachers]
        if given is None:
            given = {}
        elif not isinstance(given, dict):
            given = list(given) if isinstance(given, (tuple, list)) else [given]
            if len(given) != len(cached):
                raise ValueError(
                    f"The batch brings {len(given)} teacher embeddings for the "
                    f"{len(cached)} teachers without a layer {cached}."
                )
            given = dict(zip(cached, given))
        missing = [n for n in cached if n not in given]
        if missing:
            raise ValueError(
                f"Teachers {missing} have no layer and the batch brings no embedding "
                "for them; feed (original, augmented, {name: embedding}) batches "
                "(mvmr_keras.teachers.cache)."
            )
        unknown = sorted(set(given) - set(cached))
        if unknown:
            raise ValueError(
                f"The batch brings embeddings of {unknown}, which are not teachers "
                f"without a layer of this MVMR ({cached})."
            )
        return {
            name: given[name] if name in given
            else self.teachers[name](original, training=False)
            for name in self.teacher_names
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        # Called by Keras's train_step/test_step with x = original view,
        # y = augmented view and y_pred = self(x); a batch's third element,
        # which Keras calls sample_weight, is the precomputed teacher
        # embedding of the original view.
        if y is None:
            raise ValueError(
                "MVMR trains on (original_view, augmented_view) pairs; the "
                "batch had no augmented view. Feed a dataset of pairs, e.g. "
                "from mvmr_keras.data.views()."
            )
        terms = self.compute_terms(x, y, z=y_pred, training=training,
                                   teacher_embeddings=sample_weight)
        for tracker in self.term_trackers:
            tracker.update_state(terms[tracker.name])
        # Every replica holds the same whole-batch loss; the all-gather's
        # gradient and the optimiser each sum over replicas, so dividing by
        # their number gives the one-device gradient (and Keras's loss
        # tracker multiplies back: the logged loss is the true one).
        return terms["loss"] / distribution.replicas_in_sync()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projector": keras.saving.serialize_keras_object(self.projector),
                "representations": [
                    keras.saving.serialize_keras_object(layer)
                    for layer in self.representations
                ],
                "representation_weights": self.representation_weights,
                "representation_objective": self.representation_objective,
                "variance_margin": self.variance_margin,
                "teacher": (
                    None if self.teacher is None
                    else keras.saving.serialize_keras_object(self.teacher)
                ),
                "teacher_weight": self.teacher_weight,
                "teachers": {
                    name: (keras.saving.serialize_keras_object(self.teachers[name])
                           if name in self.teachers else None)
                    for name in self.teacher_names
                },
                "teacher_weights": dict(self.teacher_weights),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projector"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["teachers"] = {
            name: None if c is None else keras.saving.deserialize_keras_object(c)
            for name, c in (config.get("teachers") or {}).items()
        }
        config["representations"] = [
            keras.saving.deserialize_keras_object(c)
            for c in config["representations"]
        ]
        return cls(**config)
