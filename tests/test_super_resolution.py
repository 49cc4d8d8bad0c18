"""SuperResolution's own properties; the shared contract runs on it (and on its
adversarial mode) through tiny.FAMILIES."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import metrics, zoo
from keras_gen.models import networks


def test_an_untrained_model_is_bilinear_upsampling():
    model = tiny.super_resolution()
    inputs, _ = tiny.image_pairs(model, 2)
    np.testing.assert_allclose(
        model.translate(inputs),
        tf.clip_by_value(tf.image.resize(inputs, (16, 16), "bilinear"), 0, 1),
        atol=1e-6,
    )


def test_sub_pixel_upsampling_shuffles_channels_into_pixels():
    values = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
    found = np.asarray(networks.SubPixelUpsampling(2)(values))
    assert found.shape == (2, 6, 8, 2)
    for dy in range(2):
        for dx in range(2):
            np.testing.assert_array_equal(
                found[:, dy::2, dx::2, :],
                values[..., (2 * dy + dx) * 2 : (2 * dy + dx + 1) * 2],
            )
    assert networks.SubPixelUpsampling(2).compute_output_shape((None, 3, 4, 8)) == (
        None,
        6,
        8,
        2,
    )


def test_tracked_psnr_is_the_mean_psnr_of_the_clipped_outputs():
    model = tiny.super_resolution()
    model.compile()
    inputs, targets = tiny.image_pairs(model, 6)
    logs = model.evaluate(inputs, targets, batch_size=3, verbose=0, return_dict=True)
    expected = metrics.psnr(model.translate(inputs), targets).mean()
    assert logs["psnr"] == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_classifier_preset(tmp_path_factory):
    """A Classifier preset of 16x16 RGB images: the feature extractor of a tiny SRGAN."""
    card = {
        "description": "tiny classifier",
        "model": {
            "class": "Classifier",
            "config": {
                "image_shape": [16, 16, 3],
                "class_names": {"shape": ["a", "b"]},
                "filters": [4],
                "feature_dim": 4,
            },
        },
        "data": {
            "dataset": "faces",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    folder = tmp_path_factory.mktemp("classifier") / "tiny_classifier"
    return zoo.write(folder, zoo.build(card), json.loads(json.dumps(card)), None)


def test_feature_loss_compares_a_classifier_presets_frozen_feature_maps(
    tiny_classifier_preset,
):
    model = tiny.super_resolution(
        feature_weight=1.0, feature_extractor=str(tiny_classifier_preset)
    )
    classifier = zoo.load(tiny_classifier_preset)
    inputs, targets = tiny.image_pairs(model, 4)
    maps = classifier.feature_network.layers[-3].output  # before global pooling
    expected = keras.Model(classifier.feature_network.inputs[0], maps)(targets)
    np.testing.assert_allclose(model.feature_maps(targets), expected, atol=1e-6)
    frozen = [w.numpy().copy() for w in model.feature_maps.weights]
    assert not model.feature_maps.trainable_weights
    model.compile(generator_optimizer=keras.optimizers.SGD(0.1))
    logs = model.fit(inputs, targets, batch_size=4, verbose=0).history
    assert logs["feature_loss"][0] > 0
    for before, after in zip(frozen, model.feature_maps.weights):
        np.testing.assert_array_equal(before, after)


def test_feature_extractor_must_read_the_outputs_shape(tiny_classifier_preset):
    with pytest.raises(
        ValueError,
        match=r"reads images of shape \(16, 16, 3\), this model makes \(8, 8, 3\)",
    ):
        tiny.super_resolution(
            scale=2, feature_weight=1.0, feature_extractor=str(tiny_classifier_preset)
        )


def test_only_an_adversarial_model_has_a_discriminator_to_optimise():
    plain, adversarial = tiny.super_resolution(), tiny.srgan()
    assert plain.network_optimizers == {"generator_optimizer": "generator"}
    assert set(adversarial.network_optimizers) == {
        "generator_optimizer",
        "discriminator_optimizer",
    }
    with pytest.raises(ValueError, match="has no discriminator .adversarial_weight=0."):
        plain.compile(discriminator_optimizer="adam")
