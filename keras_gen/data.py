"""Named datasets as arrays and tf.data pipelines, from local files first and TFDS online.

Each dataset is one `Dataset` record in REGISTRY, at the end of this module: where
its files are, how to read them, what its labels mean, its TFDS name and how to get
it. `load_images` and `load_labels` walk a record's sources in one order: the
`source` argument alone if given; else its names in the folder named by the
`KERAS_GEN_DATA` environment variable, then the usual places on this machine, then
TFDS when allowed. `pipeline` and `training_pipeline` turn uint8 images into float32
batches in [0, 1], shape (batch, height, width, channels). Paired datasets
(`faces_edges`, `faces_grayscale`, `faces_downsample4`) are faces whose batches are
(inputs, targets), each input made from its target by `paired`.

Data is checked where it enters, and bad content is refused with a `DataError`
naming the file, the place in it and what to do: arrays must be uint8 images of
the dataset's shape with integer labels in its class range; a faces labels file is
matched to the images by member name and column name, never by position; an image
is sized from its header before it is decoded (`keras_gen.images`), and refused when
it is too large or too narrow.
"""

import dataclasses
import gzip
import math
import os
import re
import struct
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_gen.images import ImageError, decode_images

SPLITS = ("train", "test")
KINDS = ("images", "paired", "sequences")
FACES_SIZE = 64
# Faces' ages (years) are grouped into spans wide enough to judge from a 64x64 face.
AGE_GROUPS = ((0, 12), (13, 29), (30, 44), (45, 64), (65, 200))
_GENDERS = ("female", "male")


class DataSourceError(FileNotFoundError):
    """No source of a dataset could be read; the message lists every one tried."""


class DataError(ValueError):
    """A data file was found but its content is wrong; the message says where and why.

    A ValueError rather than a DataSourceError: falling back to another source
    would hide a broken file the user meant to train on.
    """


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Everything about one named dataset, so that adding one is one REGISTRY entry.

    A reader is called as `read(path, split, dataset)` on the first local source
    that exists and returns arrays: for kind "images", uint8 (N, height, width,
    channels) of `shape`; `read_labels` gives int32 (N, heads), heads as in `classes`.

    A paired dataset (kind "paired", e.g. `faces_edges`: a sketch in, the face out)
    is the record of the dataset it is made from (`made_from`: same sources, reader,
    labels and split) whose images are the targets; `load` and the pipelines make
    each batch's inputs from them on the fly with `paired(input_kind, targets)`,
    the function a user's image goes through too. A sequence dataset (kind
    "sequences", e.g. shakespeare.txt) has `shape` () and a reader returning a 1-D
    int32 array of token ids.

    Args:
        name: the name callers pass, e.g. "mnist".
        kind: one of KINDS: "images", "paired" or "sequences".
        shape: one image's (height, width, channels); the target's when paired.
        read: the reader of the examples, `(path, split, dataset) -> arrays`.
        how_to_get: where to find the files, a sentence or two for error messages.
        root_names: files or folders tried, in order, in the KERAS_GEN_DATA folder.
        fixed_paths: places on this machine tried after those ("~" is expanded).
        read_labels: the reader of the labels, or None for a dataset without.
        classes: head name -> class names in label-index order, one head per column.
        tfds_name: the TFDS dataset tried when no local source exists, or None.
        tfds_image: a TFDS example -> one uint8 image; None takes its "image".
        tfds_labels: whether TFDS's "label" feature gives the labels too.
        made_from: a paired dataset's: the dataset whose images are its targets.
        input_kind: a paired dataset's: the `paired` kind that makes its inputs.

    Example: `data.REGISTRY["fashion_mnist"].candidates()` lists the local paths
    that `load_images("fashion_mnist")` tries, in order.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    read: Callable[..., np.ndarray]
    how_to_get: str
    root_names: tuple[str, ...] = ()
    fixed_paths: tuple[str, ...] = ()
    read_labels: Callable[..., np.ndarray] | None = None
    classes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    tfds_name: str | None = None
    tfds_image: Callable[[dict], tf.Tensor] | None = None
    tfds_labels: bool = False
    made_from: str | None = None
    input_kind: str | None = None

    def candidates(self, source: str | os.PathLike | None = None) -> list[Path]:
        """The local paths to try, in order; a given `source` is the only one."""
        if source is not None:
            return [Path(source).expanduser()]
        root = os.environ.get("KERAS_GEN_DATA")
        in_root = [Path(root) / name for name in self.root_names] if root else []
        return in_root + [Path(path).expanduser() for path in self.fixed_paths]


def load(
    name: str,
    split: str = "train",
    *,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    binarize: bool = False,
    drop_remainder: bool = False,
    source: str | os.PathLike | None = None,
    download: bool = True,
) -> tf.data.Dataset:
    """A batched, prefetched pipeline of one split of a named dataset.

    `binarize` samples every pixel from Bernoulli(intensity): afresh on every pass
    over the training split (dynamic binarization), once and for all with a fixed
    seed on the test split, so test scores are comparable between runs. A paired
    dataset gives (inputs, targets) batches.
    """
    # Checked before the images load, so a typo costs nothing.
    _check_batch_size(batch_size)
    images = load_images(name, split, source=source, download=download)
    return pipeline(
        images,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        binarize=None if not binarize else ("dynamic" if split == "train" else "fixed"),
        drop_remainder=drop_remainder,
        pairs=input_kind(name),
    )


def load_images(
    name: str,
    split: str = "train",
    *,
    source: str | os.PathLike | None = None,
    download: bool = True,
) -> np.ndarray:
    """All images of one split as a uint8 array (N, H, W, C).

    `download=False` never tries TFDS, and a `source` that does not exist is an
    error rather than a reason to download.
    """
    return _load(name, split, source=source, download=download, labels=False)


def load_labels(
    name: str, split: str = "train", *, source: str | os.PathLike | None = None
) -> np.ndarray:
    """Labels of one split, int32 (N, heads), aligned with `load_images`; heads in CLASSES.

    Read from the same local files as the images (faces: the labels file beside
    them, ages grouped into AGE_GROUPS); from TFDS when online only for datasets
    whose record sets `tfds_labels` (mnist and fashion_mnist).
    """
    return _load(name, split, source=source, download=True, labels=True)


class Splits:
    """A dataset's splits, each loaded once however many readers ask for it.

    `training.train` loads its training split through one and hands it to
    `evaluation.evaluate`, so measuring a freshly trained model loads nothing twice.
    """

    def __init__(self, dataset: str, source: str | os.PathLike | None = None):
        self.dataset, self.source = dataset, source
        self._images, self._labels = {}, {}

    def images(self, split: str) -> np.ndarray:
        if split not in self._images:
            self._images[split] = load_images(self.dataset, split, source=self.source)
        return self._images[split]

    def labels(self, split: str) -> np.ndarray | None:
        """The split's labels, or None where the source has none; bad labels raise."""
        if split not in self._labels:
            try:
                found = load_labels(self.dataset, split, source=self.source)
            except DataSourceError:
                found = None
            self._labels[split] = found
        return self._labels[split]


def class_names(name: str) -> dict[str, tuple[str, ...]]:
    """Head name -> class names of a dataset's labels."""
    _check_choice(name, tuple(CLASSES), "dataset")
    return {head: tuple(names) for head, names in CLASSES[name].items()}


def _load(name, split, *, source, download, labels):
    """One split's images or labels, from the first of the dataset's sources that has them.

    Both loaders walk the same sources in the same order, so they cannot disagree on
    which file is read; failing, the one error lists every place tried.
    """
    _check_choice(name, tuple(CLASSES) if labels else DATASETS, "dataset")
    _check_choice(split, SPLITS, "split")
    dataset = REGISTRY[name]
    read = dataset.read_labels if labels else dataset.read
    tried = []
    for candidate in dataset.candidates(source):
        if candidate.exists():
            return read(candidate, split, dataset)
        tried.append(str(candidate))
    _refuse_missing_source(source)
    if dataset.tfds_name is not None and (dataset.tfds_labels or not labels):
        if not download:
            tried.append("TFDS (not tried: download=False)")
        else:
            # Offline, TFDS retries for minutes before it gives up: say what it does.
            print(
                f"no local copy of {name!r}; downloading it with TFDS "
                f"{dataset.tfds_name!r} (needs network access; offline, pass a "
                "local copy as source=PATH or --data PATH, or set KERAS_GEN_DATA)",
                file=sys.stderr,
            )
            try:
                return _from_tfds(dataset, split, labels)
            except Exception as error:  # noqa: BLE001 - reported below with every source tried
                tried.append(
                    f"TFDS {dataset.tfds_name!r} ({type(error).__name__}: {error})"
                )
    raise DataSourceError(
        f"no {'labels' if labels else 'source'} for dataset {name!r}. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nProvide one with source=PATH (keras-gen train --data PATH), or put the "
        f"files in the folder named by KERAS_GEN_DATA. {dataset.how_to_get}"
    )


def _refuse_missing_source(source):
    """A source the user named must exist: it is never silently replaced by a download."""
    if source is not None:
        raise DataSourceError(
            f"{source} does not exist; pass the path of the dataset's file or folder"
        )


def _check_choice(value, choices, what):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"unknown {what} {value!r}; choose one of {', '.join(choices)}"
        )


# --- Pipelines: uint8 images in memory -> float batches ------------------------------


def pipeline(
    images,
    *,
    batch_size=64,
    shuffle=True,
    seed=0,
    binarize=None,
    drop_remainder=False,
    labels=None,
    pairs=None,
):
    """uint8 images in memory -> shuffled float batches; shuffling indices keeps it cheap.

    With `labels` (int, (N, heads)) each batch is (images, labels); with `pairs`
    (one of PAIRED_KINDS) it is (paired(pairs, images), images): inputs, targets.
    `binarize` is None, "fixed" (the same pixels on every pass) or "dynamic"
    (fresh ones).
    """
    images, label_table = _constants(images, labels, batch_size, pairs)
    if binarize not in (None, "fixed", "dynamic"):
        raise ValueError(
            f"binarize must be None, 'fixed' or 'dynamic', got {binarize!r}"
        )
    count = int(images.shape[0])
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=drop_remainder)
    # One random key per batch, new on every pass over the data yet fixed by `seed`:
    # stateless noise keyed by it binarizes afresh each epoch, reproducibly.
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def to_batch(index, key):
        noise_seed = None
        if binarize == "fixed":
            # Each image gets its own noise, keyed by its index: fixed whatever the order.
            noise_seed = tf.stack([tf.zeros_like(index) + seed, index], axis=1)
        elif binarize == "dynamic":
            noise_seed = tf.stack([key, seed])
        return _batch(images, label_table, index, noise_seed, pairs)

    return (
        tf.data.Dataset.zip(batches, keys)
        .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def training_pipeline(
    images: np.ndarray,
    *,
    batch_size: int,
    seed: int = 0,
    start_step: int = 0,
    binarize: bool = False,
    labels: np.ndarray | None = None,
    pairs: str | None = None,
) -> tf.data.Dataset:
    """Endless training batches in which batch t is a pure function of (seed, t).

    Pass e over the data visits every image once (dropping the last partial
    batch) in an order given by a stateless shuffle keyed by (seed, e), so a run
    resumed at step t sees exactly the batches it would have seen, whatever the
    number of replicas or restarts. `binarize` draws fresh pixels at every step.
    With `labels` (int32, (N, heads)) each batch is (images, labels); with `pairs`
    (one of PAIRED_KINDS) it is (inputs made by `paired`, images).
    """
    images, label_table = _constants(images, labels, batch_size, pairs)
    count = int(images.shape[0])
    steps_per_pass = count // batch_size
    if steps_per_pass < 1:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {count} images; "
            "use a smaller batch_size or more images"
        )

    def to_batch(step):
        data_pass, position = step // steps_per_pass, step % steps_per_pass
        offsets = position * batch_size + tf.range(batch_size, dtype=tf.int64)
        key = tf.stack([tf.constant(seed, tf.int64), data_pass])
        indices = tf.random.experimental.index_shuffle(offsets, key, count - 1)
        noise_seed = tf.stack([key[0], -1 - step]) if binarize else None
        return _batch(images, label_table, indices, noise_seed, pairs)

    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def _constants(images, labels, batch_size, pairs=None):
    """A pipeline's checked inputs as tensors: (images, label table or None)."""
    _check_batch_size(batch_size)
    _check_in_memory(images, labels)
    if pairs is not None:
        _check_choice(pairs, PAIRED_KINDS, "paired kind")
        if labels is not None:
            raise ValueError(
                "a paired pipeline gives (inputs, targets) batches and takes no "
                "labels; pass labels=None"
            )
    label_table = None if labels is None else tf.constant(labels, tf.int32)
    return tf.constant(images), label_table


def _batch(images, label_table, indices, noise_seed, pairs=None):
    """The images at `indices` as floats in [0, 1], binarized if seeded, with labels
    (or, paired, after the inputs `paired` makes of them).

    The one per-batch step of both pipelines, so evaluation and training batches
    are made alike; only the order of indices and the noise seeds differ.
    """
    pixels = tf.cast(tf.gather(images, indices), tf.float32) / 255.0
    if noise_seed is not None:
        pixels = _bernoulli(pixels, noise_seed)
    if pairs is not None:
        return paired(pairs, pixels), pixels
    if label_table is None:
        return pixels
    return pixels, tf.gather(label_table, indices)


def _bernoulli(intensities, seed):
    """Binary pixels drawn from Bernoulli(intensity) with a stateless seed.

    A seed of shape (2,) draws the whole batch at once; seeds of shape (batch, 2)
    draw image i from seeds[i] alone, whatever else shares its batch.
    """
    if seed.shape.rank == 2:
        return tf.map_fn(
            lambda pair: _bernoulli(*pair),
            (intensities, seed),
            fn_output_signature=tf.float32,
        )
    noise = tf.random.stateless_uniform(tf.shape(intensities), seed=seed)
    return tf.cast(noise < intensities, tf.float32)


def _check_batch_size(batch_size):
    """A bool or float batch size would fail deep inside tf.data, far from the typo."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _check_in_memory(images, labels):
    """The pipelines divide by 255, so only uint8 images give pixels in [0, 1]."""
    dtype = getattr(images, "dtype", None)
    if dtype != np.uint8 or np.ndim(images) != 4:
        raise ValueError(
            f"images must be a uint8 array (N, height, width, channels), got "
            f"{dtype} of shape {np.shape(images)}; convert floats in [0, 1] with "
            "(x * 255).round().astype('uint8')"
        )
    if labels is not None and (
        np.ndim(labels) != 2 or np.shape(labels)[0] != np.shape(images)[0]
    ):
        raise ValueError(
            f"labels must be (N, heads) with one row per image: got shape "
            f"{np.shape(labels)} for {np.shape(images)[0]} images"
        )


# --- Paired datasets: each input made from its target image -------------------------

PAIRED_KINDS = ("edges", "grayscale", "downsample4")
# ITU-R BT.601 luma: the weights of R', G' and B' (gamma-encoded, as image files are).
BT601 = (0.299, 0.587, 0.114)
# The sketch detector's settings, chosen by eye on eight faces: eyes, brows,
# nostrils, lips and the face's outline survive, skin texture and JPEG noise do not.
EDGE_BLUR_SIGMA = 1.0
EDGE_THRESHOLD = 0.2
DOWNSAMPLE_FACTOR = 4
# The two neighbours across an edge, (row, column) and its opposite, for gradient
# directions quantised to 0, 45, 90 and 135 degrees (rows grow downwards, as dy).
_ACROSS_EDGE = ((0, 1), (1, 1), (1, 0), (1, -1))


def paired(kind: str, images) -> tf.Tensor:
    """The inputs a paired dataset makes from target images: exactly what training saw.

    `images` are targets, float in [0, 1] (or uint8, divided by 255 as the
    pipelines do), (batch, height, width, 3). Returns float32 in [0, 1]:

    - "edges": a line sketch, (batch, height, width, 1), black (0) lines on white
      (1). Canny-style without hysteresis: BT.601 luma, Gaussian blur (sigma
      EDGE_BLUR_SIGMA), Sobel gradients (`tf.image.sobel_edges`), non-maximum
      suppression across the edge (4 directions) so lines are one pixel thin,
      then magnitude > EDGE_THRESHOLD. Borders are reflected, so the frame of the
      image is no edge.
    - "grayscale": BT.601 luma 0.299 R + 0.587 G + 0.114 B, (batch, height, width, 1).
    - "downsample4": (batch, height / 4, width / 4, 3), each pixel the mean of a
      4x4 block (area averaging: antialiased, every target pixel weighs the same).

    Example: sketches = data.paired("edges", data.load_images("faces", "test")[:8])
    """
    _check_choice(kind, PAIRED_KINDS, "paired kind")
    targets = _target_pixels(images, kind)
    if kind == "grayscale":
        return luminance(targets)
    if kind == "downsample4":
        factor = DOWNSAMPLE_FACTOR
        return tf.nn.avg_pool2d(targets, factor, factor, "VALID")
    return _sketch(targets)


def paired_shape(kind: str, target_shape) -> tuple[int, int, int]:
    """The shape (height, width, channels) of one input `paired` makes from a target."""
    _check_choice(kind, PAIRED_KINDS, "paired kind")
    height, width, _ = target_shape
    if kind == "downsample4":
        return (height // DOWNSAMPLE_FACTOR, width // DOWNSAMPLE_FACTOR, 3)
    return (height, width, 1)


def input_kind(name: str) -> str | None:
    """A dataset's paired kind (its inputs' maker), or None unless it is paired."""
    _check_choice(name, DATASETS, "dataset")
    return REGISTRY[name].input_kind


def luminance(images) -> tf.Tensor:
    """BT.601 luma of RGB images in [0, 1]: (..., 3) -> (..., 1)."""
    return tf.tensordot(images, tf.constant(BT601, images.dtype), axes=1)[..., None]


def _target_pixels(images, kind) -> tf.Tensor:
    """Targets as float32 [0, 1] (batch, height, width, 3); a wrong shape is refused."""
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    images = tf.cast(images, tf.float32)
    shape = images.shape
    if shape.rank != 4 or shape[-1] != 3:
        raise ValueError(
            f"paired({kind!r}, images) makes inputs from RGB targets (batch, height, "
            f"width, 3) in [0, 1]; got shape {tuple(shape)}"
        )
    factor = DOWNSAMPLE_FACTOR
    if kind == "downsample4" and any(
        side is not None and side % factor for side in shape[1:3]
    ):
        raise ValueError(
            f"downsample4 averages {factor}x{factor} blocks, so height and width "
            f"must be multiples of {factor}; got {shape[1]}x{shape[2]}"
        )
    return images


def _sketch(images) -> tf.Tensor:
    """Black one-pixel lines on white where the blurred luma has strong, locally
    maximal gradients (see `paired`)."""
    smooth = _gaussian_blur(luminance(images), EDGE_BLUR_SIGMA)
    gradients = tf.image.sobel_edges(smooth)[..., 0, :]  # (batch, h, w, [dy, dx])
    dy, dx = gradients[..., 0], gradients[..., 1]
    magnitude = tf.sqrt(dy * dy + dx * dx)
    thin = _non_maximum_suppression(magnitude, dy, dx)
    return 1.0 - tf.cast(thin > EDGE_THRESHOLD, tf.float32)[..., None]


def _gaussian_blur(images, sigma: float) -> tf.Tensor:
    """A separable Gaussian blur of one-channel images, radius 2 sigma, borders reflected."""
    radius = math.ceil(2 * sigma)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    kernel = tf.constant(taps / taps.sum(), tf.float32)
    padded = tf.pad(
        images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT"
    )
    rows = tf.nn.conv2d(padded, tf.reshape(kernel, [-1, 1, 1, 1]), 1, "VALID")
    return tf.nn.conv2d(rows, tf.reshape(kernel, [1, -1, 1, 1]), 1, "VALID")


def _non_maximum_suppression(magnitude, dy, dx) -> tf.Tensor:
    """`magnitude` where it is a maximum across the edge (along the gradient), else 0.

    Strictly greater than the neighbour behind and at least the one ahead, so a
    ridge two pixels wide of equal values keeps one of them.
    """
    direction = tf.cast(tf.round(tf.math.atan2(dy, dx) / (math.pi / 4)), tf.int32) % 4
    padded = tf.pad(magnitude, [[0, 0], [1, 1], [1, 1]])
    height, width = tf.shape(magnitude)[1], tf.shape(magnitude)[2]

    def neighbour(row, column):
        return padded[:, 1 + row : 1 + row + height, 1 + column : 1 + column + width]

    kept = tf.zeros_like(magnitude, tf.bool)
    for index, (row, column) in enumerate(_ACROSS_EDGE):
        maximal = (magnitude > neighbour(-row, -column)) & (
            magnitude >= neighbour(row, column)
        )
        kept |= (direction == index) & maximal
    return tf.where(kept, magnitude, 0.0)


# --- Arrays: .npz (mnist) and IDX (fashion_mnist) ----------------------------------

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_npz(path, split, dataset):
    key = f"x_{split}"
    with _open_npz(path) as arrays:
        if key not in arrays:  # a file without this split, as a folder without its file
            raise DataSourceError(
                f"{path} has no {split} split ({key!r}); it holds {sorted(arrays.files)}"
            )
        images = _npz_array(path, arrays, key)
    return _checked_images(f"{path}: {key}", images, dataset)


def _read_npz_labels(path, split, dataset):
    key = f"y_{split}"
    with _open_npz(path) as arrays:
        if key not in arrays:  # images without labels: fine unless labels are needed
            raise DataSourceError(
                f"{path} has no labels {key!r}; it holds {sorted(arrays.files)}"
            )
        labels = _npz_array(path, arrays, key)
        count = len(_npz_array(path, arrays, f"x_{split}"))
    return _checked_labels(f"{path}: {key}", labels, count, dataset)


def _open_npz(path):
    """The NpzFile at `path`; a .npy, a pickle or random bytes are refused by name."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"{path} is not a readable .npz file ({error}); save the arrays with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        ) from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not an .npz of named arrays; save them with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    return arrays


def _npz_array(path, arrays, key):
    if key not in arrays:
        raise DataError(f"{path} has no array {key!r}; it holds {sorted(arrays.files)}")
    try:
        return arrays[key]
    except ValueError as error:  # object arrays need pickle, which is never allowed
        raise DataError(f"{path}: cannot read {key!r} ({error})") from None


def _checked_images(where, images, dataset):
    """uint8 (N, H, W, C) images of the dataset's shape; `where` names the array."""
    if images.dtype != np.uint8:
        raise DataError(_not_uint8_message(where, images))
    height, width, channels = dataset.shape
    images = _with_channels(images)
    if images.ndim != 4 or images.shape[1:] != (height, width, channels):
        raise DataError(
            f"{where} has shape {images.shape}; {dataset.name} images must be "
            f"(N, {height}, {width}) or (N, {height}, {width}, {channels})"
        )
    if len(images) == 0:
        raise DataError(f"{where} holds no images")
    return images


def _not_uint8_message(where, array):
    """Why an array is not uint8 pixels, and the conversion that fits its values."""
    message = f"{where} is {array.dtype}, but images must be uint8 (0 to 255)"
    if array.dtype.kind not in "biuf" or array.size == 0:
        return message
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return message + "; it holds NaN or infinite values"
    low, high = array.min().item(), array.max().item()
    if array.dtype.kind == "f" and 0 <= low and high <= 1:
        return (
            message + f"; its values lie in [{low:g}, {high:g}], so convert with "
            "(x * 255).round().astype('uint8')"
        )
    if array.dtype.kind in "iu" and 0 <= low and high <= 255:
        return message + "; its values fit 0..255, so convert with x.astype('uint8')"
    return (
        message + f"; its values lie in [{low:g}, {high:g}]: scale them to 0..255 "
        "and convert with .astype('uint8')"
    )


def _checked_labels(where, labels, count, dataset):
    """int32 (N, 1) class indices, one per image, each in the dataset's class range."""
    (classes,) = dataset.classes.values()
    if labels.ndim != 1:
        raise DataError(
            f"{where} has shape {labels.shape}; labels must be 1-D, one class index "
            "per image (flatten them with y.reshape(-1))"
        )
    if labels.dtype.kind not in "iu":
        raise DataError(
            f"{where} is {labels.dtype}; labels must be integer class indices "
            "(convert whole numbers with y.astype('uint8'))"
        )
    if len(labels) != count:
        raise DataError(f"{where} has {len(labels)} labels for {count} images")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(
            f"{where} has labels from {labels.min()} to {labels.max()}; {dataset.name} "
            f"has {len(classes)} classes, numbered 0 to {len(classes) - 1}"
        )
    return labels.astype(np.int32)[:, None]


def _read_idx_folder(path, split, dataset):
    images_file, labels_file = (Path(path) / name for name in _FASHION_FILES[split])
    if not images_file.exists():
        raise DataSourceError(f"{path} has no {images_file.name}")
    images = read_idx(images_file)
    _check_idx_rank(images_file, images.shape, 3)
    if labels_file.exists():
        # Cheap (the header only), and a mismatch means the two files are not a pair.
        labels_shape = _idx_shape(labels_file)
        _check_idx_rank(labels_file, labels_shape, 1)
        if labels_shape[0] != len(images):
            raise DataError(
                f"{images_file} holds {len(images)} images but {labels_file} "
                f"{labels_shape[0]} labels; use the two files of one release"
            )
    return _checked_images(str(images_file), images, dataset)


def _read_idx_labels(path, split, dataset):
    images_file, labels_file = (Path(path) / name for name in _FASHION_FILES[split])
    if not labels_file.exists():
        raise DataSourceError(f"{path} has no {labels_file.name}")
    labels = read_idx(labels_file)
    _check_idx_rank(labels_file, labels.shape, 1)
    count = len(labels)
    if images_file.exists():
        images_shape = _idx_shape(images_file)
        _check_idx_rank(images_file, images_shape, 3)
        count = images_shape[0]
    return _checked_labels(str(labels_file), labels, count, dataset)


def _check_idx_rank(path, shape, rank):
    """IDX images are rank 3 (N, 28, 28), labels rank 1; a swap shows up here."""
    if len(shape) != rank:
        kind = "images, (N, height, width)" if rank == 3 else "labels, (N,)"
        raise DataError(
            f"{path} holds an array of shape {tuple(shape)} where {kind} belong; "
            "are the images and labels files swapped?"
        )


def read_idx(path) -> np.ndarray:
    """The array in an IDX file (the MNIST format), gzipped or not.

    Only unsigned bytes (type 0x08) are read; a body shorter or longer than the
    header's shape is refused, since either means a damaged or mislabelled file.
    """
    data = _read_idx_bytes(path, size=-1)
    shape, offset = _idx_header(path, data)
    expected, found = math.prod(shape), len(data) - offset
    if found < expected:
        raise DataError(
            f"{path} is truncated: expected {expected} values, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path} has {found - expected} bytes after the {expected} values its "
            f"header {shape} announces; the file is damaged or not one IDX array"
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _idx_shape(path):
    """The shape in an IDX file's header, without reading its body."""
    head = _read_idx_bytes(path, size=4)
    if len(head) == 4:
        head += _read_idx_bytes(path, size=4 + 4 * head[3])[4:]
    return _idx_header(path, head)[0]


def _read_idx_bytes(path, size):
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as file:
            return file.read(size)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file ({error})") from None


def _idx_header(path, data):
    """(shape, body offset) from the magic number: 0, 0, type 0x08, rank; then dims."""
    if len(data) < 4 or data[:2] != b"\0\0":
        raise DataError(
            f"{path} is not an IDX file: it starts with {data[:4].hex(' ')!r}, "
            "not 00 00 08 <rank>"
        )
    if data[2] != 0x08:
        raise DataError(
            f"{path} holds IDX values of type 0x{data[2]:02x}; only unsigned bytes "
            "(0x08), as in the MNIST files, are read"
        )
    rank, offset = data[3], 4 + 4 * data[3]
    if rank == 0 or len(data) < offset:
        raise DataError(f"{path} has a truncated or empty IDX header (rank {rank})")
    return struct.unpack(f">{rank}I", data[4:offset]), offset


def _with_channels(images):
    return images[..., None] if images.ndim == 3 else images


# --- Faces: a tar or folder of images, and the labels file beside it ---------------

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_FACE_COLUMNS = ("member", "split")
_FACE_LABEL_COLUMNS = ("age", "gender")


class _FaceRow(NamedTuple):
    line: int
    split: str
    age: int | None
    gender: str | None


class _FaceTable(NamedTuple):
    path: Path
    header: tuple[str, ...]
    rows: dict[str, _FaceRow]


def _read_faces(path, split, dataset):
    """Face images of one split, sorted by member name, decoded and resized to 64x64 RGB."""
    path = _checked_faces_source(path)
    table = _read_face_table(path)
    _check_split_known(path, table, split)
    names, blobs = _face_files(path, lambda name: _in_split(table, name, split))
    members = _split_members(path, table, names, split)
    try:
        return decode_images(
            members, [blobs[member] for member in members], dataset.shape[0]
        )
    except ImageError as error:
        raise DataError(f"{path}: {error}") from None


def _read_face_labels(path, split, dataset):
    """(age group, gender) per image of the split, looked up by member name."""
    path = _checked_faces_source(path)
    table = _read_face_table(path)
    if table is None:
        raise DataSourceError(
            f"{path} has no labels file {_labels_path(path).name} "
            "(columns member, split, age, gender)"
        )
    missing = [column for column in _FACE_LABEL_COLUMNS if column not in table.header]
    if missing:
        raise DataError(
            f"{table.path} line 1: no column {' or '.join(missing)}, so no labels; "
            f"the header is {list(table.header)}"
        )
    names, _ = _face_files(path, lambda name: False)
    members = _split_members(path, table, names, split)
    labels = [_face_label(table.rows[member]) for member in members]
    return np.asarray(labels, np.int32).reshape(-1, 2)


def _face_label(row):
    group = next(
        i for i, (low, high) in enumerate(AGE_GROUPS) if low <= row.age <= high
    )
    return group, _GENDERS.index(row.gender)


def _checked_faces_source(path):
    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        raise DataError(
            f"{path} is neither a file nor a folder; give a tar of face images "
            "or a folder of them"
        )
    return path


def _labels_path(path):
    return (
        path.with_name(path.stem + "_labels.tsv")
        if path.is_file()
        else path / "labels.tsv"
    )


def _read_face_table(path):
    """The labels file beside the faces, parsed once and checked row by row; None if absent.

    Columns are found by name and rows keyed by member, so neither the order of
    the columns nor that of the rows can shift a label onto another image.
    """
    table_path = _labels_path(path)
    if not table_path.exists():
        return None
    lines = _read_table_lines(table_path)
    header = _table_header(table_path, lines[0])
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        member, row = _parse_face_row(table_path, number, line, header)
        if member in rows:
            raise DataError(
                f"{table_path} line {number}: member {member!r} again, first on "
                f"line {rows[member].line}; keep one row per image"
            )
        rows[member] = row
    return _FaceTable(table_path, header, rows)


def _read_table_lines(table_path):
    # utf-8-sig: a byte-order mark left by a spreadsheet must not stick to "member".
    try:
        text = table_path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as error:
        raise DataError(
            f"{table_path} is not a readable UTF-8 text file ({error})"
        ) from None
    # Split on newlines only, so line numbers are the ones an editor shows.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _table_header(table_path, line):
    header = tuple(line.split("\t"))
    missing = [column for column in _FACE_COLUMNS if column not in header]
    if missing:
        raise DataError(
            f"{table_path} line 1: the header {list(header)} lacks the column "
            f"{' and '.join(missing)}; it needs member and split (age and gender "
            "for labels), separated by tabs"
        )
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise DataError(
            f"{table_path} line 1: the column {repeated[0]!r} appears twice in "
            f"the header {list(header)}"
        )
    return header


def _parse_face_row(table_path, number, line, header):
    """(member, _FaceRow) of line `number`, every field checked."""
    where = f"{table_path} line {number}"
    fields = line.split("\t")
    if len(fields) != len(header):
        raise DataError(
            f"{where}: {len(fields)} fields where the header has {len(header)} "
            f"({', '.join(header)}): {line!r}; separate fields with one tab each"
        )
    value = dict(zip(header, fields))
    if not value["member"]:
        raise DataError(f"{where}: the member name is empty")
    if value["split"] not in SPLITS:
        raise DataError(
            f"{where}: split {value['split']!r} is not one of {', '.join(SPLITS)}"
        )
    age = _parse_age(where, value["age"]) if "age" in value else None
    gender = value.get("gender")
    if gender is not None and gender not in _GENDERS:
        raise DataError(
            f"{where}: gender {gender!r} is not one of {', '.join(_GENDERS)}"
        )
    return value["member"], _FaceRow(
        int(where.rsplit(" ", 1)[1]), value["split"], age, gender
    )


def _parse_age(where, text):
    oldest = AGE_GROUPS[-1][1]
    if not re.fullmatch(r"[0-9]+", text) or int(text) > oldest:
        raise DataError(
            f"{where}: age {text!r} is not a whole number of years from 0 to {oldest}"
        )
    return int(text)


def _check_split_known(path, table, split):
    if table is None and split == "test":
        raise DataSourceError(
            f"{path} has no labels file ({_labels_path(path).name}) saying which "
            "images are test images; without one every image is in 'train'"
        )


def _in_split(table, name, split):
    if table is None:
        return _is_image_name(name)
    row = table.rows.get(name)
    return row is not None and row.split == split


def _is_image_name(name):
    return name.lower().endswith(_IMAGE_SUFFIXES)


def _split_members(path, table, names, split):
    """The split's members, sorted: the one order that images and labels share."""
    images = sorted(name for name in names if _is_image_name(name))
    if not images:
        raise DataError(
            f"{path} holds no images (no file ending in {', '.join(_IMAGE_SUFFIXES)})"
        )
    if table is None:
        return images
    _check_rows_match_files(path, table, names, images)
    members = sorted(m for m, row in table.rows.items() if row.split == split)
    if not members:
        raise DataSourceError(
            f"{path} holds no images for split {split!r}: {table.path} puts none there"
        )
    return members


def _check_rows_match_files(path, table, names, images):
    """Every row names a file, and every image has a row: no image is silently dropped."""
    missing = [(row.line, m) for m, row in table.rows.items() if m not in names]
    if missing:
        line, member = missing[0]
        raise DataError(
            f"{table.path} line {line}: member {member!r} is not in {path} "
            f"({len(missing)} rows name files it does not hold); fix the names "
            "or remove those rows"
        )
    unlisted = [name for name in images if name not in table.rows]
    if unlisted:
        raise DataError(
            f"{path} holds {len(unlisted)} images with no row in {table.path}, such "
            f"as {unlisted[0]!r}; add a row (member, split, ...) for each, or remove "
            "those images"
        )


def _face_files(path, keep):
    """(names of all regular files, name -> bytes of those that `keep` accepts)."""
    return (_tar_files if path.is_file() else _folder_files)(path, keep)


def _tar_files(path, keep):
    """Like _face_files for a tar (plain or compressed); never extracts, so no path escapes."""
    names, blobs = set(), {}
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                _check_member_name(path, member.name)
                if member.isfile():
                    names.add(member.name)
                    if keep(member.name):
                        blobs[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path} is not a tar archive or an image folder, or a damaged tar "
            f"({error}); give a tar (plain or compressed) or a folder of face images"
        ) from None
    return names, blobs


def _check_member_name(path, name):
    parts = PurePosixPath(name)
    if parts.is_absolute() or ".." in parts.parts:
        raise DataError(f"{path} has an unsafe member name {name!r}; refusing it")


def _folder_files(path, keep):
    names, blobs = set(), {}
    for file in sorted(path.rglob("*")):
        name = file.relative_to(path).as_posix()
        if file.is_file():
            names.add(name)
            if keep(name):
                blobs[name] = file.read_bytes()
    return names, blobs


# --- TFDS, when online ---------------------------------------------------------------


def _from_tfds(dataset, split, labels):
    """One split's images or labels from TFDS (downloaded once), shaped like local ones."""
    import tensorflow_datasets as tfds

    examples = tfds.load(dataset.tfds_name, split=split)
    if labels:
        values = examples.map(lambda example: example["label"])
    else:
        prepare = dataset.tfds_image or (lambda example: example["image"])
        values = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    array = np.concatenate(list(tfds.as_numpy(values.batch(4096))))
    return array.astype(np.int32)[:, None] if labels else _with_channels(array)


def _celeb_a_face(example):
    """The DCGAN convention for CelebA: the central 178x178 crop, resized to 64."""
    image = tf.image.crop_to_bounding_box(example["image"], 20, 0, 178, 178)
    image = tf.image.resize(image, (FACES_SIZE, FACES_SIZE), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


# --- The registry: one record per dataset --------------------------------------------

REGISTRY = {
    "faces": Dataset(
        name="faces",
        kind="images",
        shape=(FACES_SIZE, FACES_SIZE, 3),
        read=_read_faces,
        how_to_get="A tar or folder of face images works; a '<name>_labels.tsv' "
        "beside it (columns member, split; age and gender for labels) gives the "
        "train/test split.",
        root_names=("faces64.tar", "faces"),
        read_labels=_read_face_labels,
        classes={
            "age": ("0-12", "13-29", "30-44", "45-64", "65+"),  # the AGE_GROUPS
            "gender": _GENDERS,
        },
        # CelebA has no ages, so faces labels come from local files only.
        tfds_name="celeb_a",
        tfds_image=_celeb_a_face,
    ),
    "mnist": Dataset(
        name="mnist",
        kind="images",
        shape=(28, 28, 1),
        read=_read_npz,
        how_to_get="Any .npz with the keras.datasets keys (x_train, y_train, "
        "x_test, y_test) works.",
        root_names=("mnist.npz",),
        fixed_paths=("~/.keras/datasets/mnist.npz",),
        read_labels=_read_npz_labels,
        classes={"digit": tuple("0123456789")},
        tfds_name="mnist",
        tfds_labels=True,
    ),
    "fashion_mnist": Dataset(
        name="fashion_mnist",
        kind="images",
        shape=(28, 28, 1),
        read=_read_idx_folder,
        how_to_get="On Debian: apt-get install dataset-fashion-mnist "
        "(/usr/share/datasets/fashion-mnist).",
        root_names=("fashion-mnist",),
        fixed_paths=(
            "/usr/share/datasets/fashion-mnist",
            "~/.keras/datasets/fashion-mnist",
        ),
        read_labels=_read_idx_labels,
        classes={
            "class": (
                "t-shirt/top",
                "trouser",
                "pullover",
                "dress",
                "coat",
                "sandal",
                "shirt",
                "sneaker",
                "bag",
                "ankle boot",
            )
        },
        tfds_name="fashion_mnist",
        tfds_labels=True,
    ),
}


def _paired_record(made_from: str, kind: str) -> Dataset:
    """The paired dataset `<made_from>_<kind>`: `made_from`'s images as targets
    (same sources, split and labels), inputs made from them by `paired(kind, ...)`."""
    source = REGISTRY[made_from]
    return dataclasses.replace(
        source,
        name=f"{made_from}_{kind}",
        kind="paired",
        how_to_get=f"Its pairs are made from {made_from}. {source.how_to_get}",
        made_from=made_from,
        input_kind=kind,
    )


# Image-to-image pairs of faces: a sketch, the grayscale photo, a 16x16 photo in.
REGISTRY.update(
    (record.name, record)
    for record in (_paired_record("faces", kind) for kind in PAIRED_KINDS)
)
# Views of the registry, kept for callers that want only names or label heads.
DATASETS = tuple(REGISTRY)
CLASSES = {
    name: dict(record.classes)
    for name, record in REGISTRY.items()
    if record.read_labels
}
