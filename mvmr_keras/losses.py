"""The MV-MR loss: distance correlation and the three loss terms.

Every function here is a pure function of tensors written once in
`keras.ops`, so it runs unchanged on TensorFlow, JAX and PyTorch. All
statistics are computed in float32, whatever the dtype of the inputs (mixed
precision gives float16 or bfloat16 embeddings).

The terms follow section 2 of the MV-MR spec:

    L  = L1 + L2 + L3
    L1 = mean((z - z~)^2) + mean(relu(m - std(z~))) + mean(relu(m - std(z)))
    L2 = 1 - dCor(z, z~)
    L3 = sum_k w_k * T(dCor(r_k(x), z~))

and, when distilling from a frozen teacher t (spec section 6),

    L += w_t * (1 - dCor(z~, t(x)))

Example:

>>> import numpy as np
>>> from mvmr_keras import losses
>>> z = np.random.randn(16, 32).astype("float32")
>>> terms = losses.mvmr_loss(z, z + 0.1, {"pixels": np.random.rand(16, 8, 8, 3)})
>>> sorted(terms)
['dcor_pixels', 'dcor_zz', 'loss', 'mse', 'std']
"""

from keras import ops

# The two choices for the representation term T (spec section 2.1).
REPRESENTATION_OBJECTIVES = ("maximize", "minimize")

# Below this, a distance or a (co)variance is treated as exactly zero. It is
# far below what float32 resolves for unit-scale data, which is the scale
# `_standardize` brings every input to.
_TINY = 1e-12


def _flatten_float32(x, name):
    x = ops.convert_to_tensor(x)
    if len(x.shape) < 2:
        raise ValueError(
            f"distance_correlation needs inputs of rank >= 2 (batch, ...); "
            f"`{name}` has shape {tuple(x.shape)}."
        )
    batch_size = x.shape[0]
    if batch_size is not None and batch_size < 2:
        raise ValueError(
            f"distance correlation needs a batch of at least 2 samples; "
            f"`{name}` has batch size {batch_size}."
        )
    return ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))


def _standardize(x):
    """Centres the batch and scales it to unit RMS.

    Distance correlation is invariant to both, so the value is unchanged;
    doing it first keeps the Gram-matrix distances below free of float32
    cancellation and overflow whatever the scale of the features.
    """
    x = x - ops.mean(x, axis=0, keepdims=True)
    rms = ops.sqrt(ops.mean(ops.square(x)))
    return x / ops.maximum(rms, _TINY)


def _safe_sqrt(x):
    """sqrt that is exactly 0 (with a zero, not NaN, gradient) at x <= 0."""
    positive = x > _TINY
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)


def _centered_distances(x):
    """Double-centred pairwise Euclidean distance matrix of x (B, p).

    Distances come from the Gram matrix, so memory is O(B^2), never
    O(B^2 p). A sample's distance to itself is set to exactly 0: from the
    Gram matrix it is |x|^2 - 2|x|^2 + |x|^2, a float32 rounding residue
    whose square root (about 1e-3) would bias dCor low by up to 6e-5.
    """
    sq_norms = ops.sum(ops.square(x), axis=1)
    gram = ops.matmul(x, ops.transpose(x))
    sq_dist = sq_norms[:, None] - 2.0 * gram + sq_norms[None, :]
    off_diagonal = ops.logical_not(ops.eye(ops.shape(x)[0], dtype="bool"))
    # `where` (not a product with a mask) so the diagonal's gradient is
    # exactly 0 and `_safe_sqrt` never sees the residue.
    dist = _safe_sqrt(ops.where(off_diagonal, sq_dist, 0.0))
    return (
        dist
        - ops.mean(dist, axis=0, keepdims=True)
        - ops.mean(dist, axis=1, keepdims=True)
        + ops.mean(dist)
    )


def distance_correlation(x, y):
    """Sample distance correlation of two batches (Szekely's V-statistic).

    Args:
        x: tensor `(B, ...)`; every sample is flattened.
        y: tensor `(B, ...)` with the same batch size.

    Returns:
        A float32 scalar in [0, 1]: the value `dcor.distance_correlation`
        gives. It is 0, not NaN, when either input is constant over the
        batch (no distance variance, so no measurable dependence).

    Raises:
        ValueError: for inputs of rank < 2 or a batch of fewer than 2.
    """
    x = _flatten_float32(x, "x")
    y = _flatten_float32(y, "y")
    # The sqrt and division guards below would turn NaN or inf inputs into
    # a dependence of 0; a diverged input must show up as NaN instead.
    finite = ops.isfinite(ops.sum(x)) & ops.isfinite(ops.sum(y))
    x, y = _standardize(x), _standardize(y)
    a = _centered_distances(x)
    b = _centered_distances(y)
    dcov2_xy = ops.mean(a * b)
    dvar_x = ops.sqrt(ops.mean(a * a))
    dvar_y = ops.sqrt(ops.mean(b * b))
    denominator = dvar_x * dvar_y
    defined = denominator > _TINY
    dcor2 = ops.where(
        defined, dcov2_xy / ops.where(defined, denominator, 1.0), 0.0
    )
    dcor = _safe_sqrt(ops.clip(dcor2, 0.0, 1.0))
    return ops.where(finite, dcor, float("nan"))


def invariance_loss(z, z_aug):
    """Mean squared error between the two embeddings, over all elements."""
    z = ops.cast(z, "float32")
    z_aug = ops.cast(z_aug, "float32")
    return ops.mean(ops.square(z - z_aug))


def variance_loss(z, z_aug, margin=1.0, epsilon=1e-4):
    """Hinge on the per-dimension standard deviation of each embedding.

    `std` is the unbiased (n - 1) standard deviation. `epsilon` is added to
    the variance before the square root, so that a collapsed dimension gives
    a finite gradient (the square root's slope is infinite at 0).
    """

    def hinge(e):
        e = ops.cast(e, "float32")
        n = ops.cast(ops.shape(e)[0], "float32")
        variance = ops.var(e, axis=0) * n / (n - 1.0)
        return ops.mean(ops.relu(margin - ops.sqrt(variance + epsilon)))

    return hinge(z_aug) + hinge(z)


def representation_term(dcor, objective="maximize"):
    """T(d) of spec section 2.1: `1 - d` (maximize) or `d` (minimize)."""
    if objective == "maximize":
        return 1.0 - dcor
    if objective == "minimize":
        return dcor
    raise ValueError(
        f"Unknown representation objective {objective!r}; "
        f"expected one of {REPRESENTATION_OBJECTIVES}."
    )


def mvmr_loss(
    z,
    z_aug,
    representations=None,
    weights=None,
    objective="maximize",
    variance_margin=1.0,
    variance_epsilon=1e-4,
    teacher=None,
    teacher_weight=1.0,
    teachers=None,
    teacher_weights=None,
):
    """All MV-MR loss terms for one batch.

    Args:
        z: embedding of the original view, `(B, D)`.
        z_aug: embedding of the augmented view, `(B, D)`.
        representations: dict name -> tensor `(B, ...)`, the fixed
            representations r_k(x) of the original view.
        weights: dict name -> float weight w_k (default 1 for each).
        objective: `"maximize"` (the paper) or `"minimize"` (the reference
            code) for the representation term.
        variance_margin: m of the variance hinge.
        variance_epsilon: added to the variance before its square root.
        teacher: optional teacher embedding t(x) of the original view,
            `(B, D_t)`; adds `teacher_weight * (1 - dCor(z~, t(x)))`.
        teacher_weight: weight of the teacher term.
        teachers: several teachers' embeddings, a dict name -> `(B, D_k)`;
            each adds `teacher_weights[name] * (1 - dCor(z~, t_k(x)))`.
        teacher_weights: dict name -> weight (default 1 each).

    Returns:
        dict with the total `loss` and its parts: `mse`, `std` (the
        variance hinge), `dcor_zz` = dCor(z, z~) and one `dcor_<name>` =
        dCor(r_name(x), z~) per representation, and `dcor_teacher` =
        dCor(z~, t(x)) when a teacher embedding is given, `dcor_teacher_<name>`
        for each of `teachers`. The dCor entries are the
        raw dependences in [0, 1], which is what one wants to watch; `loss`
        applies `1 - d` (or T) to them.
    """
    representations = representations or {}
    weights = weights or {}
    unknown = set(weights) - set(representations)
    if unknown:
        raise ValueError(
            f"Weights given for unknown representations {sorted(unknown)}; "
            f"representations are {sorted(representations)}."
        )
    terms = {
        "mse": invariance_loss(z, z_aug),
        "std": variance_loss(z, z_aug, variance_margin, variance_epsilon),
        "dcor_zz": distance_correlation(z, z_aug),
    }
    loss = terms["mse"] + terms["std"] + (1.0 - terms["dcor_zz"])
    for name, features in representations.items():
        dcor = distance_correlation(features, z_aug)
        terms[f"dcor_{name}"] = dcor
        loss = loss + float(weights.get(name, 1.0)) * representation_term(
            dcor, objective
        )
    # The teacher terms always maximise the dependence (spec section 6),
    # whatever `objective` says about the hand-crafted representations.
    named = {} if teacher is None else {"dcor_teacher": (teacher, teacher_weight)}
    teacher_weights = teacher_weights or {}
    for name, embedding in (teachers or {}).items():
        named[f"dcor_teacher_{name}"] = (embedding, teacher_weights.get(name, 1.0))
    for term, (embedding, weight) in named.items():
        dcor = distance_correlation(z_aug, ops.stop_gradient(ops.convert_to_tensor(embedding)))
        terms[term] = dcor
        loss = loss + float(weight) * (1.0 - dcor)
    terms["loss"] = loss
    return terms
