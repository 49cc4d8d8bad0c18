import hashlib
import io
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from keras_gen import features, zoo


@pytest.fixture(scope="module")
def inception_graph(tmp_path_factory):
    """A frozen graph with the 2015 Inception graph's interface and architecture, random weights.

    Input `ExpandDims:0` (float 0..255, any size), the reference's bilinear resize to
    299 and scaling inside the graph, InceptionV3's layers, `pool_3:0` and the
    `softmax/weights`, `softmax/biases` constants.
    """
    network = keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    )
    rng = np.random.default_rng(0)
    weights = (rng.standard_normal((2048, 1008)) * 0.01).astype("float32")
    biases = rng.standard_normal(1008).astype("float32")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def graph(images):
        x = tf.identity(images, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [299, 299], align_corners=False)
        pool = tf.reshape(
            network((x - 128.0) / 128.0, training=False),
            [-1, 1, 1, 2048],
            name="pool_3",
        )
        logits = tf.matmul(
            tf.reshape(pool, [-1, 2048]), tf.constant(weights, name="softmax/weights")
        ) + tf.constant(biases, name="softmax/biases")
        return pool, logits

    frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
    path = tmp_path_factory.mktemp("inception") / "classify_image_graph_def.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path, network, weights, biases


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inception_features_are_pool_3_of_the_resized_0_to_255_images(
    inception_graph, monkeypatch
):
    path, network, weights, biases = inception_graph
    monkeypatch.setenv("KERAS_GEN_INCEPTION_SHA256", _sha256(path))
    extractor = features.inception(path)
    images = np.random.default_rng(1).random((3, 28, 28, 1)).astype("float32")

    found = extractor.features(images)

    rgb = np.repeat(images, 3, axis=-1) * 255.0
    resized = tf.compat.v1.image.resize_bilinear(rgb, [299, 299], align_corners=False)
    expected = network((resized - 128.0) / 128.0, training=False).numpy()
    assert found.shape == (3, 2048)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)
    logits = expected.astype(np.float64) @ weights + biases
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        extractor.probabilities(images)["imagenet"],
        softmax / softmax.sum(axis=1, keepdims=True),
        rtol=1e-4,
        atol=1e-7,
    )


def test_inception_reads_the_graph_inside_the_official_archive_layout(
    inception_graph, tmp_path, monkeypatch
):
    path = inception_graph[0]
    archive = tmp_path / "inception-2015-12-05.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(path, arcname=features.INCEPTION_GRAPH)
    monkeypatch.setenv("KERAS_GEN_INCEPTION_SHA256", _sha256(archive))
    images = np.zeros((1, 8, 8, 3), np.float32)
    assert features.inception(archive).features(images).shape == (1, 2048)


def test_inception_refuses_unverified_files(inception_graph, tmp_path, monkeypatch):
    path = inception_graph[0]
    monkeypatch.delenv("KERAS_GEN_INCEPTION_SHA256", raising=False)
    with pytest.raises(ValueError, match="KERAS_GEN_INCEPTION_SHA256"):
        features.inception(path)
    monkeypatch.setenv("KERAS_GEN_INCEPTION_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="refusing"):
        features.inception(path)
    unsafe = tmp_path / "unsafe.tgz"
    with tarfile.open(unsafe, "w:gz") as tar:
        info = tarfile.TarInfo("../classify_image_graph_def.pb")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    monkeypatch.setenv("KERAS_GEN_INCEPTION_SHA256", _sha256(unsafe))
    with pytest.raises(ValueError, match="unsafe member"):
        features.inception(unsafe)


def test_extractor_names_are_checked():
    with pytest.raises(ValueError, match="no classifier preset"):
        features.extractor("auto", "no_such_dataset")
    generative = next(
        name for name in zoo.list() if zoo.card(name)["model"]["class"] != "Classifier"
    )
    with pytest.raises(ValueError, match="not a Classifier preset"):
        features.extractor(generative, "mnist")


class CountingExtractor(features.Extractor):
    name, sha256 = "counting", "ab" * 32

    def __init__(self):
        self.calls = 0

    def features(self, images):
        self.calls += 1
        return np.asarray(images, np.float32).reshape(len(images), -1)[:, :3]


def test_reference_features_are_cached_by_data_and_extractor(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEN_CACHE", str(tmp_path))
    extractor = CountingExtractor()
    images = np.random.default_rng(0).integers(0, 255, (5, 4, 4, 1), dtype=np.uint8)

    first = features.reference_features(extractor, "mnist", "train", images)
    again = features.reference_features(extractor, "mnist", "train", images)
    assert extractor.calls == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, images.reshape(5, -1)[:, :3] / 255.0, rtol=1e-6)

    features.reference_features(extractor, "mnist", "train", images[:4])
    features.reference_features(extractor, "mnist", "test", images)
    assert extractor.calls == 3
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3
