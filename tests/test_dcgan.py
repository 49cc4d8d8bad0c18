import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import losses
from keras_gen.models import DCGAN, base


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
    latents = base.replica_normal(len(batch), [4], base.step_seed(model.seed, 0, 0))
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


def trainable(network):
    return [w.numpy().copy() for w in network.trainable_weights]


def changed(before, network):
    return [
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, network.trainable_weights)
    ]


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_each_network_changes_only_through_its_own_optimizer(frozen):
    model = tiny.dcgan()
    zero, normal = keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.1)
    if frozen == "generator":
        model.compile(generator_optimizer=zero, discriminator_optimizer=normal)
    else:
        model.compile(generator_optimizer=normal, discriminator_optimizer=zero)
    assert {id(v) for v in model.generator_optimizer._trainable_variables} == {
        id(v) for v in model.generator.trainable_variables
    }
    generator_before, discriminator_before = (
        trainable(model.generator),
        trainable(model.discriminator),
    )
    model.fit(images(16), batch_size=16, epochs=1, verbose=0)
    assert (
        int(model.generator_optimizer.iterations)
        == int(model.discriminator_optimizer.iterations)
        == 1
    )
    generator_changed = changed(generator_before, model.generator)
    discriminator_changed = changed(discriminator_before, model.discriminator)
    if frozen == "generator":
        assert not any(generator_changed) and all(discriminator_changed)
    else:
        assert all(generator_changed) and not any(discriminator_changed)


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


def test_sizes_that_cannot_be_reached_are_refused():
    with pytest.raises(ValueError, match="image_size=9"):
        DCGAN(image_size=9)
