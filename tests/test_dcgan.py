import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tiny

from keras_gen import losses
from keras_gen.models import DCGAN, base, noise


def images(count=8, seed=0, size=16, channels=1):
    return (
        np.random.default_rng(seed)
        .random((count, size, size, channels))
        .astype("float32")
    )


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def test_losses_match_hand_computation():
    real = np.array([[2.0], [-1.0], [0.0]], "float32")
    fake = np.array([[-3.0], [0.5], [4.0]], "float32")
    expected_discriminator = -log_sigmoid(real[:, 0]) - log_sigmoid(-fake[:, 0])
    expected_generator = -log_sigmoid(fake[:, 0])
    np.testing.assert_allclose(
        losses.gan_discriminator_losses(real, fake), expected_discriminator, rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.gan_generator_losses(fake), expected_generator, rtol=1e-6
    )
    # Spot value: -log(sigmoid(0)) - log(1 - sigmoid(0)) = 2 log 2.
    assert float(
        losses.gan_discriminator_losses(np.zeros((1, 1)), np.zeros((1, 1)))[0]
    ) == pytest.approx(2 * np.log(2))


def test_train_step_reports_the_losses_of_the_weights_it_started_from():
    model = tiny.dcgan()
    model.compile()
    batch = images()
    latents = noise.replica_normal(len(batch), [4], noise.step_seed(model.seed, 0, 0))
    # Copies, so the check runs on the very weights train_step starts from.
    generator = keras.models.clone_model(model.generator)
    generator.set_weights(model.generator.get_weights())
    discriminator = keras.models.clone_model(model.discriminator)
    discriminator.set_weights(model.discriminator.get_weights())
    fake = generator(latents, training=True)
    real_logits = discriminator(batch * 2 - 1, training=True).numpy()
    fake_logits = discriminator(fake, training=True).numpy()
    expected = np.mean(-log_sigmoid(real_logits) - log_sigmoid(-fake_logits))
    logs = model.train_step(tf.constant(batch))
    assert float(logs["discriminator_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(logs["d_real"]) == pytest.approx(
        np.mean(1 / (1 + np.exp(-real_logits))), rel=1e-5
    )


@pytest.mark.parametrize("size,channels", [(28, 1), (64, 3)])
def test_generate_contract(size, channels):
    model = DCGAN(
        image_size=size,
        channels=channels,
        latent_dim=8,
        generator_filters=4,
        discriminator_filters=4,
    )
    samples = model.generate(5, seed=3)
    assert samples.shape == (5, size, size, channels) and samples.dtype == tf.float32
    assert float(tf.reduce_min(samples)) >= 0.0 and float(tf.reduce_max(samples)) <= 1.0
    np.testing.assert_array_equal(samples, model.generate(5, seed=3))
    assert not np.array_equal(samples, model.generate(5, seed=4))
    assert model.discriminator(images(2, size=size, channels=channels)).shape == (2, 1)


def test_generate_rejects_bad_requests():
    model = tiny.dcgan()
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        model.generate(0)
    with pytest.raises(ValueError, match=r"expected latents of shape \(batch, 4\)"):
        model.decode(np.zeros((2, 7), "float32"))


@pytest.mark.parametrize("bound", [0.5, 1.5])
def test_truncated_latents_follow_scipys_truncated_normal(bound):
    draws = np.asarray(noise.standard_normal(20_000, 5, 7, bound)).ravel()
    expected = scipy.stats.truncnorm(-bound, bound)
    assert np.abs(draws).max() <= bound
    assert scipy.stats.kstest(draws, expected.cdf).pvalue > 1e-3
    assert draws.var() == pytest.approx(expected.var(), rel=0.02)
    again = np.asarray(noise.standard_normal(20_000, 5, 7, bound)).ravel()
    np.testing.assert_array_equal(draws, again)
    np.testing.assert_array_equal(
        noise.standard_normal(4, 3, 1, math.inf), noise.standard_normal(4, 3, 1)
    )


def test_gans_decode_latents_truncated_by_their_config_or_the_call():
    model = tiny.conditional_gan(truncation=0.5)
    for truncation, bound in ((None, 0.5), (2.0, 2.0), (math.inf, None)):
        latents = noise.standard_normal(6, 4, 3, bound)
        np.testing.assert_allclose(
            model.generate(6, seed=3, truncation=truncation, digit="one"),
            model.decode(latents, digit="one"),
            atol=1e-6,
        )
    assert type(model).from_config(model.get_config()).truncation == 0.5
    for bad in (0, -1.0, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="truncation must be None"):
            tiny.dcgan(truncation=bad)
        with pytest.raises(ValueError, match="truncation must be None"):
            model.generate(2, truncation=bad)


def test_sizes_that_cannot_be_reached_are_refused():
    with pytest.raises(ValueError, match="image_size=9"):
        DCGAN(image_size=9)


def test_registered_for_keras_and_in_the_family_registry():
    assert keras.saving.get_registered_name(DCGAN) == "keras_gen>DCGAN"
    assert base.FAMILIES["DCGAN"] is DCGAN
    assert DCGAN.arguments() == [
        "image_size",
        "channels",
        "latent_dim",
        "seed",
        "generator_ema_decay",
        "truncation",
        "generator_filters",
        "discriminator_filters",
    ]
    with pytest.raises(TypeError):
        DCGAN(16)  # every argument is by keyword
