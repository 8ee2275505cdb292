"""The MOKD model: its eight loss terms against a float64 NumPy restatement,
each model's loss reaching only its own student, the CAFS query, the
T-Heads at both crop sizes, one optimiser per model, frozen last layers,
and a short fit lowering both models' losses."""

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from mvmr_keras import ImageEncoder, ResNetBackbone, mokd_loss
from mvmr_keras.models.dino_head import DINOHead
from mvmr_keras.models.mokd import MOKD
from mvmr_keras.models.transformer_head import TransformerHead
from mvmr_keras.models.vit import VisionTransformerBackbone, bicubic_resize_matrix
from mvmr_keras.optimizers import DistillationAdamW, DistillationSGD, GroupedOptimizer

K, WIDTH = 32, 16


def _cnn(name):
    backbone = ResNetBackbone.from_name("resnet18", width=4, stackwise_num_blocks=(1, 1, 1, 1),
                                        small_kernel_stem=True, zero_init_residual=False,
                                        image_shape=(None, None, 3))
    return ImageEncoder(backbone, name=name)


def _vit(name, drop_path_rate=0.0):
    backbone = VisionTransformerBackbone(image_size=32, patch_size=8, hidden_dim=WIDTH,
                                         num_layers=1, num_heads=2,
                                         drop_path_rate=drop_path_rate)
    return ImageEncoder(backbone, name=name)


def _thead(name, input_dim, grid):
    return TransformerHead(K, WIDTH, grid, input_dim=input_dim, num_blocks=1, num_heads=2,
                           name=name)


def tiny_mokd(vit_drop_path_rate=0.1, **kwargs):
    """A ResNet (small stem: a 4 x 4 map of 32 px crops) and a ViT (patch 8:
    a 4 x 4 grid), K = 32."""
    kwargs.setdefault("steps_per_epoch", 2)
    kwargs.setdefault("total_steps", 100)
    kwargs.setdefault("teacher_temperature", 0.04)
    model = MOKD(
        ["cnn", "vit"], [_cnn("cnn_student"), _vit("vit_student", vit_drop_path_rate)],
        [_cnn("encoder"), _vit("encoder_vit")],
        [DINOHead(K, 16, 8, name="cnn_head"),
         DINOHead(K, 16, 8, norm_last_layer=False, name="vit_head")],
        [DINOHead(K, 16, 8, name="cnn_teacher_head"),
         DINOHead(K, 16, 8, norm_last_layer=False, name="vit_teacher_head")],
        [_thead("cnn_thead", 32, 4), _thead("vit_thead", None, 4)],
        [_thead("cnn_teacher_thead", 32, 4), _thead("vit_teacher_thead", None, 4)],
        cross_weights=(1.0, 0.1), self_warmup_epochs=(4, 2), cross_warmup_epochs=2,
        optimizer_groups=[["cnn"], ["cnn_thead"], ["vit", "vit_thead"]], **kwargs)
    model.build()
    return model


def grouped_optimizer(cnn_lr=0.05, thead_lr=1e-3, vit_lr=1e-3, freeze_steps=0, decay=True):
    wd = (1e-4, 0.04) if decay else (0.0, 0.0)
    return GroupedOptimizer([
        DistillationSGD(cnn_lr, weight_decay=wd[0], freeze_steps=freeze_steps, clipnorm=3.0,
                        name="cnn_sgd"),
        DistillationSGD(thead_lr, weight_decay=wd[1], final_weight_decay=wd[1] * 10,
                        decay_steps=10, decay_all=True, freeze_steps=freeze_steps, clipnorm=3.0,
                        name="cnn_thead_sgd"),
        DistillationAdamW(vit_lr, weight_decay=wd[1], final_weight_decay=wd[1] * 10,
                          decay_steps=10, freeze_steps=freeze_steps, clipnorm=3.0,
                          name="vit_adamw"),
    ])


def multicrop_batch(n=8, num_local=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "global_crops": rng.uniform(0, 255, (n, 2, 32, 32, 3)).astype("float32"),
        "local_crops": rng.uniform(0, 255, (n, num_local, 16, 16, 3)).astype("float32"),
    }


def forward(model, data):
    """`model(data, training=True)`; compiled on JAX, whose op-by-op eager
    run of the pair of models takes minutes on a loaded CPU."""
    if BACKEND != "jax":
        return model(data, training=True)
    import jax

    def call(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, training=True)[0]

    return jax.jit(call)([v.value for v in model.trainable_variables],
                         [v.value for v in model.non_trainable_variables], data)


def _values(variables):
    return [np.array(to_numpy(v)) for v in variables]


# -- the losses

def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _dino_np(student, teacher, centre, tau_s, tau_t):
    targets = _softmax((teacher - centre) / tau_t)
    logp = _log_softmax(student / tau_s)
    total, count = 0.0, 0
    for i in range(teacher.shape[0]):
        for j in range(student.shape[0]):
            if i != j:
                total += np.mean(-np.sum(targets[i] * logp[j], axis=-1))
                count += 1
    return total / count


def _cafs_np(student, teacher, tau_s, tau_t):
    return np.mean(-np.sum(_softmax(teacher / tau_t) * _log_softmax(student / tau_s), axis=-1))


def test_each_of_the_eight_loss_terms_equals_a_float64_restatement():
    model = tiny_mokd(warmup_teacher_temperature=0.04, teacher_temperature=0.07)
    rng = np.random.default_rng(1)
    for centre in model.mlp_centres + model.thead_centres:
        centre.assign(rng.normal(0, 0.1, (K,)).astype("float32"))
    model.step_counter.assign(2)  # epoch 1: self (4 epochs) and cross (2) warm-ups differ
    y_pred = forward(model, multicrop_batch(4, num_local=3))
    found = model.loss_terms(y_pred)
    y = {k: [np.asarray(to_numpy(t), "float64") for t in v] for k, v in y_pred.items()}
    mlp = [np.asarray(to_numpy(c), "float64") for c in model.mlp_centres]
    thead = [np.asarray(to_numpy(c), "float64") for c in model.thead_centres]
    self_tau = [0.04 + 0.03 * 1 / 3, 0.07]  # linspace(0.04, 0.07, 4)[1], linspace(.., 2)[1]
    cross_tau = 0.07
    for a, b in ((0, 1), (1, 0)):
        expected = {
            "self_mlp": _dino_np(y["student_mlp"][a], y["teacher_mlp"][a], mlp[a], 0.1,
                                 self_tau[a]),
            "self_thead": _dino_np(y["student_thead"][a], y["teacher_thead"][a], thead[a], 0.1,
                                   self_tau[a]),
            "cross_mlp": _dino_np(y["student_mlp"][a], y["teacher_mlp"][b], mlp[b], 0.1,
                                  cross_tau),
            # Teacher b's search with a's queries, against a's own local T-Head.
            "cafs": _cafs_np(y["student_thead"][a][2:], y["search"][b], 0.1, cross_tau),
        }
        for term in mokd_loss.TERMS:
            np.testing.assert_allclose(float(to_numpy(found[a][term])), expected[term],
                                       rtol=1e-5, err_msg=f"model {a} {term}")
    total = model.compute_loss(y_pred=y_pred, training=False)
    expected_total = sum(float(to_numpy(mokd_loss.model_loss(found[a], w)))
                         for a, w in ((0, 1.0), (1, 0.1)))
    np.testing.assert_allclose(float(to_numpy(total)), expected_total, rtol=1e-6)
    assert {k: len(v) for k, v in y.items()} == {k: 2 for k in y}
    assert y["search"][0].shape == (3, 4, K) and y["student_thead"][0].shape == (5, 4, K)


def _loss_gradients(model, data, index):
    """d L_index / d every trainable variable (None where it has no path)."""
    variables = model.trainable_variables

    def loss_of():
        terms = model.loss_terms(model(data, training=True))[index]
        return mokd_loss.model_loss(terms, model.cross_weights[index])

    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of()
        return [None if g is None else to_numpy(g) for g in tape.gradient(loss, variables)]
    if BACKEND == "torch":
        import torch

        loss = loss_of()
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        return [None if g is None else g.detach().cpu().numpy() for g in grads]
    import jax

    def loss_from(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return loss_of()

    grads = jax.jit(jax.grad(loss_from))([v.value for v in variables])
    return [np.asarray(g) for g in grads]


@pytest.mark.parametrize("index", [0, 1])
def test_a_models_loss_changes_no_weight_of_the_other(index):
    model = tiny_mokd()
    grads = _loss_gradients(model, multicrop_batch(4), index)
    own = {id(v) for name, group in model.variable_groups().items()
           if name.startswith(model.names[index]) for v in group}
    moved_own = 0
    for variable, grad in zip(model.trainable_variables, grads):
        if id(variable) in own:
            moved_own += grad is not None and bool(np.any(grad != 0))
        else:
            assert grad is None or not np.any(grad), variable.path
    assert moved_own > 0.9 * len(own), (moved_own, len(own))
    # Teachers are never trainable.
    trainable = {id(v) for v in model.trainable_variables}
    assert not any(id(t) in trainable for _, t in model.ema_pairs())


# -- the T-Head and the CAFS query

def test_the_thead_runs_at_both_grid_sizes_with_a_resized_position_embedding():
    head = TransformerHead(K, WIDTH, 4, input_dim=8, num_blocks=1, num_heads=2)
    head.build()
    position = to_numpy(head.position_embedding)[0].reshape(4, 4, WIDTH)
    for size in (4, 2):
        grid = np.random.default_rng(size).normal(size=(3, size, size, 8)).astype("float32")
        tokens, pooled = head.embed(grid)
        assert to_numpy(head(grid)).shape == (3, K)
        projected = to_numpy(head.projection(grid)).reshape(3, size * size, WIDTH)
        matrix = bicubic_resize_matrix(4, size)
        expected_position = np.einsum("hg,wk,gkd->hwd", matrix, matrix, position)
        np.testing.assert_allclose(to_numpy(tokens) - projected,
                                   np.broadcast_to(expected_position.reshape(-1, WIDTH),
                                                   projected.shape), rtol=1e-5, atol=1e-6)
        # The CNN query: the projected grid's mean, before the positions.
        np.testing.assert_allclose(to_numpy(pooled), projected.mean(1), rtol=1e-5, atol=1e-6)


def test_the_cafs_query_is_prepended_after_the_positions_and_left_out_of_the_mean():
    head = TransformerHead(K, WIDTH, 2, num_blocks=1, num_heads=2)
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(3, 2, 2, WIDTH)).astype("float32")
    query = rng.normal(size=(3, WIDTH)).astype("float32")
    head.build()
    # Positions as large as the tokens, so that giving one to the query shows
    # (at initialisation attention moves the outputs by ~1e-3 only).
    head.position_embedding.assign(rng.normal(size=(1, 4, WIDTH)).astype("float32"))
    got = to_numpy(head(grid, query=query))
    tokens, _ = head.embed(grid)
    # Restated from the parts: no position on the query, its output dropped.
    x = keras.ops.concatenate([query[:, None], tokens], axis=1)
    x = to_numpy(head.norm(head.blocks[0](x)))[:, 1:].mean(1)
    v = to_numpy(head.last_layer_direction)
    expected = x @ (v / np.linalg.norm(v, axis=0, keepdims=True))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # With the query given a position (the wrong way) the output differs.
    position = to_numpy(head.position_embedding)[0]
    shifted = keras.ops.concatenate([(query + position[0])[:, None], tokens], axis=1)
    wrong = to_numpy(head.norm(head.blocks[0](shifted)))[:, 1:].mean(1)
    assert not np.allclose(wrong, x, rtol=0, atol=1e-5)
    # And the query changes the patch outputs (it is attended to).
    assert not np.allclose(got, to_numpy(head(grid)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_local", [1, 3])
def test_the_search_follows_the_local_crop_count(num_local):
    model = tiny_mokd()
    y = forward(model, multicrop_batch(4, num_local=num_local))
    for index in range(2):
        assert tuple(y["search"][index].shape) == (num_local, 4, K)
        assert tuple(y["student_mlp"][index].shape) == (2 + num_local, 4, K)
    y = forward(model, multicrop_batch(4, num_local=0))
    assert y["search"] == []
    assert float(to_numpy(model.loss_terms(y)[0]["cafs"])) == 0.0


# -- optimisation

class _KeepAtEpochEnd(keras.callbacks.Callback):
    """The values of some variables at the end of each epoch."""

    def __init__(self, variables):
        super().__init__()
        self.variables = variables
        self.kept = []

    def on_epoch_end(self, epoch, logs=None):
        self.kept.append(_values(self.variables))


def test_each_step_uses_its_own_gradients_only():
    """A step taken after another equals the same step taken by a fresh model
    loaded with the state the first left. On PyTorch, Keras clears gradients
    with torch's `zero_grad`, which missed most of MOKD's variables (its
    layers sit in lists, and their paths repeat) until MOKD tracked them all:
    their gradients added up over the steps."""
    first, second = multicrop_batch(seed=1), multicrop_batch(seed=2)

    def compiled(model):
        model.compile(optimizer=GroupedOptimizer(
            [keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1)]))
        return model

    going = compiled(tiny_mokd(vit_drop_path_rate=0.0))
    going.train_on_batch(first)
    state = [np.array(w) for w in going.get_weights()]
    going.train_on_batch(second)
    fresh = tiny_mokd(vit_drop_path_rate=0.0)
    fresh.set_weights(state)
    compiled(fresh).train_on_batch(second)
    moved = 0
    for a, b, before in zip(_values(going.trainable_variables),
                            _values(fresh.trainable_variables),
                            [state[i] for i, v in enumerate(going.weights) if v.trainable]):
        moved += bool(np.any(a != before))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert moved > 0.6 * len(going.trainable_variables)
    if BACKEND == "torch":
        assert len(list(going.parameters())) == len(going.variables)


def test_mixed_precision_steps_both_models_and_lowers_their_losses():
    # float16 on TensorFlow and PyTorch (with Keras's loss scaling); bfloat16
    # on JAX, whose CPU dot has no float16 with float32 accumulation (XLA).
    policy = "mixed_bfloat16" if BACKEND == "jax" else "mixed_float16"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = tiny_mokd(vit_drop_path_rate=0.0, steps_per_epoch=2, total_steps=24)
        model.compile(optimizer=grouped_optimizer())
        assert model.students[0].compute_dtype == policy.split("_")[1]
        # Keras wraps the optimiser in its LossScaleOptimizer for float16, whose
        # scale starts at 2^15 and halves at each overflowing step: this tiny
        # model's heads need ~2^4, so 11 steps are skipped.
        history = model.fit(multicrop_batch(16), batch_size=8, epochs=12, verbose=0).history
    finally:
        keras.config.set_dtype_policy(previous)
    grouped = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    # Steps were taken (float16: all but those the loss scale skips at first).
    assert min(int(to_numpy(o.iterations)) for o in grouped.optimizers) >= 10
    for name in ("cnn", "vit"):
        losses = history[f"{name}_loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < 0.85 * losses[0], (name, losses)


def test_a_short_fit_steps_each_group_freezes_last_layers_lowers_both_losses_and_saves():
    # One fit for all of it (each MOKD fit costs a compilation): 3 epochs of
    # 2 steps, every last layer frozen during the first.
    model = tiny_mokd(steps_per_epoch=2, total_steps=6)
    model.compile(optimizer=grouped_optimizer(freeze_steps=2))
    groups = model.variable_groups()
    last = [v for v in model.trainable_variables if "last_layer" in v.name]
    # Both T-Heads' directions and gains, the DINO heads' directions, the
    # ViT head's gain (the CNN head's gain is frozen for good).
    assert len(last) == 7
    last0 = _values(last)
    keep = _KeepAtEpochEnd(last)
    history = model.fit(multicrop_batch(16), batch_size=8, epochs=3, verbose=0,
                        callbacks=[keep]).history
    for before, after_epoch_0, variable in zip(last0, keep.kept[0], last):
        np.testing.assert_array_equal(after_epoch_0, before, err_msg=variable.path)
    assert sum(not np.allclose(a, b) for a, b in zip(_values(last), last0)) >= 6
    # Each optimiser stepped its own group, every step.
    assert [int(to_numpy(o.iterations)) for o in model.optimizer.optimizers] == [6, 6, 6]
    assert [len(o._trainable_variables) for o in model.optimizer.optimizers] == [
        len(groups["cnn"]), len(groups["cnn_thead"]),
        len(groups["vit"]) + len(groups["vit_thead"])]
    for name in ("cnn", "vit"):
        losses = history[f"{name}_loss"]
        assert losses[-1] < 0.85 * losses[0], (name, losses)
    assert set(history) == {"loss"} | set(model.term_names)
    np.testing.assert_allclose(history["loss"], np.add(history["cnn_loss"], history["vit_loss"]),
                               rtol=1e-4)
    assert int(to_numpy(model.step_counter)) == 6
    assert all(np.abs(to_numpy(c)).max() > 0 for c in model.mlp_centres + model.thead_centres)
    # The whole model, its grouped optimiser included, saves and loads.
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        again = keras.saving.load_model(path)
    images = multicrop_batch(2)["global_crops"][:, 0]
    np.testing.assert_allclose(to_numpy(again.predict(images, verbose=0)),
                               to_numpy(model.predict(images, verbose=0)), rtol=1e-5, atol=1e-5)
    assert isinstance(again.optimizer, GroupedOptimizer)
    for a, b in zip(again.optimizer.variables, model.optimizer.variables):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b))
    assert list(model.encoders()) == ["cnn", "vit"] and model.encoder is model.teachers[0]
