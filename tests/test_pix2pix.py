"""Pix2Pix's own properties; the shared contract runs on it through tiny.FAMILIES."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import losses
from keras_gen.models import base, networks


def test_unet_keeps_the_size_and_skips_every_level_but_the_bottleneck():
    generator = networks.build_unet(16, 1, 3, filters=2, dropout=0.5, seed=0)
    assert generator.output_shape == (None, 16, 16, 3)
    concatenations = [
        layer
        for layer in generator.layers
        if isinstance(layer, keras.layers.Concatenate)
    ]
    assert len(concatenations) == 3  # 16 -> 8 -> 4 -> 2 -> 1, skips at 8, 4 and 2
    dropouts = [
        layer
        for layer in generator.layers
        if isinstance(layer, networks.ReplicaDropout)
    ]
    assert [layer.rate for layer in dropouts] == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="power of 2 of at least 8"):
        networks.build_unet(48, 1, 3, filters=2, dropout=0.5, seed=0)


def test_each_patchgan_logit_judges_a_34x34_patch_of_the_pair():
    discriminator = networks.build_patch_discriminator(64, 1, 3, filters=2)
    assert discriminator.output_shape == (None, 16, 16, 1)
    condition = tf.random.stateless_uniform((1, 64, 64, 1), (0, 1))
    images = tf.random.stateless_uniform((1, 64, 64, 3), (0, 2))
    with tf.GradientTape() as tape:
        tape.watch([condition, images])
        logit = discriminator([condition, images])[0, 8, 8, 0]
    for gradient in tape.gradient(logit, [condition, images]):
        rows, columns = np.nonzero(np.abs(np.asarray(gradient)[0]).sum(axis=-1))
        # Both the input and the image are seen: a conditional discriminator.
        assert (
            rows.max() - rows.min() + 1 <= 34
            and columns.max() - columns.min() + 1 <= 34
        )
        assert rows.max() - rows.min() + 1 > 16


def test_generator_loss_is_adversarial_plus_lambda_l1():
    model = tiny.pix2pix(l1_weight=10.0)
    inputs, targets = tiny.image_pairs(model, 2)
    inputs, real = tf.constant(inputs * 2 - 1), tf.constant(targets * 2 - 1)
    fake = model.generator(inputs)
    total, parts = model._generator_losses(fake, inputs, real)
    logits = model.discriminator([inputs, fake], training=True)
    adversarial = tf.reduce_mean(tf.nn.softplus(-logits), axis=[1, 2, 3])
    l1 = tf.reduce_mean(tf.abs(real - fake), axis=[1, 2, 3])
    np.testing.assert_allclose(parts["generator_loss"], adversarial, rtol=1e-5)
    np.testing.assert_allclose(parts["l1_loss"], l1, rtol=1e-5)
    np.testing.assert_allclose(total, adversarial + 10.0 * l1, rtol=1e-5)
    assert type(model).discriminator_loss_weight == 0.5  # the paper halves D's loss


def test_patch_losses_are_means_over_patches_and_equal_the_gan_loss_for_one_logit():
    logits = tf.constant(np.random.default_rng(0).normal(size=(3, 4, 4, 1)), tf.float32)
    np.testing.assert_allclose(
        losses.gan_generator_losses(logits),
        tf.reduce_mean(tf.nn.softplus(-logits), axis=[1, 2, 3]),
        rtol=1e-6,
    )
    one = logits[:, 0, 0, :]  # (batch, 1), as DCGAN's discriminator gives
    np.testing.assert_array_equal(
        losses.gan_discriminator_losses(one, -one),
        tf.nn.softplus(-one[:, 0]) + tf.nn.softplus(-one[:, 0]),
    )


def test_dropout_is_the_noise_of_training_only():
    model = tiny.pix2pix(dropout=0.5)
    inputs, _ = tiny.image_pairs(model, 4)
    np.testing.assert_array_equal(model.translate(inputs), model.translate(inputs))
    first = model(inputs, training=True)
    assert not np.allclose(first, model(inputs, training=True))
    translated = np.asarray(model.translate(inputs))
    assert translated.dtype == np.float32 and translated.shape == (4, 8, 8, 3)
    assert translated.min() >= 0.0 and translated.max() <= 1.0


def test_translate_refuses_inputs_it_was_not_made_for():
    model = tiny.pix2pix()
    with pytest.raises(
        ValueError, match=r"translates inputs of shape \(batch, 8, 8, 1\)"
    ):
        model.translate(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\]"):
        model.translate(np.full((2, 8, 8, 1), 255.0, np.float32))
    with pytest.raises(ValueError, match="the batch is empty"):
        model.translate(np.zeros((0, 8, 8, 1), np.float32))


def test_generate_is_refused_and_says_why():
    model = tiny.pix2pix()
    assert model.can(base.TRANSLATION) and not model.can(base.SAMPLES)
    with pytest.raises(
        base.CapabilityError,
        match="Pix2Pix cannot generate images: it has no 'samples' capability "
        r"\(it has: preview, translation\)",
    ):
        model.generate(4)


def test_fit_without_targets_says_how_to_get_pairs():
    model = tiny.pix2pix()
    model.compile()
    inputs, _ = tiny.image_pairs(model, 4)
    with pytest.raises(ValueError, match=r"trains on \(inputs, targets\) batches"):
        model.fit(inputs, batch_size=4, verbose=0)


def test_preview_shows_input_output_and_target_rows():
    model = tiny.pix2pix()
    inputs, targets = tiny.image_pairs(model, 3)
    shown, columns = model.preview(inputs, targets)["translations"]
    assert columns == 3 and shown.shape == (9, 8, 8, 3)
    np.testing.assert_array_equal(shown[:3, ..., 0], inputs[..., 0])
    np.testing.assert_array_equal(shown[6:], targets)
