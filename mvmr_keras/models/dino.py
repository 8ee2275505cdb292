"""DINO: a student and its EMA teacher, trained on multi-crop views.

`DINO.fit` takes batches `{"global_crops": (B, 2, G, G, 3), "local_crops":
(B, N, L, L, 3)}` of [0, 255] images (`mvmr_keras.data.multicrop_views`).
Each step:

1. the student (encoder + `DINOHead`) embeds the global crops and the
   local crops in two calls (BatchNorm never mixes resolutions), the
   teacher the global crops only; both run in training mode (BatchNorm on
   batch statistics), the teacher with no gradient;
2. the loss is `dino_loss.dino_loss` with the centre and this epoch's
   teacher temperature; then the centre moves (momentum 0.9) towards the
   teacher outputs' mean;
3. the optimiser steps the student;
4. the teacher's parameters (not BatchNorm's moving statistics) become
   `m * teacher + (1 - m) * student`, `m = schedules.teacher_momentum`
   of the step. This happens inside the compiled train step on every
   backend: `train_step` is Keras's, followed by the EMA (on JAX, computed
   from the state Keras's step returns, so the step stays jit-compiled).

The teacher's variables are marked non-trainable (so no optimiser or
gradient touches them) while its layers stay trainable (so its BatchNorm
uses batch statistics in training mode). The evaluated and saved encoder
is the teacher's: `model.encoder` is `model.teacher`.

Logged: `loss`, `teacher_entropy` (mean entropy of the centred, sharpened
teacher targets; 0 = one-hot collapse, log K = uniform collapse),
`teacher_marginal_entropy` (entropy of their batch mean; near 0 = every
image on the same output) and `teacher_temperature`.

Example:

>>> backbone = lambda: ResNetBackbone.from_name("resnet18", width=8, image_shape=(None, None, 3))
>>> model = DINO(ImageEncoder(backbone()), ImageEncoder(backbone()),
...              DINOHead(1024, 64, 32), DINOHead(1024, 64, 32),
...              steps_per_epoch=10, total_steps=100)
>>> model.compile(optimizer=DistillationAdamW(1e-3))
>>> model.fit(multicrop_batches, epochs=10, steps_per_epoch=10)
"""

import keras
import numpy as np
from keras import ops

from mvmr_keras import dino_loss, distribution, schedules

GLOBAL_CROPS = "global_crops"
LOCAL_CROPS = "local_crops"


def _crop_major(crops):
    """`(B, C, H, W, 3)` -> `(C * B, H, W, 3)`, crop 0 of every image first."""
    shape = crops.shape
    return ops.reshape(ops.transpose(crops, (1, 0, 2, 3, 4)), (-1,) + tuple(shape[2:]))


class EMATeacherMixin:
    """An EMA teacher updated inside the compiled train step (DINO, MOKD).

    The model defines `ema_pairs()` (`(student variable, teacher variable)`
    for every student parameter), a non-trainable int32 `step_counter`,
    `total_steps` and `teacher_momentum` (m0 of the cosine to 1). After
    Keras's own train step, every teacher parameter becomes `m * teacher +
    (1 - m) * student`; on JAX from the state the step returns, so it stays
    jit-compiled.
    """

    def copy_students_to_teachers(self):
        """Every teacher variable becomes a copy of its student's and stops
        being trainable (its layers stay trainable, so BatchNorm uses batch
        statistics in training mode)."""
        student_weights, teacher_weights = self._student_and_teacher_weights()
        if [tuple(v.shape) for v in student_weights] != [tuple(v.shape) for v in teacher_weights]:
            raise ValueError("the student and the teacher must have the same architecture")
        for s, t in zip(student_weights, teacher_weights):
            # A copy, not a shared buffer (JAX donates each variable's own).
            t.assign(np.array(keras.ops.convert_to_numpy(s)))
            t.trainable = False

    def ema_pairs(self):
        """`(student variable, teacher variable)` for every student parameter
        (BatchNorm's moving statistics and a frozen gain are not parameters)."""
        return [(s, t) for s, t in zip(*self._student_and_teacher_weights()) if s.trainable]

    def current_teacher_momentum(self, step):
        return schedules.teacher_momentum(step, self.total_steps, self.teacher_momentum)

    def _ema(self, momentum, teacher_value, student_value):
        momentum = ops.cast(momentum, teacher_value.dtype)
        return momentum * teacher_value + (1.0 - momentum) * ops.stop_gradient(
            ops.cast(student_value, teacher_value.dtype))

    if keras.backend.backend() == "jax":

        def train_step(self, state, data):
            logs, state = super().train_step(state, data)
            trainable, non_trainable, optimizer_variables, metrics_variables = state
            trainable_index = {id(v): i for i, v in enumerate(self.trainable_variables)}
            non_trainable_index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
            non_trainable = list(non_trainable)
            step_at = non_trainable_index[id(self.step_counter)]
            momentum = self.current_teacher_momentum(non_trainable[step_at])
            for s, t in self.ema_pairs():
                at = non_trainable_index[id(t)]
                non_trainable[at] = self._ema(momentum, non_trainable[at],
                                              trainable[trainable_index[id(s)]])
            non_trainable[step_at] = non_trainable[step_at] + 1
            return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    else:

        def train_step(self, data):
            logs = super().train_step(data)
            self.update_teacher()
            return logs

    def update_teacher(self):
        """One EMA step of the teacher's parameters (TensorFlow, PyTorch, or eager)."""
        momentum = self.current_teacher_momentum(ops.convert_to_tensor(self.step_counter))
        for s, t in self.ema_pairs():
            t.assign(self._ema(momentum, ops.convert_to_tensor(t), ops.convert_to_tensor(s)))
        self.step_counter.assign(self.step_counter + 1)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class DINO(EMATeacherMixin, keras.Model):
    """Self-distillation with no labels (module docstring).

    Args:
        student, teacher: two encoders of the same architecture (`[0, 255]`
            images of any size -> features), e.g. `ImageEncoder`s; the
            teacher starts as a copy of the student (made in `build`).
            The teacher ViT should have no drop-path.
        student_head, teacher_head: two `DINOHead`s of the same sizes.
        student_temperature: tau_s (0.1).
        teacher_temperature: tau_t after the warm-up (0.07 in DINO's README).
        warmup_teacher_temperature: tau_t at epoch 0 (0.04).
        warmup_teacher_temperature_epochs: epochs of the linear warm-up.
        center_momentum: of the centre's running mean (0.9).
        teacher_momentum: m0 of the EMA's cosine to 1 (0.996).
        steps_per_epoch, total_steps: of the run (epochs and the EMA's
            cosine are counted in steps).
    """

    def __init__(self, student, teacher, student_head, teacher_head,
                 student_temperature=0.1, teacher_temperature=0.07,
                 warmup_teacher_temperature=0.04, warmup_teacher_temperature_epochs=0,
                 center_momentum=0.9, teacher_momentum=0.996, steps_per_epoch=1,
                 total_steps=1, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.student_head = student_head
        self.teacher_head = teacher_head
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.warmup_teacher_temperature_epochs = int(warmup_teacher_temperature_epochs)
        self.center_momentum = float(center_momentum)
        self.teacher_momentum = float(teacher_momentum)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.total_steps = max(int(total_steps), 1)
        self.term_names = ["teacher_entropy", "teacher_marginal_entropy", "teacher_temperature"]
        self.term_trackers = [keras.metrics.Mean(name=n) for n in self.term_names]

    @property
    def encoder(self):
        """The evaluated, saved encoder: the teacher's."""
        return self.teacher

    def build(self, input_shape=None):
        for encoder in (self.student, self.teacher):
            if not encoder.built:
                encoder.build((None, None, None, 3))
        dim = self.student.output_shape[-1]
        for head in (self.student_head, self.teacher_head):
            if not head.built:
                head.build((None, dim))
        self.centre = self.add_weight(shape=(self.student_head.out_dim,), initializer="zeros",
                                      trainable=False, name="centre")
        self.step_counter = self.add_weight(shape=(), initializer="zeros", dtype="int32",
                                            trainable=False, name="step_counter")
        # The teacher starts as the student (a checkpoint may override).
        self.copy_students_to_teachers()
        self.built = True

    def _student_and_teacher_weights(self):
        return (self.student.weights + self.student_head.weights,
                self.teacher.weights + self.teacher_head.weights)

    # -- forward

    def call(self, inputs, training=None):
        """A multi-crop batch -> `{"student": (2 + N, B, K), "teacher": (2, B, K)}`
        logits; a plain image batch -> the teacher encoder's features."""
        if not isinstance(inputs, dict):
            return self.teacher(inputs, training=training)
        global_crops = inputs[GLOBAL_CROPS]
        num_global = global_crops.shape[1]
        features = [self.student(_crop_major(global_crops), training=training)]
        local_crops = inputs.get(LOCAL_CROPS)
        num_local = 0 if local_crops is None else local_crops.shape[1]
        if num_local:
            features.append(self.student(_crop_major(local_crops), training=training))
        student = self.student_head(ops.concatenate(features, axis=0), training=training)
        teacher = self.teacher_head(
            self.teacher(_crop_major(global_crops), training=training), training=training)
        k = self.student_head.out_dim
        return {
            "student": ops.reshape(student, (num_global + num_local, -1, k)),
            "teacher": ops.stop_gradient(ops.reshape(teacher, (num_global, -1, k))),
        }

    def current_teacher_temperature(self):
        epoch = ops.floor_divide(ops.convert_to_tensor(self.step_counter), self.steps_per_epoch)
        return dino_loss.teacher_temperature(
            epoch, self.warmup_teacher_temperature, self.teacher_temperature,
            self.warmup_teacher_temperature_epochs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            raise ValueError(
                "DINO trains on multi-crop batches {'global_crops': (B, 2, G, G, 3), "
                "'local_crops': (B, N, L, L, 3)} (mvmr_keras.data.multicrop_views)"
            )
        # TensorFlow replicas: the loss and the centre over the global batch,
        # the same on every replica (`distribution.gather_replicas`).
        y_pred = distribution.gather_replicas(y_pred, axis=1)
        temperature = self.current_teacher_temperature()
        loss = dino_loss.dino_loss(y_pred["student"], y_pred["teacher"], self.centre,
                                   self.student_temperature, temperature)
        targets = dino_loss.teacher_probabilities(y_pred["teacher"], self.centre, temperature)
        terms = {
            "teacher_entropy": dino_loss.entropy(targets),
            "teacher_marginal_entropy": dino_loss.marginal_entropy(targets),
            "teacher_temperature": temperature,
        }
        for tracker in self.term_trackers:
            tracker.update_state(terms[tracker.name])
        if training:  # after the loss, as DINO
            self.centre.assign(dino_loss.updated_centre(
                self.centre, y_pred["teacher"], self.center_momentum))
        return loss / distribution.replicas_in_sync()

    # -- serialisation

    def get_config(self):
        config = super().get_config()
        for key in ("student", "teacher", "student_head", "teacher_head"):
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        config.update(
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
            warmup_teacher_temperature=self.warmup_teacher_temperature,
            warmup_teacher_temperature_epochs=self.warmup_teacher_temperature_epochs,
            center_momentum=self.center_momentum,
            teacher_momentum=self.teacher_momentum,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "student_head", "teacher_head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
