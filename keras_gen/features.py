"""Feature extractors for sample-quality metrics, and the on-disk cache of reference features.

Two kinds: a domain `Classifier` preset (`classifier_mnist`, ...), trained by
keras_gen and usable offline, and `inception`, the network of the reference FID
(Heusel et al. 2017): `pool_3` of the 2015 TensorFlow Inception graph.
`keras.applications.InceptionV3` with ImageNet weights is a different network and
gives different numbers, so it is not offered. Numbers from different extractors
are never comparable; every report names the extractor and its sha256.
"""

import hashlib
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow as tf

from keras_gen import _files, progress, zoo

INCEPTION_URL = (
    "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
)
INCEPTION_GRAPH = "classify_image_graph_def.pb"
# Images per progress step of a classifier's features: a multiple of the batch
# size of `Classifier.features` (256), so the batches, and the features, are the
# same as in one call.
FEATURE_CHUNK = 1024


class Extractor:
    """Images in [0, 1] -> features (N, d) and class probabilities per head."""

    name: str
    sha256: str  # of the weights or graph: part of every cache key and report

    def features(self, images) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, images) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def class_names(self) -> dict[str, list[str]]:
        raise NotImplementedError


class ClassifierExtractor(Extractor):
    """A trained `Classifier` preset: 128-d features before its heads, and its heads."""

    def __init__(self, preset: str | os.PathLike):
        folder = zoo.path(preset)
        self.name = folder.name
        self.model = zoo.load(folder)
        self.sha256 = zoo.card(folder)["weights"][zoo.WEIGHTS]["sha256"]

    @property
    def class_names(self):
        return self.model.class_names

    def features(self, images):
        images = self._fit(images)
        chunks = []
        with progress.bar(f"{self.name} features", len(images), "images") as advance:
            for start in range(0, len(images), FEATURE_CHUNK):
                chunk = images[start : start + FEATURE_CHUNK]
                chunks.append(self.model.features(chunk).numpy())
                advance(len(chunk))
        return np.concatenate(chunks) if chunks else self.model.features(images).numpy()

    def probabilities(self, images):
        return {
            head: probabilities.numpy()
            for head, probabilities in self.model.probabilities(
                self._fit(images)
            ).items()
        }

    def _fit(self, images):
        expected = self.model.image_shape
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{self.name} reads images of shape {expected}, these are "
                f"{tuple(images.shape[1:])}; choose the classifier of the model's "
                "dataset, or --features inception"
            )
        return images


class InceptionExtractor(Extractor):
    """pool_3 (2048-d) and the 1008-way softmax of the 2015 TF Inception graph.

    Images go in as float 0..255, at their own size: the graph itself resizes them
    to 299x299 (bilinear) and scales them, exactly as the reference FID code feeds
    its `ExpandDims:0` tensor. Grayscale is repeated to three channels. The file is
    read only after its sha256 matches `sha256`.
    """

    def __init__(self, graph: str | os.PathLike, sha256: str, batch_size: int = 50):
        graph = Path(graph)
        found = _files.sha256(graph)
        if found != sha256:
            raise ValueError(
                f"refusing {graph}: its sha256 is {found}, expected {sha256}"
            )
        self.name, self.sha256, self.batch_size = "inception", sha256, batch_size
        graph_def = tf.compat.v1.GraphDef.FromString(_graph_bytes(graph))
        for node in graph_def.node:  # shapes recorded for batch 1 would pin the batch
            node.attr.pop("_output_shapes", None)
        constants = {node.name: node for node in graph_def.node}
        self._softmax = [
            tf.make_ndarray(constants[f"softmax/{part}"].attr["value"].tensor)
            for part in ("weights", "biases")
        ]

        def pool_3(images):
            (pool,) = tf.import_graph_def(
                graph_def,
                input_map={"ExpandDims:0": images},
                return_elements=["pool_3:0"],
            )
            return tf.reshape(pool, [-1, 2048])

        self._pool_3 = tf.compat.v1.wrap_function(
            pool_3, [tf.TensorSpec([None, None, None, 3], tf.float32)]
        )

    @property
    def class_names(self):
        return {"imagenet": [str(i) for i in range(len(self._softmax[1]))]}

    def features(self, images):
        images = np.asarray(images, np.float32)
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        batches = []
        with progress.bar("inception features", len(images), "images") as advance:
            for i in range(0, len(images), self.batch_size):
                batch = images[i : i + self.batch_size]
                pool = self._pool_3(tf.constant(batch * 255.0))
                batches.append(pool.numpy().astype(np.float32))
                advance(len(batch))
        return np.concatenate(batches)

    def probabilities(self, images):
        weights, biases = self._softmax
        logits = self.features(images).astype(np.float64) @ weights + biases
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return {"imagenet": exponentials / exponentials.sum(axis=1, keepdims=True)}


def _graph_bytes(path: Path) -> bytes:
    """The GraphDef bytes of a .pb, or of the graph inside the official .tgz (never extracted)."""
    if not tarfile.is_tarfile(path):
        return path.read_bytes()
    with tarfile.open(path) as archive:
        for member in archive:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"{path} has an unsafe member name {member.name!r}")
            if name.name == INCEPTION_GRAPH and member.isfile():
                return archive.extractfile(member).read()
    raise ValueError(f"{path} holds no {INCEPTION_GRAPH}")


def inception(graph: str | os.PathLike | None = None) -> InceptionExtractor:
    """The reference FID network, from a local file or downloaded (online users).

    keras_gen pins no checksum for the 2015 archive: it was built offline and could
    not verify one. Give the sha256 you trust in KERAS_GEN_INCEPTION_SHA256 (and
    optionally the file in KERAS_GEN_INCEPTION_GRAPH); nothing unverified is read.
    """
    sha256 = os.environ.get("KERAS_GEN_INCEPTION_SHA256")
    if not sha256:
        raise ValueError(
            "--features inception needs the sha256 of the Inception file you trust: "
            f"download {INCEPTION_URL}, check it, then set "
            "KERAS_GEN_INCEPTION_SHA256=<sha256> (and KERAS_GEN_INCEPTION_GRAPH=<path> "
            "to use that file without downloading)"
        )
    graph = graph or os.environ.get("KERAS_GEN_INCEPTION_GRAPH")
    if graph is None:
        import keras

        graph = keras.utils.get_file(
            "inception-2015-12-05.tgz",
            INCEPTION_URL,
            file_hash=sha256,
            hash_algorithm="sha256",
        )
    return InceptionExtractor(graph, sha256)


def extractor(name: str, dataset: str) -> Extractor:
    """ "auto" (the dataset's classifier preset), "inception", or a classifier preset name."""
    if name == "inception":
        return inception()
    if name == "auto":
        name = f"classifier_{dataset}"
        if name not in zoo.list():
            raise ValueError(
                f"no classifier preset for dataset {dataset!r}; use --features inception "
                "or --features PRESET"
            )
    card = zoo.card(name)
    if card["model"]["class"] != "Classifier":
        raise ValueError(
            f"{name} is a {card['model']['class']}, not a Classifier preset; "
            f"feature presets: {', '.join(n for n in zoo.list() if n.startswith('classifier_'))}"
        )
    return ClassifierExtractor(name)


def cache_dir() -> Path:
    """Where reference features are cached: KERAS_GEN_CACHE, else ~/.cache/keras_gen."""
    return (
        Path(os.environ.get("KERAS_GEN_CACHE", "~/.cache/keras_gen")).expanduser()
        / "features"
    )


def reference_features(
    extractor: Extractor, dataset: str, split: str, images: np.ndarray
) -> np.ndarray:
    """Features of a dataset split, computed once and cached on disk.

    The key holds the dataset, the split, the extractor's sha256 and a hash of the
    images themselves, so different data or weights never reuse a stale file.
    """
    images_digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    file = (
        cache_dir()
        / f"{dataset}-{split}-{extractor.name}-{extractor.sha256[:16]}-{images_digest[:16]}.npy"
    )
    if file.exists():
        return np.load(file, allow_pickle=False)
    features = extractor.features(np.asarray(images, np.float32) / 255.0)
    file.parent.mkdir(parents=True, exist_ok=True)
    with _files.atomic_path(file) as temporary, open(temporary, "wb") as handle:
        np.save(handle, features, allow_pickle=False)
    return features
