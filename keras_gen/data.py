"""Named image datasets as tf.data pipelines, from local files first and TFDS when online.

Every dataset yields float32 images in [0, 1], shape (batch, height, width, channels).
Local sources are tried in order: the `source` argument, then the folder named by
the `KERAS_GEN_DATA` environment variable, then the usual places on this machine.
"""

import concurrent.futures
import gzip
import os
import struct
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow as tf

DATASETS = ("faces", "mnist", "fashion_mnist")
# The labels each dataset carries: head name -> class names, in label-index order.
# Faces' ages (years) are grouped into spans wide enough to judge from a 64x64 face.
AGE_GROUPS = ((0, 12), (13, 29), (30, 44), (45, 64), (65, 200))
CLASSES = {
    "mnist": {"digit": tuple("0123456789")},
    "fashion_mnist": {
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
    "faces": {
        "age": ("0-12", "13-29", "30-44", "45-64", "65+"),
        "gender": ("female", "male"),
    },
}
SPLITS = ("train", "test")
FACES_SIZE = 64
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DataSourceError(FileNotFoundError):
    """No source of a dataset could be read; the message lists every one tried."""


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
    seed on the test split, so test scores are comparable between runs.
    """
    images = load_images(name, split, source=source, download=download)
    return pipeline(
        images,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        binarize=None if not binarize else ("dynamic" if split == "train" else "fixed"),
        drop_remainder=drop_remainder,
    )


def pipeline(
    images,
    *,
    batch_size=64,
    shuffle=True,
    seed=0,
    binarize=None,
    drop_remainder=False,
    labels=None,
):
    """uint8 images in memory -> shuffled float batches; shuffling indices keeps it cheap.

    With `labels` (int, (N, heads)) each batch is (images, labels).
    """
    images = tf.constant(images)
    label_table = None if labels is None else tf.constant(labels, tf.int32)
    count = int(images.shape[0])
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=drop_remainder)
    # One random key per batch, new on every pass over the data yet fixed by `seed`:
    # stateless noise keyed by it binarizes afresh each epoch, reproducibly.
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def to_float(index, key):
        batch = tf.cast(tf.gather(images, index), tf.float32) / 255.0
        if binarize == "fixed":
            # Each image gets its own noise, keyed by its index: fixed whatever the order.
            batch = tf.map_fn(
                lambda pair: _bernoulli(pair[0], tf.stack([seed, pair[1]])),
                (batch, index),
                fn_output_signature=tf.float32,
            )
        elif binarize == "dynamic":
            batch = _bernoulli(batch, tf.stack([key, seed]))
        if label_table is None:
            return batch
        return batch, tf.gather(label_table, index)

    return (
        tf.data.Dataset.zip(batches, keys)
        .map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
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
) -> tf.data.Dataset:
    """Endless training batches in which batch t is a pure function of (seed, t).

    Pass e over the data visits every image once (dropping the last partial
    batch) in an order given by a stateless shuffle keyed by (seed, e), so a run
    resumed at step t sees exactly the batches it would have seen, whatever the
    number of replicas or restarts. `binarize` draws fresh pixels at every step.
    With `labels` (int32, (N, heads)) each batch is (images, labels).
    """
    images = tf.constant(images)
    label_table = None if labels is None else tf.constant(labels, tf.int32)
    count = int(images.shape[0])
    steps_per_pass = count // batch_size
    if steps_per_pass < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {count} images")

    def batch(step):
        data_pass, position = step // steps_per_pass, step % steps_per_pass
        offsets = position * batch_size + tf.range(batch_size, dtype=tf.int64)
        key = tf.stack([tf.constant(seed, tf.int64), data_pass])
        indices = tf.random.experimental.index_shuffle(offsets, key, count - 1)
        pixels = tf.cast(tf.gather(images, indices), tf.float32) / 255.0
        if binarize:
            pixels = _bernoulli(pixels, tf.stack([key[0], -1 - step]))
        if label_table is None:
            return pixels
        return pixels, tf.gather(label_table, indices)

    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def load_labels(
    name: str, split: str = "train", *, source: str | os.PathLike | None = None
) -> np.ndarray:
    """Labels of one split, int32 (N, heads), aligned with `load_images`; heads in CLASSES.

    Read from the same local files as the images (faces: the labels file beside
    them, ages grouped into AGE_GROUPS); TFDS when online for mnist and fashion_mnist.
    """
    if name not in CLASSES:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(CLASSES)}"
        )
    tried = []
    for candidate in _local_candidates(name, source):
        if candidate.exists():
            return _LABEL_READERS[name](candidate, split)
        tried.append(str(candidate))
    if name != "faces":
        try:
            return _labels_from_tfds(name, split)
        except Exception as error:  # noqa: BLE001 - reported below with every source tried
            tried.append(
                f"TFDS {_TFDS_NAMES[name]!r} ({type(error).__name__}: {error})"
            )
    raise DataSourceError(
        f"no labels for dataset {name!r}. Tried:\n  - "
        + "\n  - ".join(tried)
        + f"\n{_HOW_TO_GET[name]}"
    )


def class_names(name: str) -> dict[str, tuple[str, ...]]:
    """Head name -> class names of a dataset's labels."""
    return {head: tuple(names) for head, names in CLASSES[name].items()}


def _bernoulli(intensities, seed):
    """Binary pixels drawn from Bernoulli(intensity) with a stateless seed."""
    noise = tf.random.stateless_uniform(tf.shape(intensities), seed=seed)
    return tf.cast(noise < intensities, tf.float32)


def load_images(
    name: str,
    split: str = "train",
    *,
    source: str | os.PathLike | None = None,
    download: bool = True,
) -> np.ndarray:
    """All images of one split as a uint8 array (N, H, W, C)."""
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    tried = []
    for candidate in _local_candidates(name, source):
        if candidate.exists():
            return _READERS[name](candidate, split)
        tried.append(str(candidate))
    if download:
        try:
            return _from_tfds(name, split)
        except Exception as error:  # noqa: BLE001 - reported below with every source tried
            tried.append(
                f"TFDS {_TFDS_NAMES[name]!r} ({type(error).__name__}: {error})"
            )
    else:
        tried.append("TFDS (not tried: download=False)")
    raise DataSourceError(
        f"no source for dataset {name!r}. Tried:\n  - "
        + "\n  - ".join(tried)
        + f"\nProvide one with source=PATH (keras-gen train --data PATH), or put the "
        f"files in the folder named by KERAS_GEN_DATA. {_HOW_TO_GET[name]}"
    )


def _local_candidates(name, source):
    if source is not None:
        yield Path(source).expanduser()
        return
    roots = (
        [Path(os.environ["KERAS_GEN_DATA"])] if os.environ.get("KERAS_GEN_DATA") else []
    )
    if name == "faces":
        for root in roots:
            yield root / "faces64.tar"
            yield root / "faces"
    elif name == "mnist":
        for root in roots:
            yield root / "mnist.npz"
        yield Path("~/.keras/datasets/mnist.npz").expanduser()
    else:
        for root in roots:
            yield root / "fashion-mnist"
        yield Path("/usr/share/datasets/fashion-mnist")
        yield Path("~/.keras/datasets/fashion-mnist").expanduser()


_HOW_TO_GET = {
    "faces": "A tar or folder of face images works; a '<name>_labels.tsv' beside it "
    "(columns member, split) gives the train/test split.",
    "mnist": "Any .npz with the keras.datasets keys (x_train, x_test) works.",
    "fashion_mnist": "On Debian: apt-get install dataset-fashion-mnist "
    "(/usr/share/datasets/fashion-mnist).",
}


def _read_npz(path, split):
    with np.load(path, allow_pickle=False) as arrays:
        key = f"x_{split}"
        if key not in arrays:
            raise ValueError(
                f"{path} has no array {key!r}; it holds {sorted(arrays.files)}"
            )
        return _with_channels(arrays[key])


def _read_npz_labels(path, split):
    with np.load(path, allow_pickle=False) as arrays:
        key = f"y_{split}"
        if key not in arrays:
            raise ValueError(
                f"{path} has no array {key!r}; it holds {sorted(arrays.files)}"
            )
        return arrays[key].astype(np.int32)[:, None]


def _read_idx_labels(path, split):
    labels_file = Path(path) / _FASHION_FILES[split][1]
    if not labels_file.exists():
        raise DataSourceError(f"{path} has no {labels_file.name}")
    return read_idx(labels_file).astype(np.int32)[:, None]


def _read_face_labels(path, split):
    """(age group, gender) per image of the split, in the sorted order images load in."""
    path = Path(path)
    table = _labels_path(path)
    if not table.exists():
        raise DataSourceError(
            f"{path} has no labels file {table.name} (columns member, age, gender, split)"
        )
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    missing = {"member", "age", "gender", "split"} - set(header)
    if missing:
        raise ValueError(
            f"{table} lacks the columns {sorted(missing)}; it has {header}"
        )
    column = {name: header.index(name) for name in ("member", "age", "gender", "split")}
    genders = CLASSES["faces"]["gender"]
    rows = sorted(
        row
        for row in (line.split("\t") for line in lines[1:] if line)
        if row[column["split"]] == split
    )
    labels = []
    for row in rows:
        age, gender = int(row[column["age"]]), row[column["gender"]]
        if gender not in genders:
            raise ValueError(f"{table}: gender {gender!r} is not one of {genders}")
        group = next(
            i for i, (low, high) in enumerate(AGE_GROUPS) if low <= age <= high
        )
        labels.append((group, genders.index(gender)))
    return np.asarray(labels, np.int32).reshape(-1, 2)


def _read_idx_folder(path, split):
    images_file = Path(path) / _FASHION_FILES[split][0]
    if not images_file.exists():
        raise DataSourceError(f"{path} has no {images_file.name}")
    return _with_channels(read_idx(images_file))


def read_idx(path) -> np.ndarray:
    """The array in an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    rank = data[3]
    shape = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if body.size != np.prod(shape):
        raise ValueError(
            f"{path} is truncated: expected {np.prod(shape)} values, found {body.size}"
        )
    return body.reshape(shape)


def _with_channels(images):
    return images[..., None] if images.ndim == 3 else images


def _read_faces(path, split):
    """Face images from a tar or a folder, decoded and resized to 64x64 RGB."""
    path = Path(path)
    splits = _read_splits(path)
    if splits is None and split == "test":
        raise DataSourceError(
            f"{path} has no labels file ({_labels_path(path).name}) saying which "
            "images are test images; without one every image is in 'train'"
        )
    wanted = None if splits is None else {n for n, s in splits.items() if s == split}
    read = _tar_images if path.is_file() else _folder_images
    blobs = read(path, wanted)
    if wanted is not None and len(blobs) < len(wanted):
        missing = sorted(wanted - blobs.keys())
        raise ValueError(
            f"{_labels_path(path)} names {len(missing)} images not in {path}, such as {missing[0]!r}"
        )
    if not blobs:
        raise DataSourceError(f"{path} holds no images for split {split!r}")
    names = sorted(blobs)
    return decode_images(names, [blobs[n] for n in names])


def _labels_path(path):
    return (
        path.with_name(path.stem + "_labels.tsv")
        if path.is_file()
        else path / "labels.tsv"
    )


def _read_splits(path):
    labels = _labels_path(path)
    if not labels.exists():
        return None
    lines = labels.read_text().splitlines()
    header = lines[0].split("\t")
    if "member" not in header or "split" not in header:
        raise ValueError(
            f"{labels} needs the columns 'member' and 'split'; it has {header}"
        )
    member, split = header.index("member"), header.index("split")
    return {
        row[member]: row[split]
        for row in (line.split("\t") for line in lines[1:] if line)
    }


def _tar_images(path, wanted):
    """name -> bytes of the image files in a tar; never extracts, so no path escapes."""
    images = {}
    with tarfile.open(path) as archive:
        for member in archive:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(
                    f"{path} has an unsafe member name {member.name!r}; refusing it"
                )
            if _is_wanted(member.name, wanted) and member.isfile():
                images[member.name] = archive.extractfile(member).read()
    return images


def _folder_images(path, wanted):
    return {
        name: file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
        and _is_wanted(name := file.relative_to(path).as_posix(), wanted)
    }


def _is_wanted(name, wanted):
    return (
        name in wanted if wanted is not None else name.lower().endswith(_IMAGE_SUFFIXES)
    )


def decode_images(names, blobs, size=FACES_SIZE) -> np.ndarray:
    """Decode encoded images in parallel to uint8 (N, size, size, 3), naming any bad file."""

    def decode(name, blob):
        try:
            image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"cannot decode image {name!r}: {error.message}") from None
        if image.shape[0] != size or image.shape[1] != size:
            side = min(image.shape[0], image.shape[1])
            image = tf.image.resize_with_crop_or_pad(image, side, side)
            image = tf.image.resize(image, (size, size), method="area", antialias=True)
            image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
        return image.numpy()

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return np.stack(list(pool.map(decode, names, blobs)))


_TFDS_NAMES = {"faces": "celeb_a", "mnist": "mnist", "fashion_mnist": "fashion_mnist"}


def _from_tfds(name, split):
    import tensorflow_datasets as tfds

    dataset = tfds.load(_TFDS_NAMES[name], split=split)
    if name == "faces":
        # The DCGAN convention for CelebA: the central 178x178 crop, resized to 64.
        def crop(example):
            image = tf.image.crop_to_bounding_box(example["image"], 20, 0, 178, 178)
            image = tf.image.resize(image, (FACES_SIZE, FACES_SIZE), antialias=True)
            return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)

        dataset = dataset.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda example: example["image"])
    return _with_channels(np.concatenate(list(tfds.as_numpy(dataset.batch(4096)))))


def _labels_from_tfds(name, split):
    import tensorflow_datasets as tfds

    dataset = tfds.load(_TFDS_NAMES[name], split=split).map(lambda e: e["label"])
    return np.concatenate(list(tfds.as_numpy(dataset.batch(4096)))).astype(np.int32)[
        :, None
    ]


_READERS = {"faces": _read_faces, "mnist": _read_npz, "fashion_mnist": _read_idx_folder}
_LABEL_READERS = {
    "faces": _read_face_labels,
    "mnist": _read_npz_labels,
    "fashion_mnist": _read_idx_labels,
}
