import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen.models import base, networks, pixelcnn


def binary_images(shape=(6, 6, 1), count=5, seed=0):
    return (np.random.default_rng(seed).random((count, *shape)) < 0.4).astype("float32")


def causal_errors(model, count=4):
    """(pixels read too early, pixels never read) as sets of (output, input) indices.

    Indices are raster order. Every logit must depend on exactly the pixels before
    it: gradients are taken at random continuous inputs, so a dependency the
    network has shows up as a nonzero gradient.
    """
    height, width, _ = model.image_shape
    inputs = tf.constant(
        np.random.default_rng(0).random((count, *model.image_shape)), tf.float32
    )
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logits = tf.reshape(model(inputs), [count, height * width])
    jacobian = tape.batch_jacobian(logits, inputs).numpy()
    depends = np.any(jacobian.reshape(count, height * width, -1) != 0, axis=0)
    before = np.tril(np.ones_like(depends), k=-1)
    too_early = {tuple(p) for p in np.argwhere(depends & ~before)}
    never_read = {tuple(p) for p in np.argwhere(~depends & before)}
    return too_early, never_read


def causal_model():
    # 5x5 with 3 blocks: the receptive field (about num_layers + 2 = 5 pixels up,
    # left and right) covers the whole image, so every earlier pixel must be read.
    return tiny.pixelcnn(image_shape=(5, 5, 1), filters=8, num_layers=3)


def test_each_logit_reads_exactly_the_pixels_before_it():
    too_early, never_read = causal_errors(causal_model())
    assert too_early == set()
    assert never_read == set()


def test_the_causality_check_catches_a_mask_type_a_error():
    model = causal_model()
    # Mask B in the first block: each logit sees its own pixel.
    model.blocks[0].horizontal_conv.kernel_mask = np.ones_like(
        model.blocks[0].horizontal_conv.kernel_mask
    )
    too_early, _ = causal_errors(model)
    assert {(p, p) for p in range(25)} <= too_early


def test_the_causality_check_catches_a_missing_down_shift(monkeypatch):
    monkeypatch.setattr(networks, "shift_down", lambda features: features)
    too_early, _ = causal_errors(causal_model())
    # Without the shift the vertical stack hands over the current row, right side too.
    assert (0, 1) in too_early and (7, 9) in too_early


def test_the_causality_check_catches_a_blind_spot():
    model = causal_model()
    # Vertical kernels without their right side recreate the original PixelCNN's
    # blind spot: pixels up and to the right are never reached.
    for block in model.blocks:
        kernel = block.vertical_conv.kernel
        half = kernel.shape[1] // 2
        kernel.assign(
            tf.concat([kernel[:, : half + 1], tf.zeros_like(kernel[:, half + 1 :])], 1)
        )
    _, never_read = causal_errors(model)
    assert (6, 2) in never_read  # pixel (1, 1) never reads pixel (0, 2)


def test_log_prob_matches_a_numpy_computation_from_the_logits():
    model = tiny.pixelcnn()
    images = binary_images()
    logits = model(images).numpy().astype("float64")
    log_likelihood = images * -np.logaddexp(0.0, -logits) + (
        1 - images
    ) * -np.logaddexp(0.0, logits)
    expected = log_likelihood.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(model.log_prob(images), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.score(images), -expected, rtol=1e-5, atol=1e-4)


def all_binary_images(height, width):
    pixels = itertools.product((0.0, 1.0), repeat=height * width)
    return np.array(list(pixels), "float32").reshape(-1, height, width, 1)


def skewed_model():
    """A 2x2 model with large random weights: strongly dependent, far from uniform."""
    model = tiny.pixelcnn(image_shape=(2, 2, 1), filters=8, num_layers=2)
    rng = np.random.default_rng(3)
    for weight in model.trainable_variables:
        weight.assign(rng.normal(0.0, 0.7, weight.shape).astype("float32"))
    return model


def test_the_likelihood_normalizes_over_every_binary_image():
    model = skewed_model()
    probabilities = np.exp(
        model.log_prob(all_binary_images(2, 2)).numpy().astype("float64")
    )
    assert len(probabilities) == 16
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert probabilities.max() > 3 * probabilities.min()  # far from uniform


def test_score_agrees_with_evaluate():
    model = tiny.pixelcnn()
    model.compile(optimizer="adam")
    images = binary_images(count=8)
    results = model.evaluate(images, batch_size=8, return_dict=True, verbose=0)
    scores = model.score(images).numpy()
    assert results["loss"] == pytest.approx(scores.mean(), rel=1e-6)
    assert results["bits_per_dim"] == pytest.approx(
        scores.mean() / (36 * np.log(2)), rel=1e-6
    )


def test_generate_contract():
    model = tiny.pixelcnn()
    samples = model.generate(5, seed=3)
    assert samples.shape == (5, 6, 6, 1) and samples.dtype == tf.float32
    assert set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_array_equal(samples, model.generate(5, seed=3))
    assert not np.array_equal(samples, model.generate(5, seed=4))
    assert model.generate(2).shape == (2, 6, 6, 1)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        model.generate(0)


def test_sampling_is_one_full_network_pass_per_pixel_keyed_by_seed_and_pixel():
    model = tiny.pixelcnn(image_shape=(4, 5, 1), num_layers=3)
    count, seed = 6, 11
    noise = model.sampling_noise(count, seed).numpy()
    for pixel in range(20):
        expected = tf.random.stateless_uniform([count], seed=(seed, pixel))
        np.testing.assert_array_equal(noise[:, pixel // 5, pixel % 5, 0], expected)

    # The plain algorithm: run the whole network, draw the next pixel, repeat.
    images = np.zeros((count, 4, 5, 1), "float32")
    for pixel in range(20):
        i, j = divmod(pixel, 5)
        probability = tf.sigmoid(model(images)[:, i, j, 0]).numpy()
        images[:, i, j, 0] = noise[:, i, j, 0] < probability
    np.testing.assert_array_equal(model.generate(count, seed=seed), images)


def test_sample_frequencies_follow_the_likelihood():
    model = skewed_model()
    images = all_binary_images(2, 2)
    probabilities = np.exp(model.log_prob(images).numpy())
    samples = model.generate(4000, seed=0).numpy().reshape(-1, 4)
    codes = samples @ np.array([8, 4, 2, 1])  # raster order, as all_binary_images
    frequencies = np.bincount(codes.astype(int), minlength=16) / len(samples)
    # Standard error at most sqrt(0.25 / 4000) = 0.008.
    np.testing.assert_allclose(frequencies, probabilities, atol=0.035)


def test_wrong_shapes_and_channels_say_what_was_expected():
    model = tiny.pixelcnn()
    with pytest.raises(
        ValueError, match=r"expected images of shape \(batch, 6, 6, 1\)"
    ):
        model.score(np.zeros((2, 28, 28, 1), "float32"))
    with pytest.raises(ValueError, match="one channel"):
        tiny.pixelcnn(image_shape=(6, 6, 3))


def test_one_fit_step_changes_every_weight_but_the_masked_tap():
    model = tiny.pixelcnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = {w.path: w.numpy() for w in model.trainable_variables}
    model.fit(binary_images(count=8), batch_size=8, epochs=1, verbose=0)
    for weight in model.trainable_variables:
        assert not np.array_equal(weight.numpy(), before[weight.path]), weight.path
    first = model.blocks[0].horizontal_conv.kernel
    # The current-pixel tap of mask A gets no gradient, so Adam leaves it alone.
    np.testing.assert_array_equal(first.numpy()[:, -1], before[first.path][:, -1])


def test_training_lowers_the_loss():
    model = tiny.pixelcnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.repeat(binary_images(count=4), 16, axis=0)
    before = model.evaluate(images, verbose=0, return_dict=True)["loss"]
    model.fit(images, batch_size=16, epochs=5, verbose=0)
    # Seeds and CPU kernels measured 3.3 to 5.3 nats lower: 1 leaves room to spare.
    assert model.evaluate(images, verbose=0, return_dict=True)["loss"] < before - 1.0


def test_images_do_not_depend_on_how_sampling_is_batched(monkeypatch):
    model = tiny.pixelcnn()
    whole = model.generate(5, seed=2)
    monkeypatch.setattr(pixelcnn, "SAMPLING_BATCH_SIZE", 2)
    batched = tiny.pixelcnn()  # a fresh model traces its sampler with batches of 2
    batched.set_weights(model.get_weights())
    np.testing.assert_array_equal(batched.generate(5, seed=2), whole)


def test_the_likelihood_is_exact_and_declared_so():
    model = tiny.pixelcnn()
    images = binary_images()
    assert model.can(base.LIKELIHOOD) and model.likelihood_bound == "exact"
    np.testing.assert_array_equal(
        model.negative_log_likelihood(images), -model.log_prob(images)
    )
    assert "seed" not in model.get_config()  # it draws no training noise
