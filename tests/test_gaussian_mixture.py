"""GaussianMixture against scikit-learn, EM's epoch mechanics, and MixturePriorVAE."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tiny
from sklearn import mixture
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from keras_gen.models import GaussianMixture, MixturePriorVAE, noise

SKLEARN_COVARIANCES = {"full": "full", "diagonal": "diag"}


def digits(count=None) -> np.ndarray:
    """sklearn's 8x8 digits scaled to [0, 1], as images (N, 8, 8, 1): real data, no download."""
    pixels = load_digits().data[:count] / 16.0
    return pixels.reshape(-1, 8, 8, 1).astype("float32")


def parameters(covariance, count, dimension, data=None, seed=0):
    """(weights, means, covariances) to start from: means at data points if given."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(count))
    if data is None:
        means = rng.random((count, dimension))
        scales = rng.normal(size=(count, dimension, dimension)) * 0.3
        full = scales @ scales.transpose(0, 2, 1) + 0.1 * np.eye(dimension)
    else:
        means = data[rng.choice(len(data), count, replace=False)]
        full = np.tile(
            np.cov(data.T, bias=True) + 1e-6 * np.eye(dimension), (count, 1, 1)
        )
    if covariance == "diagonal":
        return weights, means, np.diagonal(full, axis1=1, axis2=2).copy()
    return weights, means, full


def sklearn_mixture(covariance, weights, means, covariances, **options):
    kind = SKLEARN_COVARIANCES[covariance]
    precisions = np.linalg.inv(covariances) if kind == "full" else 1.0 / covariances
    return mixture.GaussianMixture(
        len(weights),
        covariance_type=kind,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
        reg_covar=1e-6,
        **options,
    )


def fitted(model, images, batch_size, epochs):
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(images, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False)
    return model


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_log_likelihood_is_sklearn_score_samples(covariance):
    weights, means, covariances = parameters(covariance, 3, 5)
    model = GaussianMixture(image_shape=(1, 5, 1), components=3, covariance=covariance)
    model.initialize(weights, means, covariances)
    reference = mixture.GaussianMixture(
        3, covariance_type=SKLEARN_COVARIANCES[covariance]
    )
    reference.weights_ = weights
    reference.means_ = means
    reference.covariances_ = covariances
    if covariance == "full":
        cholesky = np.linalg.cholesky(covariances)
        reference.precisions_cholesky_ = np.linalg.inv(cholesky).transpose(0, 2, 1)
    else:
        reference.precisions_cholesky_ = 1.0 / np.sqrt(covariances)
    points = np.random.default_rng(1).random((50, 5)).astype("float32")
    found = -model.negative_log_likelihood(points.reshape(-1, 1, 5, 1)).numpy()
    np.testing.assert_allclose(found, reference.score_samples(points), rtol=1e-4)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_em_from_sklearns_start_reaches_sklearns_log_likelihood(covariance):
    images = digits(600)
    points = images.reshape(len(images), -1).astype("float64")
    start = parameters(covariance, 4, 64, data=points)
    reference = sklearn_mixture(covariance, *start, tol=0.0, max_iter=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: all 8 iterations
        reference.fit(points)
    model = GaussianMixture(image_shape=(8, 8, 1), components=4, covariance=covariance)
    model.initialize(*start)
    fitted(model, images, batch_size=200, epochs=8)  # one EM iteration per epoch
    found = -float(np.mean(model.negative_log_likelihood(images)))
    # Measured: 1e-7 relative (float32 E-step against sklearn's float64).
    assert found == pytest.approx(reference.score(points), rel=5e-3)
    np.testing.assert_allclose(model.mixture.means, reference.means_, atol=1e-4)


def test_em_does_not_depend_on_the_batch_size_initialisation_included():
    images = digits(240)
    runs = [
        fitted(GaussianMixture(image_shape=(8, 8, 1), components=3), images, size, 2)
        for size in (240, 48, 100)  # 100: a last batch of 40
    ]
    for other in runs[1:]:
        for a, b in zip(runs[0].mixture.weights, other.mixture.weights):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_seed_fixes_the_initialisation():
    images = digits(120)
    means = [
        fitted(
            GaussianMixture(image_shape=(8, 8, 1), components=3, seed=s), images, 60, 1
        ).mixture.means.numpy()
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(means[0], means[1])
    assert not np.allclose(means[0], means[2])


def test_an_epoch_stopped_midway_resumes_from_its_saved_statistics(tmp_path):
    """What keras-gen train does after a crash: reload the checkpoint, run the rest."""
    batches = tf.data.Dataset.from_tensor_slices(digits(160)).batch(40)
    whole = fitted(
        GaussianMixture(image_shape=(8, 8, 1), components=2), batches, None, 2
    )

    class StopAfterTwoBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = self.model.stop_training or batch == 1

    first = GaussianMixture(image_shape=(8, 8, 1), components=2)
    first.compile(optimizer=keras.optimizers.SGD(0.1))
    first.fit(batches, epochs=1, verbose=0)
    first.fit(batches, epochs=1, verbose=0, callbacks=[StopAfterTwoBatches()])
    first.save_weights(tmp_path / "state.weights.h5")
    resumed = GaussianMixture(image_shape=(8, 8, 1), components=2)
    resumed.compile(optimizer=keras.optimizers.SGD(0.1))
    resumed.load_weights(tmp_path / "state.weights.h5")
    resumed.fit(batches.skip(2), epochs=1, verbose=0)
    for a, b in zip(whole.mixture.weights, resumed.mixture.weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# Steps may not exceed the smallest standard deviation, 1e-3 for the digits'
# blank pixels (with full covariances Adam at 1e-3 diverges, diagonal at 1e-2
# first loses 40 nats).
@pytest.mark.parametrize(
    "covariance, learning_rate", [("full", 1e-4), ("diagonal", 1e-3)]
)
def test_gradient_descent_lowers_the_negative_log_likelihood(covariance, learning_rate):
    images = digits(200)
    model = GaussianMixture(
        image_shape=(8, 8, 1),
        components=3,
        covariance=covariance,
        fit_method="gradient",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.fit(images, batch_size=50, epochs=1, verbose=0)  # the initialisation
    # Its gradients were zero: it starts where EM's first epoch ends.
    by_em = GaussianMixture(image_shape=(8, 8, 1), components=3, covariance=covariance)
    fitted(by_em, images, batch_size=50, epochs=1)
    for a, b in zip(model.trainable_weights, by_em.trainable_weights):
        np.testing.assert_array_equal(a, b)
    before = float(np.mean(model.negative_log_likelihood(images)))
    history = model.fit(images, batch_size=50, epochs=2, verbose=0).history
    assert float(np.mean(model.negative_log_likelihood(images))) < before - 5.0
    assert (
        history["negative_log_likelihood"][-1] < history["negative_log_likelihood"][0]
    )


def test_samples_are_clipped_images_and_seeded():
    model = tiny.gaussian_mixture()
    first = model.generate(5, seed=2).numpy()
    assert first.shape == (5, 4, 4, 1) and first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, model.generate(5, seed=2))
    assert model.likelihood_bound == "exact, continuous density"


def trained_vae():
    model = tiny.vae()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tiny.binary_images(model, 64), batch_size=16, epochs=1, verbose=0)
    return model


def test_mixture_prior_is_fitted_to_the_posterior_means_with_the_networks_frozen():
    vae = trained_vae()
    images = tiny.binary_images(vae, 64, seed=1)
    model = MixturePriorVAE.from_vae(vae, prior_components=3)
    np.testing.assert_array_equal(model.reconstruct(images), vae.reconstruct(images))
    networks = [np.array(w) for w in model.encoder.weights + model.decoder.weights]
    means = vae.encode(images).mean()
    before = float(tf.reduce_mean(model.prior.log_prob(means)))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(images, batch_size=16, epochs=4, verbose=0).history
    after = float(tf.reduce_mean(model.prior.log_prob(means)))
    assert after > before  # the mixture fits the means better than N(0, I)
    nats = history["prior_negative_log_likelihood"]
    assert nats[-1] < nats[1]  # EM's logged objective falls after the initialisation
    for network, weight in zip(networks, model.encoder.weights + model.decoder.weights):
        np.testing.assert_array_equal(network, weight)

    samples = model.generate(6, seed=0).numpy()
    assert (
        samples.shape == (6, 8, 8, 1) and 0.0 <= samples.min() <= samples.max() <= 1.0
    )
    nats = model.negative_log_likelihood(images[:4], num_samples=8).numpy()
    assert nats.shape == (4,) and np.all(np.isfinite(nats))


def test_an_unfitted_mixture_prior_is_the_vaes_standard_normal():
    model = tiny.mixture_prior_vae()
    latents = tf.random.stateless_normal([5, model.latent_dim], seed=(0, 0))
    standard = tfp.distributions.MultivariateNormalDiag(tf.zeros(model.latent_dim))
    np.testing.assert_allclose(
        model.prior.log_prob(latents), standard.log_prob(latents), rtol=1e-6
    )


def test_the_vae_keeps_its_analytic_kl():
    """The KL hook leaves the VAE's terms exactly what tfd.kl_divergence gives."""
    model = tiny.vae()
    images = tiny.binary_images(model, 4)
    _, kl = model._negative_elbo_terms(images, noise.step_seed(0, 0, 0), False)
    expected = tfp.distributions.kl_divergence(model._posterior(images), model.prior)
    np.testing.assert_array_equal(kl, expected)


def test_latent_mixture_curve_is_what_evaluate_gives_and_leaves_the_fit_alone(tmp_path):
    """tools/latent_mixture.py --eval-every: a test-NLL point every N EM iterations,
    the number `evaluate` gives those weights; measuring changes no weight, and the
    card gets the curve with its figure."""
    from test_training import write_recipe
    from tool_scripts import load

    from keras_gen import data, evaluation, training, zoo

    tool = load("latent_mixture")
    _, source = write_recipe(tmp_path)  # 12 train, 5 test MNIST-like images
    fit = ["vae_mnist", "--data", str(source), "--epochs", "2", "--batch-size", "6"]
    fit += ["--components", "2", "--covariance", "diagonal"]
    curved, plain = tmp_path / "curved", tmp_path / "plain"
    assert tool.main([*fit, "--eval-every", "1", "--output", str(curved)]) == 0
    assert tool.main([*fit, "--output", str(plain)]) == 0
    for a, b in zip(zoo.load(curved).get_weights(), zoo.load(plain).get_weights()):
        np.testing.assert_array_equal(a, b)

    card = zoo.card(curved)
    curve = card["training_curve"]
    assert curve["metric"].startswith("test negative log-likelihood, nats")
    assert [(p["epoch"], p["step"]) for p in curve["points"]] == [(1, 2), (2, 4)]
    assert (curved / training.CURVE_FIGURE).is_file()
    assert "training_curve" not in zoo.card(plain)
    direct = evaluation.evaluate(
        zoo.load(plain),
        card["data"],
        "direct",
        num_samples=4,
        seed=0,
        splits=data.Splits("mnist", source),
        measure=("test",),
    )
    found = {m["name"]: m["value"] for m in direct["metrics"]}
    assert curve["points"][-1]["value"] == pytest.approx(found[curve["metric"]])
