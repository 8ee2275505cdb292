"""What the trainer needs to distil teachers: settings, embeddings, scores.

A config distils one teacher with its `teacher` block (`teacher.preset`,
`image_size`, `interpolation`, `embedding`, `weight`; logged as
`dcor_teacher`), or several with `teachers`, a list of
`{preset, image_size, embedding, weight}` dicts (optional `name` and
`interpolation`), each logged as `dcor_teacher_<name>`. The `teacher`
block's `use_cache`, `batch_size`, `cache_chunk_size` and `heldout_images`
apply to all of them.

`prepare` gives each teacher's embeddings of the training and held-out
images, from the cache (`teacher.use_cache`, computed on first use, one
cache per teacher) or from live teacher layers the model then runs every
step. `heldout_dcors` is the score the run reports: dCor between the
student's embedding `z` and each teacher's `t(x)` on held-out images.

Example:

>>> config.teachers = [
...     dict(name="clip", preset="clip_vit_base_patch16", image_size=224, weight=1.0),
...     dict(name="dino", preset="dinov2_base", image_size=224, embedding="cls+mean"),
... ]
>>> setup = prepare(config, workdir, train_images, test_images)
>>> model = MVMR(encoder, **model_arguments(config, setup.teacher))
>>> heldout_dcors(model, config, setup, test_images)
{'clip': 0.41, 'dino': 0.37}
"""

import dataclasses
import os
import re

import numpy as np

from mvmr_keras.teachers import cache as cache_lib

SPEC_FIELDS = ("name", "preset", "image_size", "embedding", "interpolation", "weight")
_EMBEDDING_NAMES = ("projected", "cls", "mean_patch", "cls+mean")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """One teacher of a config. `name` is `None` for the `teacher` block's
    single teacher (logged as `dcor_teacher`); `image_size` 0, `embedding`
    "" and `interpolation` "" take the preset's own."""

    name: object
    preset: str
    image_size: int = 0
    embedding: str = ""
    interpolation: str = ""
    weight: float = 1.0


@dataclasses.dataclass
class Distillation:
    # The live teacher layer for the model, or None (cached); with several
    # teachers a dict name -> layer or None.
    teacher: object
    # (N_train, D) cached embeddings, or None; with several teachers a dict
    # name -> (N_train, D_k) (all cached) or None.
    train_embeddings: object
    # (N_heldout, D) for the held-out score; with several, a dict.
    test_embeddings: object


def _teachers_list(config):
    teachers = config.get("teachers") if hasattr(config, "get") else None
    return list(teachers or [])


def several(config):
    """Whether a config distils several teachers (`config.teachers`)."""
    return bool(_teachers_list(config))


def enabled(config):
    """Whether a config distils a teacher (a non-empty `teacher.preset`, or
    a non-empty `teachers` list)."""
    teacher = config.get("teacher") if hasattr(config, "get") else None
    return bool(teacher and teacher.get("preset")) or several(config)


def default_name(preset):
    """A teacher's name from its preset: the directory's or preset's base
    name as a lower-case identifier (`/p/dinov2_base/` -> `dinov2_base`)."""
    base = os.path.basename(str(preset).rstrip("/\\")) or "teacher"
    name = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_") or "teacher"
    return name if name[0].isalpha() else f"t_{name}"


def single_teacher_spec(config):
    """The `teacher` block's teacher."""
    t = config.teacher
    return TeacherSpec(
        name=None,
        preset=str(t.preset),
        image_size=int(t.image_size or 0),
        embedding=str(t.get("embedding", "") or ""),
        interpolation=str(t.get("interpolation", "") or ""),
        weight=float(t.weight),
    )


def teacher_specs(config):
    """Every teacher of a config, as `TeacherSpec`s (none without one)."""
    if several(config):
        specs = []
        for entry in _teachers_list(config):
            entry = dict(entry)
            specs.append(TeacherSpec(
                name=str(entry.get("name") or default_name(entry.get("preset", ""))),
                preset=str(entry.get("preset", "")),
                image_size=int(entry.get("image_size") or 0),
                embedding=str(entry.get("embedding") or ""),
                interpolation=str(entry.get("interpolation") or ""),
                weight=float(entry.get("weight", 1.0)),
            ))
        return specs
    if enabled(config):
        return [single_teacher_spec(config)]
    return []


def validate(config):
    """Raises `ValueError` with a one-line reason for bad teacher settings."""
    if not enabled(config):
        return
    from mvmr_keras.teachers.teacher import INTERPOLATIONS

    t = config.teacher
    for field in ("batch_size", "cache_chunk_size"):
        if t[field] < 1:
            raise ValueError(f"teacher.{field} must be >= 1; got {t[field]}")
    if several(config):
        if t.get("preset"):
            raise ValueError(
                "set either teacher.preset (one teacher) or teachers (several), not both; "
                "the teacher block's use_cache, batch_size, cache_chunk_size and "
                "heldout_images apply to the teachers list"
            )
        for index, entry in enumerate(_teachers_list(config)):
            if not hasattr(entry, "keys"):
                raise ValueError(f"teachers[{index}] must be a dict; got {entry!r}")
            unknown = sorted(set(entry.keys()) - set(SPEC_FIELDS))
            if unknown:
                raise ValueError(
                    f"teachers[{index}] has unknown fields {unknown}; available: "
                    f"{list(SPEC_FIELDS)}"
                )
            if not entry.get("preset"):
                raise ValueError(f"teachers[{index}] needs a preset")
        where = [f"teachers[{i}]" for i in range(len(_teachers_list(config)))]
    else:
        where = ["teacher"]
        if t["image_size"] < 1:
            raise ValueError(f"teacher.image_size must be >= 1; got {t['image_size']}")
    specs = teacher_specs(config)
    names = [spec.name for spec in specs]
    for at, spec in zip(where, specs):
        if spec.image_size < 0:
            raise ValueError(f"{at}.image_size must be >= 1 (or 0: the preset's own); "
                             f"got {spec.image_size}")
        if spec.weight < 0:
            raise ValueError(f"{at}.weight must be >= 0; got {spec.weight}")
        if spec.interpolation and spec.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown {at}.interpolation {spec.interpolation!r}; available: "
                f"{list(INTERPOLATIONS)} or empty for the preset's own"
            )
        if spec.embedding and spec.embedding not in _EMBEDDING_NAMES:
            raise ValueError(
                f"unknown {at}.embedding {spec.embedding!r}; available: "
                f"{list(_EMBEDDING_NAMES)} or empty for the family's default"
            )
        if spec.name is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
            raise ValueError(f"{at}.name {spec.name!r} must be a lower-case identifier")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"teacher names {duplicates} appear more than once; give each a distinct name"
        )


def model_arguments(config, teacher=None):
    """The `MVMR` keyword arguments of a config's teachers. `teacher` is
    `prepare(...).teacher`: the live layer(s), or None when the batches
    bring cached embeddings."""
    if not enabled(config):
        return {}
    specs = teacher_specs(config)
    if not several(config):
        return {"teacher": teacher, "teacher_weight": specs[0].weight}
    layers = teacher or {}
    return {
        "teachers": {spec.name: layers.get(spec.name) for spec in specs},
        "teacher_weights": {spec.name: spec.weight for spec in specs},
    }


def _live_embeddings(teacher, images, config):
    predict = cache_lib.compiled_predict(teacher, config.image_size)
    step = config.teacher.batch_size
    return np.concatenate([
        predict(cache_lib.original_view(images[i:i + step], config.image_size))
        for i in range(0, len(images), step)
    ])


def prepare(config, workdir, train_images, heldout_images, verbose=1, log=print):
    """Teacher embeddings for training and for the held-out score."""
    specs = teacher_specs(config)
    teachers, train, test = {}, {}, {}
    splits = (config.train_split, config.test_split)
    for spec in specs:
        spec_arg = None if spec.name is None else spec  # None: the teacher block's
        layer = None
        if not config.teacher.use_cache or not all(
            cache_lib.is_complete(config, workdir, split, spec_arg) for split in splits
        ):  # built once, for whichever split's cache is missing
            layer = (cache_lib.teacher_from_config(config) if spec.name is None
                     else cache_lib.teacher_from_spec(spec))
        if config.teacher.use_cache:
            teachers[spec.name] = None
            train[spec.name] = cache_lib.embeddings_for(
                config, workdir, config.train_split, train_images, layer, verbose=verbose,
                log=log, spec=spec_arg)
            test[spec.name] = cache_lib.embeddings_for(
                config, workdir, config.test_split, heldout_images, layer, verbose=verbose,
                log=log, spec=spec_arg)
        else:
            teachers[spec.name] = layer
            test[spec.name] = _live_embeddings(
                layer, heldout_images[:config.teacher.heldout_images], config)
    if not several(config):
        (name,) = teachers
        return Distillation(teachers[name], train.get(name), test[name])
    return Distillation(teachers, train or None, test)


def heldout_dcor(model, images, teacher_embeddings, image_size, batch_size=256):
    """dCor(z(x), t(x)) over `images` (the student's projector output `z`
    of the original view at `image_size`)."""
    from mvmr_keras import losses

    views = cache_lib.original_view(images, image_size)
    z = model.predict(views, batch_size=batch_size, verbose=0)
    return float(np.asarray(losses.distance_correlation(z, teacher_embeddings)))


def heldout_dcors(model, config, setup, heldout_images):
    """`{name: dCor(z, t_name)}` on the first `teacher.heldout_images`
    held-out images; the single teacher's name is `None`."""
    embeddings = setup.test_embeddings
    if not isinstance(embeddings, dict):
        embeddings = {None: embeddings}
    count = min(len(heldout_images), config.teacher.heldout_images)
    views = cache_lib.original_view(heldout_images[:count], config.image_size)
    z = model.predict(views, batch_size=256, verbose=0)
    from mvmr_keras import losses

    return {
        name: float(np.asarray(losses.distance_correlation(z, t[:count])))
        for name, t in embeddings.items()
    }


def results(after, before):
    """`results.json` entries of the held-out scores after and before
    training: `teacher_dcor_heldout[_<name>]` and
    `teacher_dcor_heldout_init[_<name>]`."""
    found = {}
    for name, value in after.items():
        suffix = "" if name is None else f"_{name}"
        found[f"teacher_dcor_heldout{suffix}"] = value
        found[f"teacher_dcor_heldout_init{suffix}"] = before[name]
    return found


def describe(scores):
    """`0.4100` for one teacher, `clip 0.4100, dino 0.3700` for several."""
    return ", ".join(
        f"{value:.4f}" if name is None else f"{name} {value:.4f}"
        for name, value in scores.items()
    )
