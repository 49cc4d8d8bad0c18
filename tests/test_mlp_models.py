"""The articles' MLP models: their architectures by hand count, and the dropout they use."""

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import zoo
from keras_gen.models import MLPGAN, VAE, networks


def dense(inputs, outputs):
    return inputs * outputs + outputs


def batch_norm(width):
    return 4 * width  # gamma, beta, moving mean and variance


def test_the_keras_articles_gan_has_the_articles_layers():
    model = MLPGAN(image_size=28, channels=1)  # the defaults are the article's
    # G: 100 -> 128 ReLU BN -> 256 ReLU BN -> 512 ReLU BN -> 784 tanh.
    generator = dense(100, 128) + dense(128, 256) + dense(256, 512) + dense(512, 784)
    generator += batch_norm(128) + batch_norm(256) + batch_norm(512)
    assert model.generator.count_params() == generator
    # D: 784 -> 512 ReLU, dropout -> 256 ReLU, dropout -> 1; the dropout layers
    # hold one call counter each.
    discriminator = dense(784, 512) + dense(512, 256) + dense(256, 1)
    assert model.discriminator.count_params() == discriminator + 2
    kinds = [type(layer).__name__ for layer in model.discriminator.layers]
    assert kinds == [
        "Flatten",
        "Dense",
        "ReLU",
        "ReplicaDropout",
        "Dense",
        "ReLU",
        "ReplicaDropout",
        "Dense",
    ]


def test_the_small_articles_gan_has_its_layers():
    config = zoo.card("gan_mlp_small_mnist")["model"]["config"]
    model = MLPGAN(**config)
    assert model.generator.count_params() == (
        dense(100, 128) + dense(128, 256) + dense(256, 784)
    )
    assert model.discriminator.count_params() == (
        dense(784, 256) + dense(256, 128) + dense(128, 1)
    )
    slopes = [
        layer.negative_slope
        for layer in model.discriminator.layers
        if type(layer).__name__ == "LeakyReLU"
    ]
    assert slopes == [pytest.approx(0.2)] * 2


def test_the_articles_vae_has_its_layers_and_vae_mnists_latent_size():
    config = zoo.card("vae_mlp_mnist")["model"]["config"]
    model = VAE(**config)
    assert model.latent_dim == zoo.card("vae_mnist")["model"]["config"]["latent_dim"]
    assert model.encoder.count_params() == dense(784, 256) + dense(256, 2 * 16)
    assert model.decoder.count_params() == dense(16, 256) + dense(256, 784)


def test_unknown_networks_and_activations_are_refused():
    with pytest.raises(ValueError, match="network must be one of"):
        VAE(network="transformer")
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPGAN(image_size=8, channels=1, discriminator_activation="tanh")
    with pytest.raises(ValueError, match="dropout rate"):
        networks.ReplicaDropout(1.0)


def test_replica_dropout_drops_the_rate_and_keeps_the_expected_value():
    layer = networks.ReplicaDropout(0.3, seed=1)
    ones = tf.ones((200, 500))
    first = np.asarray(layer(ones, training=True))
    dropped = (first == 0).mean()
    assert dropped == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(first[first != 0], 1 / 0.7, rtol=1e-6)
    second = np.asarray(layer(ones, training=True))
    assert not np.array_equal(first == 0, second == 0)  # a fresh mask per call
    np.testing.assert_array_equal(layer(ones, training=False), ones)
    # The masks follow from the seed and the call count alone.
    again = networks.ReplicaDropout(0.3, seed=1)
    np.testing.assert_array_equal(np.asarray(again(ones, training=True)), first)
