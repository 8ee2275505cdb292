"""MOKD: two models (a CNN and a ViT by default) that teach each other.

Each of the two models has a student and an EMA teacher (DINO's, the
same momentum cosine, updated inside the compiled train step:
`dino.EMATeacherMixin`), a DINO head on its pooled feature (the CNN's
average-pooled map, the ViT's CLS token) and a T-Head
(`TransformerHead`) on its spatial tokens (the CNN's last feature map
through a 1x1 convolution, the ViT's patch tokens).

`MOKD.fit` takes DINO's multi-crop batches `{"global_crops": (B, 2, G, G,
3), "local_crops": (B, N, L, L, 3)}`. Each step, for every model A of the
pair (A, B) (`mokd_loss`):

1. the students see the global and the local crops in two calls (BatchNorm
   never mixes resolutions), the teachers the global crops; teachers run
   in training mode and give no gradient;
2. the cross-attention feature search: teacher B's T-Head runs over its
   tokens of global view 0 (once per local crop of A), with A's detached
   query for that crop prepended (the CNN's pooled T-Head projection, the
   ViT's CLS token);
3. `L_A = L_sm + L_st + lambda_A (L_cm + L_ct)`, each term with the teacher
   temperature of its own warm-up (`self_warmup_epochs[A]` for A's own
   terms, `cross_warmup_epochs` for both cross terms); the centres then
   move (after the loss, as DINO);
4. one backward pass of `L_A + L_B`: every target and query is detached,
   so A's student gets exactly the gradient of `L_A` and B's that of
   `L_B`; a `GroupedOptimizer` steps each model's variables with its own
   optimiser (the groups are given by `optimizer_groups`, names of
   `variable_groups()`); then both EMAs.

The evaluated and saved encoders are the teachers' (`encoders()`);
`encoder` is model `evaluated`'s (0, the CNN, by default).

Logged: `loss` (the sum), and per model NAME: `NAME_loss`, its four terms
`NAME_self_mlp`, `NAME_self_thead`, `NAME_cross_mlp`, `NAME_cafs`, and
`NAME_teacher_entropy` (of its centred, sharpened MLP targets).

Example:

>>> model = MOKD(["cnn", "vit"], students, teachers, heads, teacher_heads, theads,
...              teacher_theads, cross_weights=(1.0, 0.1), self_warmup_epochs=(5, 3),
...              cross_warmup_epochs=3, steps_per_epoch=10, total_steps=100,
...              optimizer_groups=[["cnn"], ["cnn_thead"], ["vit", "vit_thead"]])
>>> model.compile(optimizer=GroupedOptimizer([sgd, sgd_thead, adamw]))
>>> model.fit(multicrop_batches, epochs=10, steps_per_epoch=10)
"""

import types

import keras
from keras import ops

from mvmr_keras import dino_loss, distribution, mokd_loss
from mvmr_keras.models.dino import GLOBAL_CROPS, LOCAL_CROPS, EMATeacherMixin, _crop_major
from mvmr_keras.models.vit import VisionTransformerBackbone
from mvmr_keras.optimizers import GroupedOptimizer

_PARTS = ("students", "teachers", "student_heads", "teacher_heads", "student_theads",
          "teacher_theads")


def is_vit_encoder(encoder):
    return isinstance(encoder.backbone, VisionTransformerBackbone)


@keras.saving.register_keras_serializable(package="mvmr_keras")
class MOKD(EMATeacherMixin, keras.Model):
    """Multi-mode online knowledge distillation (module docstring).

    Args:
        names: the two models' names (`("cnn", "vit")`), used in the logs,
            the variable groups and the saved encoders' file names.
        students, teachers: two `ImageEncoder`s each (index 0, index 1);
            each teacher the student's architecture (a ViT teacher without
            drop-path), a copy of it at `build`.
        student_heads, teacher_heads: `DINOHead`s, the same K for all.
        student_theads, teacher_theads: `TransformerHead`s of that K; a
            ViT's takes its tokens (width = the ViT's), a CNN's projects its
            map to the other's width, so each model's query fits the
            other's T-Head.
        cross_weights: lambda of each model (reference: CNN 1.0, ViT 0.1).
        self_warmup_epochs: teacher-temperature warm-up of each model's own
            two losses (reference: CNN 50, ViT 30).
        cross_warmup_epochs: of every cross loss (30).
        student_temperature, teacher_temperature,
        warmup_teacher_temperature, center_momentum, teacher_momentum,
        steps_per_epoch, total_steps: as `DINO`.
        optimizer_groups: for a `GroupedOptimizer`, the names of
            `variable_groups()` each of its optimisers steps.
        evaluated: the index of the model whose teacher is `encoder`.
    """

    def __init__(self, names, students, teachers, student_heads, teacher_heads, student_theads,
                 teacher_theads, cross_weights=(1.0, 1.0), self_warmup_epochs=(0, 0),
                 cross_warmup_epochs=0, student_temperature=0.1, teacher_temperature=0.07,
                 warmup_teacher_temperature=0.04, center_momentum=0.9, teacher_momentum=0.996,
                 steps_per_epoch=1, total_steps=1, optimizer_groups=None, evaluated=0, **kwargs):
        super().__init__(**kwargs)
        parts = dict(students=students, teachers=teachers, student_heads=student_heads,
                     teacher_heads=teacher_heads, student_theads=student_theads,
                     teacher_theads=teacher_theads)
        for key, value in parts.items():
            if len(value) != 2:
                raise ValueError(f"MOKD trains two models; got {len(value)} {key}")
        if len(names) != 2 or len(set(names)) != 2:
            raise ValueError(f"MOKD needs two different model names; got {names}")
        self.names = [str(n) for n in names]
        self.students = list(students)
        self.teachers = list(teachers)
        self.student_heads = list(student_heads)
        self.teacher_heads = list(teacher_heads)
        self.student_theads = list(student_theads)
        self.teacher_theads = list(teacher_theads)
        self.cross_weights = [float(w) for w in cross_weights]
        self.self_warmup_epochs = [int(e) for e in self_warmup_epochs]
        self.cross_warmup_epochs = int(cross_warmup_epochs)
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.center_momentum = float(center_momentum)
        self.teacher_momentum = float(teacher_momentum)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.total_steps = max(int(total_steps), 1)
        self.optimizer_groups = None if optimizer_groups is None else [
            list(g) for g in optimizer_groups]
        if int(evaluated) not in (0, 1):
            raise ValueError(f"evaluated must be 0 or 1; got {evaluated}")
        self.evaluated = int(evaluated)
        self.term_names = [f"{name}_{term}" for name in self.names
                           for term in ("loss",) + mokd_loss.TERMS + ("teacher_entropy",)]
        self.term_trackers = [keras.metrics.Mean(name=n) for n in self.term_names]
        # Sub-models sharing the CNNs' layers (their last feature map); kept
        # out of Keras's tracking, which would count their weights twice.
        self._untracked = types.SimpleNamespace(feature_maps={})

    # -- parts

    @property
    def encoder(self):
        """The evaluated, saved encoder: model `evaluated`'s teacher."""
        return self.teachers[self.evaluated]

    def encoders(self):
        """`{name: teacher encoder}` of both models, the evaluated one first."""
        order = [self.evaluated, 1 - self.evaluated]
        return {self.names[i]: self.teachers[i] for i in order}

    def is_vit(self, index):
        return is_vit_encoder(self.students[index])

    def _track_variables(self):
        # PyTorch only (Keras's TorchLayer): makes every variable a torch
        # parameter. Keras keys them by path, which the two students, two
        # teachers and their heads share; and the layers, kept in lists, are
        # not torch submodules. So most variables went untracked, torch's
        # `zero_grad` (Keras's train step) skipped them, and their gradients
        # added up over the steps.
        import torch

        self._torch_params = torch.nn.ParameterDict(
            {str(index): variable.value for index, variable in enumerate(self.variables)})

    def build(self, input_shape=None):
        for index in range(2):
            for encoder in (self.students[index], self.teachers[index]):
                if not encoder.built:
                    encoder.build((None, None, None, 3))
            dim = self.students[index].output_shape[-1]
            for head in (self.student_heads[index], self.teacher_heads[index]):
                if not head.built:
                    head.build((None, dim))
            for head in (self.student_theads[index], self.teacher_theads[index]):
                if not head.built:
                    head.build()
        out_dims = {h.out_dim for h in self.student_heads + self.student_theads}
        if len(out_dims) != 1:
            raise ValueError(f"every head of both models must have the same K; got {out_dims}")
        for index in range(2):
            width = self.student_theads[1 - index].dim
            query = (self.students[index].backbone.hidden_dim if self.is_vit(index)
                     else self.student_theads[index].dim)
            if query != width:
                raise ValueError(
                    f"model {self.names[index]}'s query ({query} wide) does not fit "
                    f"{self.names[1 - index]}'s T-Head ({width} wide)")
        k = self.student_heads[0].out_dim
        self.mlp_centres = [self.add_weight(shape=(k,), initializer="zeros", trainable=False,
                                            name=f"{n}_mlp_centre") for n in self.names]
        self.thead_centres = [self.add_weight(shape=(k,), initializer="zeros", trainable=False,
                                              name=f"{n}_thead_centre") for n in self.names]
        self.step_counter = self.add_weight(shape=(), initializer="zeros", dtype="int32",
                                            trainable=False, name="step_counter")
        self.copy_students_to_teachers()
        self.built = True

    def _student_and_teacher_weights(self):
        students, teachers = [], []
        for index in range(2):
            for side, parts in ((students, ("students", "student_heads", "student_theads")),
                                (teachers, ("teachers", "teacher_heads", "teacher_theads"))):
                for part in parts:
                    side.extend(getattr(self, part)[index].weights)
        return students, teachers

    def variable_groups(self):
        """`{NAME: the student's and its DINO head's trainable variables,
        NAME_thead: its T-Head's}` for both models."""
        groups = {}
        for index, name in enumerate(self.names):
            groups[name] = (self.students[index].trainable_variables
                            + self.student_heads[index].trainable_variables)
            groups[f"{name}_thead"] = self.student_theads[index].trainable_variables
        return groups

    def compile(self, optimizer="rmsprop", **kwargs):
        optimizer = keras.optimizers.get(optimizer)
        grouped = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
        if isinstance(grouped, GroupedOptimizer):
            if self.optimizer_groups is None:
                raise ValueError("a GroupedOptimizer needs the model's optimizer_groups")
            groups = self.variable_groups()
            unknown = {n for g in self.optimizer_groups for n in g} - set(groups)
            if unknown:
                raise ValueError(f"unknown variable groups {sorted(unknown)}; the model has "
                                 f"{sorted(groups)}")
            grouped.set_groups([[v for n in names for v in groups[n]]
                                for names in self.optimizer_groups])
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips a custom compile when loading; this one must run (it
        # gives the grouped optimiser its groups).
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # -- forward

    def _feature_map(self, encoder):
        """A CNN encoder's backbone up to its last feature map (before pooling)."""
        maps = self._untracked.feature_maps
        if id(encoder) not in maps:
            backbone = encoder.backbone
            maps[id(encoder)] = keras.Model(backbone.inputs,
                                            backbone.get_layer("avg_pool").input)
        return maps[id(encoder)]

    def _features(self, encoder, thead, images, training):
        """`(pooled feature (B, d), T-Head tokens (B, N, D) with positions,
        CAFS query (B, D))` of crops `(B, H, W, 3)`."""
        x = encoder.normalize(images)
        if is_vit_encoder(encoder):
            backbone = encoder.backbone
            tokens = backbone.tokens(x, training=training)
            grid = ops.reshape(tokens["patches"], (-1, images.shape[1] // backbone.patch_size,
                                                   images.shape[2] // backbone.patch_size,
                                                   backbone.hidden_dim))
            head_tokens, _ = thead.embed(grid)
            return tokens["cls"], head_tokens, tokens["cls"]
        feature_map = self._feature_map(encoder)(x, training=training)
        head_tokens, query = thead.embed(feature_map)
        return ops.mean(feature_map, axis=(1, 2)), head_tokens, query

    def call(self, inputs, training=None):
        """A multi-crop batch -> `{"student_mlp", "student_thead": [(2 + N, B,
        K)] * 2, "teacher_mlp", "teacher_thead": [(2, B, K)] * 2, "search":
        [(N, B, K)] * 2}` (`search[i]`: teacher i's T-Head with the other
        student's queries); a plain image batch -> the evaluated teacher's
        features."""
        if not isinstance(inputs, dict):
            return self.encoder(inputs, training=training)
        global_crops = _crop_major(inputs[GLOBAL_CROPS])
        num_global = inputs[GLOBAL_CROPS].shape[1]
        local_crops = inputs.get(LOCAL_CROPS)
        num_local = 0 if local_crops is None else local_crops.shape[1]
        if num_local:
            local_crops = _crop_major(local_crops)
        k = self.student_heads[0].out_dim
        out = {key: [] for key in ("student_mlp", "student_thead", "teacher_mlp",
                                   "teacher_thead", "search")}
        queries = []
        for index in range(2):
            student, head, thead = (self.students[index], self.student_heads[index],
                                    self.student_theads[index])
            pooled, tokens, _ = self._features(student, thead, global_crops, training)
            pooled, thead_logits = [pooled], [thead.head(tokens, training=training)]
            if num_local:
                local_pooled, local_tokens, query = self._features(
                    student, thead, local_crops, training)
                pooled.append(local_pooled)
                thead_logits.append(thead.head(local_tokens, training=training))
                queries.append(ops.stop_gradient(query))
            mlp = head(ops.concatenate(pooled, axis=0), training=training)
            out["student_mlp"].append(ops.reshape(mlp, (num_global + num_local, -1, k)))
            out["student_thead"].append(ops.reshape(ops.concatenate(thead_logits, axis=0),
                                                    (num_global + num_local, -1, k)))
        for index in range(2):
            teacher, head, thead = (self.teachers[index], self.teacher_heads[index],
                                    self.teacher_theads[index])
            pooled, tokens, _ = self._features(teacher, thead, global_crops, training)
            mlp = head(pooled, training=training)
            out["teacher_mlp"].append(ops.stop_gradient(ops.reshape(mlp, (num_global, -1, k))))
            logits = thead.head(tokens, training=training)
            out["teacher_thead"].append(ops.stop_gradient(
                ops.reshape(logits, (num_global, -1, k))))
            if num_local:
                # Global view 0's tokens, once per local crop of the other
                # student: row j * B + i pairs local crop j of image i with
                # global view 0 of image i.
                view0 = ops.reshape(tokens, (num_global, -1) + tuple(tokens.shape[1:]))[0]
                searched = thead.head(ops.tile(view0, (num_local, 1, 1)),
                                      query=queries[1 - index], training=training)
                out["search"].append(ops.stop_gradient(
                    ops.reshape(searched, (num_local, -1, k))))
        return out

    # -- losses

    def teacher_temperatures(self):
        """`(self temperature of each model, cross temperature)` this epoch."""
        epoch = ops.floor_divide(ops.convert_to_tensor(self.step_counter), self.steps_per_epoch)

        def temperature(warmup_epochs):
            return dino_loss.teacher_temperature(
                epoch, self.warmup_teacher_temperature, self.teacher_temperature, warmup_epochs)

        return [temperature(e) for e in self.self_warmup_epochs], temperature(
            self.cross_warmup_epochs)

    def loss_terms(self, y_pred):
        """`[{term: scalar} of model 0, of model 1]` (`mokd_loss.TERMS`),
        with the current centres and temperatures."""
        self_temperatures, cross_temperature = self.teacher_temperatures()
        tau_s = self.student_temperature
        found = []
        for a in range(2):
            b = 1 - a
            student_mlp, student_thead = y_pred["student_mlp"][a], y_pred["student_thead"][a]
            num_global = y_pred["teacher_mlp"][a].shape[0]
            terms = {
                "self_mlp": dino_loss.dino_loss(student_mlp, y_pred["teacher_mlp"][a],
                                                self.mlp_centres[a], tau_s, self_temperatures[a]),
                "self_thead": dino_loss.dino_loss(student_thead, y_pred["teacher_thead"][a],
                                                  self.thead_centres[a], tau_s,
                                                  self_temperatures[a]),
                "cross_mlp": dino_loss.dino_loss(student_mlp, y_pred["teacher_mlp"][b],
                                                 self.mlp_centres[b], tau_s, cross_temperature),
            }
            if y_pred["search"]:
                terms["cafs"] = mokd_loss.cafs_loss(student_thead[num_global:],
                                                    y_pred["search"][b], tau_s, cross_temperature)
            else:  # no local crops: no search
                terms["cafs"] = ops.convert_to_tensor(0.0, "float32")
            found.append(terms)
        return found

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            raise ValueError(
                "MOKD trains on multi-crop batches {'global_crops': (B, 2, G, G, 3), "
                "'local_crops': (B, N, L, L, 3)} (mvmr_keras.data.multicrop_views)")
        # TensorFlow replicas: the losses and centres over the global batch,
        # the same on every replica (`distribution.gather_replicas`).
        y_pred = distribution.gather_replicas(y_pred, axis=1)
        self_temperatures, _ = self.teacher_temperatures()
        total = 0.0
        logged = {}
        for index, terms in enumerate(self.loss_terms(y_pred)):
            name = self.names[index]
            loss = mokd_loss.model_loss(terms, self.cross_weights[index])
            total = total + loss
            logged[f"{name}_loss"] = loss
            logged.update({f"{name}_{term}": value for term, value in terms.items()})
            logged[f"{name}_teacher_entropy"] = dino_loss.entropy(dino_loss.teacher_probabilities(
                y_pred["teacher_mlp"][index], self.mlp_centres[index], self_temperatures[index]))
        for tracker in self.term_trackers:
            tracker.update_state(logged[tracker.name])
        if training:  # after the loss, as DINO
            for index in range(2):
                for centres, key in ((self.mlp_centres, "teacher_mlp"),
                                     (self.thead_centres, "teacher_thead")):
                    centres[index].assign(dino_loss.updated_centre(
                        centres[index], y_pred[key][index], self.center_momentum))
        return total / distribution.replicas_in_sync()

    # -- serialisation

    def get_config(self):
        config = super().get_config()
        for key in _PARTS:
            config[key] = [keras.saving.serialize_keras_object(p) for p in getattr(self, key)]
        config.update(
            names=list(self.names),
            cross_weights=list(self.cross_weights),
            self_warmup_epochs=list(self.self_warmup_epochs),
            cross_warmup_epochs=self.cross_warmup_epochs,
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
            warmup_teacher_temperature=self.warmup_teacher_temperature,
            center_momentum=self.center_momentum,
            teacher_momentum=self.teacher_momentum,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            optimizer_groups=self.optimizer_groups,
            evaluated=self.evaluated,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in _PARTS:
            config[key] = [keras.saving.deserialize_keras_object(p) for p in config[key]]
        return cls(**config)
