import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from scipy import stats

from keras_gen.models import base, noise, vae


def binary_images(count=6, seed=0):
    return (np.random.default_rng(seed).random((count, 8, 8, 1)) < 0.4).astype(
        "float32"
    )


def numpy_negative_elbo(model, images, seed, codes=None):
    """-ELBO by hand: closed-form diagonal-Gaussian KL and Bernoulli log-likelihood.

    With `codes` (batch, classes), a conditional VAE's: the codes fed as image
    channels to the encoder and beside z to the decoder.
    """
    encoder_inputs, decoder_codes = images, np.zeros((len(images), 0))
    if codes is not None:
        planes = np.broadcast_to(
            codes[:, None, None, :], (*images.shape[:3], codes.shape[-1])
        )
        encoder_inputs = np.concatenate([images, planes], -1).astype("float32")
        decoder_codes = codes
    raw = model.encoder(encoder_inputs).numpy().astype("float64")
    mean, raw_scale = np.split(raw, 2, axis=-1)
    std = np.logaddexp(0.0, raw_scale) + 1e-5
    kl = 0.5 * np.sum(std**2 + mean**2 - 1.0 - 2.0 * np.log(std), axis=-1)
    epsilon = noise.replica_normal(len(images), [model.latent_dim], seed).numpy()
    decoder_inputs = np.concatenate([mean + std * epsilon, decoder_codes], -1)
    logits = model.decoder(decoder_inputs.astype("float32")).numpy().astype("float64")
    x = images.astype("float64")
    log_likelihood = x * -np.logaddexp(0.0, -logits) + (1 - x) * -np.logaddexp(
        0.0, logits
    )
    return -log_likelihood.sum(axis=(1, 2, 3)), kl


def test_kl_and_elbo_match_an_independent_numpy_computation():
    model = tiny.vae(beta=1.5)
    images = binary_images()
    seed = model._evaluation_seed()
    reconstruction, kl = model._negative_elbo_terms(images, seed, training=False)
    expected_reconstruction, expected_kl = numpy_negative_elbo(model, images, seed)
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        reconstruction, expected_reconstruction, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        model.score(images),
        expected_reconstruction + expected_kl,  # the negative ELBO, free of beta
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_score_is_the_negative_elbo_that_evaluate_reports(beta):
    model = tiny.vae(beta=beta)
    model.compile(optimizer="adam")
    images = binary_images(8)
    results = model.evaluate(images, batch_size=8, return_dict=True, verbose=0)
    scores = model.score(images)
    assert scores.shape == (8,)
    elbo = results["reconstruction_loss"] + results["kl_loss"]
    assert float(tf.reduce_mean(scores)) == pytest.approx(elbo, rel=1e-6)
    assert results["loss"] == pytest.approx(
        results["reconstruction_loss"] + beta * results["kl_loss"], rel=1e-6
    )


def test_score_with_another_seed_uses_other_noise():
    model = tiny.vae()
    images = binary_images()
    assert not np.allclose(model.score(images, seed=1), model.score(images, seed=2))
    np.testing.assert_array_equal(
        model.score(images, seed=1), model.score(images, seed=1)
    )


def test_encode_decode_reconstruct_shapes():
    model = tiny.vae()
    images = binary_images(5)
    posterior = model.encode(images)
    assert posterior.batch_shape == (5,) and posterior.event_shape == (3,)
    assert model.decode(posterior.sample(seed=(1, 2))).shape == (5, 8, 8, 1)
    assert model.reconstruct(images).shape == (5, 8, 8, 1)


def test_wrong_shapes_say_what_was_expected():
    model = tiny.vae()
    with pytest.raises(
        ValueError, match=r"expected images of shape \(batch, 8, 8, 1\)"
    ):
        model.score(np.zeros((2, 28, 28, 1), "float32"))
    with pytest.raises(ValueError, match=r"expected latents of shape \(batch, 3\)"):
        model.decode(np.zeros((2, 5), "float32"))


def test_training_lowers_the_loss():
    model = tiny.vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.repeat(binary_images(4), 16, axis=0)
    before = model.evaluate(images, verbose=0, return_dict=True)["loss"]
    model.fit(images, batch_size=16, epochs=5, verbose=0)
    assert model.evaluate(images, verbose=0, return_dict=True)["loss"] < before - 1.0


def test_gaussian_likelihood_learns_its_scale():
    model = tiny.vae(likelihood="gaussian")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32")
    model.fit(images, batch_size=16, epochs=2, verbose=0)
    assert float(model.log_scale) != 0.0
    assert np.all(np.isfinite(model.score(images)))


def eight_bit_images(count=4, seed=0):
    levels = np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 1))
    levels[0, :2, 0, 0] = (0, 255)  # the edge bins, which take the tails
    return (levels / 255).astype("float32")


def numpy_eight_bit_log_prob(means, scale, images):
    """log p(x) by hand: each level's Normal mass over its bin, edges open."""
    levels = np.round(images.astype("float64") * 255)
    upper = np.where(levels == 255, np.inf, (levels + 0.5) / 255)
    lower = np.where(levels == 0, -np.inf, (levels - 0.5) / 255)
    # log(F(upper) - F(lower)) from the tail the bin is in, so far bins keep digits.
    below = lower + upper < 2 * means
    outer = np.where(below, upper, -lower)
    inner = np.where(below, lower, -upper)
    mirrored = np.where(below, means, -means)
    log_outer = stats.norm.logcdf(outer, mirrored, scale)
    log_inner = stats.norm.logcdf(inner, mirrored, scale)
    log_mass = log_outer + np.log1p(-np.exp(log_inner - log_outer))
    return log_mass.sum(axis=(1, 2, 3))


def test_discretized_gaussian_is_each_levels_mass_under_the_normal():
    model = tiny.vae(likelihood="discretized_gaussian")
    latents = np.random.default_rng(1).standard_normal((4, 3)).astype("float32")
    images = eight_bit_images()
    outputs = model.decoder(latents).numpy().astype("float64")
    assert outputs.shape == (4, 8, 8, 2)  # a mean and a scale per pixel
    means = 1 / (1 + np.exp(-outputs[..., :1]))
    scales = np.logaddexp(0.0, outputs[..., 1:]) + 1e-3
    expected = numpy_eight_bit_log_prob(means, scales, images)
    got = model._likelihood_distribution(latents, None).log_prob(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_discretized_gaussian_puts_all_its_mass_on_the_256_levels():
    model = tiny.vae(likelihood="discretized_gaussian")
    latent = np.zeros((1, 3), "float32")
    # One image per level k, every pixel at k: the 256 images' probabilities,
    # per pixel, are the levels' masses; each pixel's must sum to 1.
    likelihood = model._likelihood_distribution(np.repeat(latent, 256, 0), None)
    images = np.broadcast_to(
        (np.arange(256) / 255).reshape(256, 1, 1, 1), (256, 8, 8, 1)
    )
    pixel_log_probs = likelihood._levels.distribution.log_prob(
        np.round(images * 255).astype("float32")
    )
    np.testing.assert_allclose(np.exp(pixel_log_probs).sum(0), 1.0, atol=1e-4)


def test_discretized_gaussian_scores_code_lengths_and_draws_8_bit_images():
    model = tiny.vae(likelihood="discretized_gaussian")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.repeat(eight_bit_images(4), 8, axis=0)
    before = model.evaluate(images, verbose=0, return_dict=True)["loss"]
    model.fit(images, batch_size=16, epochs=3, verbose=0)
    assert model.evaluate(images, verbose=0, return_dict=True)["loss"] < before - 1.0
    nats = model.negative_log_likelihood(images[:4]).numpy()
    # A probability of at most 1 per pixel: never below 0 nats, unlike a density.
    assert np.all(nats > 0)
    assert model.likelihood_bound == "IWAE K=100"
    for drawn in (model.generate(8, seed=0), model.reconstruct(images[:4])):
        np.testing.assert_allclose(drawn * 255, np.round(drawn * 255), atol=1e-3)
    sampled = model._likelihood_distribution(np.zeros((2, 3), "float32"), None)
    values = sampled.sample(seed=(0, 1)).numpy() * 255
    np.testing.assert_allclose(values, np.round(values), atol=1e-3)
    assert values.min() >= 0 and values.max() <= 255


def test_a_gaussian_vae_scores_levels_by_its_normals_mass_on_each_bin():
    model = tiny.vae(likelihood="gaussian")
    model.log_scale.assign(np.log(0.05))
    latents = np.random.default_rng(1).standard_normal((4, 3)).astype("float32")
    images = eight_bit_images()
    density = model._likelihood_distribution(latents, None)
    means = density.mean().numpy().astype("float64")
    expected = numpy_eight_bit_log_prob(means, 0.05, images)
    got = model._likelihood_distribution(latents, None, levels=True).log_prob(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # Away from the edge bins and with bins far narrower than the scale, a level's
    # mass is the density times the bin's width, 1 / 255.
    model.log_scale.assign(np.log(0.3))
    density = model._likelihood_distribution(latents, None)
    inner = np.clip(images, 20 / 255, 235 / 255)
    binned = model._likelihood_distribution(latents, None, levels=True).log_prob(inner)
    by_width = density.log_prob(inner) - inner[0].size * np.log(255.0)
    np.testing.assert_allclose(binned, by_width, atol=0.01)


def test_a_gaussian_vae_reports_a_code_length_where_its_density_is_negative():
    model = tiny.vae(likelihood="gaussian")
    model.log_scale.assign(np.log(0.05))
    decoded = model.decode(np.zeros((4, 3), "float32")).numpy()
    images = np.round(decoded * 255) / 255
    assert np.all(model.score(images).numpy() < 0)  # a density above 1 per pixel
    assert np.all(model.negative_log_likelihood(images).numpy() > 0)
    assert model.likelihood_bound == (
        "IWAE K=100, Gaussian pixels binned to 8-bit levels"
    )


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        tiny.vae(likelihood="poisson")


def numpy_log_weights(model, images, draws):
    """log p(x|z_k) and log p(z_k) - log q(z_k|x), each (K, batch), by hand."""
    samples, batch = draws.shape[:2]
    raw = model.encoder(images).numpy().astype("float64")
    mean, raw_scale = np.split(raw, 2, axis=-1)
    std = np.logaddexp(0.0, raw_scale) + 1e-5
    latents = mean + std * draws
    flat = latents.reshape(-1, draws.shape[-1]).astype("float32")
    logits = model.decoder(flat).numpy().astype("float64")
    x = np.tile(images, (samples, 1, 1, 1)).astype("float64")
    log_likelihood = (
        x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)
    ).sum((1, 2, 3))
    log_prior = (-0.5 * latents**2 - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_posterior = (-0.5 * draws**2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
    return log_likelihood.reshape(samples, batch), log_prior - log_posterior


def test_importance_weights_match_numpy_and_the_bound_tightens():
    model = tiny.vae()
    images = binary_images(4)
    draws = np.random.default_rng(1).standard_normal((2, 4, 3)).astype("float32")
    expected = sum(numpy_log_weights(model, images, draws))
    got = model._importance_log_weights(images, draws)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)

    one = float(tf.reduce_mean(model.negative_log_likelihood(images, num_samples=1)))
    many = float(tf.reduce_mean(model.negative_log_likelihood(images, num_samples=500)))
    assert many < one  # K = 1 is the ELBO; more samples tighten the bound
    assert one == pytest.approx(float(tf.reduce_mean(model.score(images))), rel=0.2)


def test_likelihood_in_chunks_of_draws_equals_all_draws_at_once(monkeypatch):
    model = tiny.vae()
    images = binary_images(4)
    whole = model.negative_log_likelihood(images, num_samples=10).numpy()
    monkeypatch.setattr(vae, "DECODED_AT_ONCE", 20)  # 10 draws of 2 images a pass
    chunked = model.negative_log_likelihood(images, num_samples=10).numpy()
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


def test_preview_shows_samples_and_reconstructions_beside_their_images():
    model = tiny.vae()
    images = binary_images(3)
    shown = model.preview(images)
    samples, columns = shown["samples"]
    np.testing.assert_array_equal(samples, model.generate(16, seed=0))
    assert columns is None
    pairs, columns = shown["reconstructions"]
    assert columns == 3
    np.testing.assert_array_equal(pairs[:3], images)
    np.testing.assert_allclose(pairs[3:], model.reconstruct(images), atol=1e-6)
    assert list(model.preview()) == ["samples"]


def test_likelihood_is_declared_as_the_bound_it_is():
    model = tiny.vae()
    assert model.can(base.LIKELIHOOD) and model.can(base.RECONSTRUCTION)
    assert not model.can(base.CONDITIONS)
    assert model.likelihood_bound == "IWAE K=100"
    images = binary_images(2)
    np.testing.assert_array_equal(
        model.negative_log_likelihood(images),
        model.negative_log_likelihood(images, num_samples=100, seed=0),
    )
    with pytest.raises(base.CapabilityError, match="VAE cannot take conditions"):
        model.generate(2, digit=1)


def conv(inputs, outputs, kernel=3):
    return kernel * kernel * inputs * outputs + outputs


def test_residual_networks_add_two_convolutions_per_resolution():
    model = tiny.vae(network="residual", filters=(4, 6))  # 8x8 -> 4x4 -> 2x2
    plain = tiny.vae(filters=(4, 6))
    blocks = 2 * conv(4, 4) + 2 * conv(6, 6)
    assert model.encoder.count_params() == plain.encoder.count_params() + blocks
    assert model.decoder.count_params() == plain.decoder.count_params() + blocks


def test_residual_networks_with_zero_branches_are_the_convolutional_ones():
    """A block whose second convolution is zero gives relu(x) = x (x comes out of
    a ReLU), so the networks reduce to the plain ones holding the same weights."""
    model = tiny.vae(network="residual", filters=(4, 6))
    plain = tiny.vae(filters=(4, 6))
    rng = np.random.default_rng(0)
    for network, reference, inputs in [
        (model.encoder, plain.encoder, rng.random((3, 8, 8, 1))),
        (model.decoder, plain.decoder, rng.normal(size=(3, 3))),
    ]:
        layers, in_blocks = network.layers, set()
        for index, layer in enumerate(layers):
            if isinstance(layer, keras.layers.Add):
                first, second = layers[index - 2], layers[index - 1]
                assert isinstance(first, keras.layers.Conv2D)
                assert isinstance(second, keras.layers.Conv2D)
                second.set_weights([np.zeros_like(w) for w in second.get_weights()])
                in_blocks |= {first.name, second.name}
        kept = [l for l in layers if l.weights and l.name not in in_blocks]
        twins = [l for l in reference.layers if l.weights]
        assert len(in_blocks) == 4 and len(kept) == len(twins)
        for layer, twin in zip(kept, twins, strict=True):
            twin.set_weights(layer.get_weights())
        inputs = inputs.astype("float32")
        np.testing.assert_allclose(network(inputs), reference(inputs), atol=1e-6)


def test_importance_weighted_training_reports_the_iwae_bound():
    """Loss = -log mean_k w_k over K = 3 draws, w_k with beta on log p(z) - log q(z|x);
    the tracked reconstruction is the mean -log p(x|z_k); by hand in numpy."""
    model = tiny.vae(training_samples=3, beta=2.0)
    model.compile(optimizer="adam")
    images = binary_images(5)
    draws = noise.replica_normal(5, [3, 3], model._evaluation_seed()).numpy()
    log_likelihood, log_ratio = numpy_log_weights(
        model, images, draws.transpose(1, 0, 2)
    )
    log_weights = log_likelihood + 2.0 * log_ratio
    bound = -(np.logaddexp.reduce(log_weights, axis=0) - np.log(3))
    found = model.evaluate(images, batch_size=5, verbose=0, return_dict=True)
    assert found["loss"] == pytest.approx(bound.mean(), rel=1e-4)
    assert found["reconstruction_loss"] == pytest.approx(
        -log_likelihood.mean(), rel=1e-4
    )


def test_importance_weighted_training_lowers_its_bound():
    model = tiny.vae(training_samples=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images = np.repeat(binary_images(4), 16, axis=0)
    before = model.evaluate(images, verbose=0, return_dict=True)["loss"]
    model.fit(images, batch_size=16, epochs=5, verbose=0)
    assert model.evaluate(images, verbose=0, return_dict=True)["loss"] < before - 1.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"training_samples": 0}, "training_samples must be a positive integer"),
        ({"training_samples": 2.5}, "training_samples must be a positive integer"),
        ({"training_samples": 2, "dp_clip": 1.0}, "cannot train by DP-SGD"),
    ],
)
def test_bad_training_samples_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        tiny.vae(**arguments)
