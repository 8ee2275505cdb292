"""Teacher embeddings computed once per image, stored under the workdir.

The teacher sees only the deterministic original view (spec section 6), so
`t(x)` of every training image is the same at every epoch: computing it once
turns each training step's teacher forward pass into a read. A cache lives
in `WORKDIR/teacher_cache/<dataset>-<split>-<size>px-<key>/`:

    metadata.json   what the embeddings are of (the key, below)
    chunk_000000.npy, chunk_000001.npy, ...   float32 (chunk_size, D) rows,
                    in the dataset's own order
    progress.json   chunks written so far, and `complete` once all are

The key is a hash of the preset (for a local directory, also of its config
files and the size and modification time of its weight files), the
teacher's resolution, interpolation and embedding choice, the dataset, the
split and the original view's image size: a different value of any of them
names a different directory, so a stale cache is never read. Each of
several teachers (`config.teachers`) has its own key, so changing one
teacher recomputes only that teacher's cache. A precomputation that
is interrupted keeps its finished chunks and resumes after the last one.

Command line (the config and overrides as for `train.py`):

    python -m mvmr_keras.teachers.cache --config=configs/stl10_clip.py \\
        --workdir=runs/stl10_clip --config.teacher.preset=/presets/clip_b16

Example:

>>> key = cache_key("/presets/clip_b16", 224, "bilinear", "digits", "train", 32)
>>> cache = EmbeddingCache(cache_directory("runs/x", key), key)
>>> cache.precompute(CLIPTeacher("/presets/clip_b16"), images)
>>> cache.load().shape
(1437, 512)
"""

import hashlib
import json
import os
import sys

import numpy as np

from mvmr_keras.workdir import read_json, write_json

CACHE_FORMAT = 1
_WEIGHT_SUFFIXES = (".h5", ".weights.json", ".safetensors", ".npz")


class CacheError(ValueError):
    """A cache that does not match what is asked of it."""


def preset_fingerprint(preset):
    """A string that changes when the preset's architecture or weights do.

    A preset name (downloaded, versioned by KerasHub) is its own fingerprint;
    a local directory adds a hash of its JSON configs and the name, size and
    modification time of every weight file (hashing gigabytes of weights at
    every start would be slow; a rewritten file changes its time).
    """
    preset = str(preset)
    if not os.path.isdir(preset):
        return preset
    digest = hashlib.sha256()
    for name in sorted(os.listdir(preset)):
        path = os.path.join(preset, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(_WEIGHT_SUFFIXES):
            stat = os.stat(path)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        elif name.endswith(".json") and name != "metadata.json":
            digest.update(name.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return f"{os.path.abspath(preset)}#{digest.hexdigest()[:16]}"


def cache_key(preset, teacher_image_size, interpolation, dataset, split, image_size,
              embedding=None):
    """The metadata a cache is keyed by (a JSON-able dict). `embedding` is
    left out when `None` (the family's default read-out), which keeps the
    keys of caches written before teachers had a choice."""
    key = {
        "format": CACHE_FORMAT,
        "preset": str(preset),
        "preset_fingerprint": preset_fingerprint(preset),
        "teacher_image_size": int(teacher_image_size),
        "interpolation": str(interpolation),
        "dataset": str(dataset),
        "split": str(split),
        "image_size": int(image_size),
    }
    if embedding is not None:
        key["embedding"] = str(embedding)
    return key


def key_hash(key):
    text = json.dumps(key, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_directory(workdir, key):
    """`WORKDIR/teacher_cache/<dataset>-<split>-<size>px-<hash of key>`."""
    split = key["split"].replace("/", "_")
    name = f"{key['dataset']}-{split}-{key['image_size']}px-{key_hash(key)}"
    return os.path.join(workdir, "teacher_cache", name)


def key_from_config(config, split, spec=None):
    """The cache key of one of `config`'s teachers (a `TeacherSpec`; default
    the `teacher` block's) on one split of its dataset."""
    if spec is None:
        from mvmr_keras.teachers.distillation import single_teacher_spec

        spec = single_teacher_spec(config)
    return cache_key(
        spec.preset,
        spec.image_size or 0,
        spec.interpolation,
        config.dataset,
        split,
        config.image_size,
        embedding=spec.embedding or None,
    )


def original_view(images, image_size):
    """The original view `mvmr_keras.data.views` gives: float32 pixels in
    [0, 255], resized (bilinear, `tf.image.resize`) only if not already
    `image_size`."""
    images = np.asarray(images, dtype="float32")
    if images.shape[1:3] == (image_size, image_size):
        return images
    import tensorflow as tf

    return tf.image.resize(images, (image_size, image_size)).numpy()




def compiled_predict(teacher, image_size):
    """`teacher` as a function of numpy batches, compiled when it is a
    Keras layer (one XLA / tf.function / torch call per batch)."""
    import keras

    if not isinstance(teacher, keras.layers.Layer):
        return lambda batch: np.asarray(keras.ops.convert_to_numpy(teacher(batch)))
    model = keras.Sequential([keras.Input((image_size, image_size, 3)), teacher])
    return lambda batch: np.asarray(model.predict_on_batch(batch))


class EmbeddingCache:
    """One cache directory: teacher embeddings of one split, in order.

    Args:
        directory: where the cache lives (`cache_directory(workdir, key)`).
        key: the `cache_key(...)` it must hold; an existing directory with
            other metadata raises `CacheError` instead of being read.
        chunk_size: rows per chunk file (the unit of resumption). A resumed
            precomputation keeps the chunk size it started with.
    """

    def __init__(self, directory, key, chunk_size=1024):
        self.directory = str(directory)
        self.key = dict(key)
        self.chunk_size = int(chunk_size)
        existing = read_json(self._path("metadata.json"))
        if existing is not None and existing != json.loads(json.dumps(self.key)):
            raise CacheError(
                f"teacher cache {self.directory} holds embeddings of {existing}, "
                f"not of {self.key}; delete it or use another workdir"
            )
        progress = self.progress()
        if progress["chunks"]:
            self.chunk_size = progress["chunk_size"]

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _chunk_path(self, index):
        return self._path(f"chunk_{index:06d}.npy")

    def progress(self):
        """`{"chunks", "images", "chunk_size", "complete", ...}` so far."""
        return read_json(
            self._path("progress.json"),
            {"chunks": 0, "images": 0, "chunk_size": self.chunk_size, "complete": False},
        )

    @property
    def complete(self):
        return bool(self.progress()["complete"])

    def precompute(self, teacher, images, batch_size=64, verbose=1):
        """Computes and stores the teacher embeddings of `images`' original view.

        Args:
            teacher: a Keras layer (or any callable) from `(B, S, S, 3)`
                [0, 255] batches to `(B, D)` embeddings.
            images: uint8 array `(N, H, W, 3)`, or a `tf.data.Dataset` of
                images or `(image, label, ...)` tuples, in the order the
                training pipeline will read them.
            batch_size: images per teacher call.
            verbose: 1 shows a progress bar.

        Returns:
            The number of images now cached. Resumes after the chunks an
            interrupted call left; does nothing for a complete cache.
        """
        import keras

        progress = self.progress()
        if progress["complete"]:
            return progress["images"]
        os.makedirs(self.directory, exist_ok=True)
        write_json(self._path("metadata.json"), self.key)
        image_size = self.key["image_size"]
        start = progress["chunks"] * self.chunk_size
        total = _num_images(images)
        chunks = _chunks(images, start, self.chunk_size)
        predict = compiled_predict(teacher, image_size)
        bar = keras.utils.Progbar(total, unit_name="image") if verbose else None
        if bar is not None:
            bar.update(start)
        done = start
        for index, chunk in enumerate(chunks, start=progress["chunks"]):
            rows = []
            for i in range(0, len(chunk), batch_size):
                batch = original_view(chunk[i:i + batch_size], image_size)
                rows.append(np.asarray(predict(batch), dtype="float32"))
                if bar is not None:
                    bar.update(done + i + len(batch))
            embeddings = np.concatenate(rows)
            tmp = self._chunk_path(index) + ".tmp.npy"
            np.save(tmp, embeddings)
            os.replace(tmp, self._chunk_path(index))
            done += len(chunk)
            write_json(self._path("progress.json"), {
                "chunks": index + 1, "images": done, "chunk_size": self.chunk_size,
                "dim": int(embeddings.shape[1]), "complete": False,
            })
        progress = self.progress()
        progress["complete"] = True
        write_json(self._path("progress.json"), progress)
        if bar is not None and total is None:
            sys.stdout.write("\n")
        return progress["images"]

    def load(self, expected_images=None):
        """All embeddings, `(N, D)` float32, in the dataset's order."""
        progress = self.progress()
        if not progress["complete"]:
            raise CacheError(
                f"teacher cache {self.directory} is incomplete ({progress['images']} "
                "images); run the precomputation (it resumes)"
            )
        embeddings = np.concatenate(
            [np.load(self._chunk_path(i)) for i in range(progress["chunks"])]
        )
        if expected_images is not None and len(embeddings) != expected_images:
            raise CacheError(
                f"teacher cache {self.directory} has {len(embeddings)} embeddings "
                f"for a split of {expected_images} images; delete it to recompute"
            )
        return embeddings


def _num_images(images):
    if isinstance(images, np.ndarray):
        return len(images)
    cardinality = int(images.cardinality())
    return cardinality if cardinality >= 0 else None


def _chunks(images, start, chunk_size):
    """Yields uint8 image arrays of `chunk_size` from image number `start`."""
    if isinstance(images, np.ndarray):
        for i in range(start, len(images), chunk_size):
            yield images[i:i + chunk_size]
        return
    ds = images
    if isinstance(ds.element_spec, tuple):
        ds = ds.map(lambda image, *rest: image)
    for chunk in ds.skip(start).batch(chunk_size).as_numpy_iterator():
        yield chunk


def teacher_from_spec(spec):
    """The `Teacher` layer a `TeacherSpec` describes."""
    from mvmr_keras.teachers.teacher import Teacher

    return Teacher.from_preset(
        spec.preset,
        image_size=spec.image_size or None,
        embedding=spec.embedding or None,
        interpolation=spec.interpolation or None,
        name="teacher" if spec.name is None else f"teacher_{spec.name}",
    )


def teacher_from_config(config):
    """The `Teacher` a config's `teacher` block describes."""
    from mvmr_keras.teachers.distillation import single_teacher_spec

    return teacher_from_spec(single_teacher_spec(config))


def is_complete(config, workdir, split, spec=None):
    """Whether one teacher's cache of one split is complete."""
    key = key_from_config(config, split, spec)
    return EmbeddingCache(cache_directory(workdir, key), key).complete


def embeddings_for(config, workdir, split, images, teacher=None, verbose=1, log=print,
                   spec=None):
    """The cached teacher embeddings of one split, computing what is missing.

    `images` is the split as `(N, H, W, 3)` uint8 or a `tf.data.Dataset`
    (what `mvmr_keras.data.load` gives), in training order. `spec` is one of
    the config's teachers (a `TeacherSpec`; default the `teacher` block's);
    `teacher` is built from it if needed and not given.
    """
    key = key_from_config(config, split, spec)
    cache = EmbeddingCache(cache_directory(workdir, key), key,
                           chunk_size=config.teacher.cache_chunk_size)
    if not cache.complete:
        progress = cache.progress()
        log(f"Teacher embeddings of {config.dataset}/{split}: {progress['images']} "
            f"cached, computing the rest into {cache.directory}")
        if teacher is None:
            teacher = teacher_from_config(config) if spec is None else teacher_from_spec(spec)
        cache.precompute(teacher, images, batch_size=config.teacher.batch_size,
                         verbose=verbose)
    return cache.load(expected_images=_num_images(images))


def main(argv=None):
    """`python -m mvmr_keras.teachers.cache --config=... --workdir=...`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Path to a config file with get_config().", lock_config=True
    )
    workdir_flag = flags.DEFINE_string("workdir", None, "The run's workdir.", required=True)
    splits_flag = flags.DEFINE_list(
        "splits", None, "Splits to cache (default: the config's train and test splits)."
    )

    def run(args):
        if len(args) > 1:
            sys.exit(f"error: unexpected arguments {args[1:]}")
        config = config_flag.value
        if config is None:
            sys.exit("error: --config is required")
        from mvmr_keras import data as data_lib
        from mvmr_keras.teachers import distillation

        if not distillation.enabled(config):
            sys.exit("error: the config has no teacher; set --config.teacher.preset")
        try:
            distillation.validate(config)
            specs = distillation.teacher_specs(config)
            teachers = [teacher_from_spec(spec) for spec in specs]
        except ValueError as e:  # a bad teacher setting, a preset that cannot load
            sys.exit(f"error: {e}")
        for split in splits_flag.value or [config.train_split, config.test_split]:
            try:
                images = data_lib.load(config.dataset, split, data_dir=config.data_dir or None)
            except (data_lib.DatasetNotFoundError, ValueError) as e:
                sys.exit(f"error: {e}")
            for spec, teacher in zip(specs, teachers):
                embeddings = embeddings_for(config, workdir_flag.value, split, images,
                                            teacher, spec=spec)
                which = "" if spec.name is None else f" (teacher {spec.name})"
                print(f"{config.dataset}/{split}: {embeddings.shape[0]} embeddings of "
                      f"dimension {embeddings.shape[1]} cached{which}.")

    app.run(run, argv=argv)


if __name__ == "__main__":
    main()
