"""DP-SGD against hand-computed per-example gradients, and its budget against the
exact privacy curve of the Gaussian mechanism."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tiny
from scipy import stats

from keras_gen import privacy


def _linear_case():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(6, 3)).astype("float32")
    targets = rng.normal(size=6).astype("float32") * 5
    weight = tf.Variable(rng.normal(size=3).astype("float32"))
    return inputs, targets, weight


def _private(inputs, targets, weight, clip, noise_multiplier, seed=(1, 2)):
    def example_loss(example):
        x, y = example
        return tf.square(tf.reduce_sum(x * weight) - y)

    return privacy.private_gradients(
        example_loss,
        (inputs, targets),
        [weight],
        clip,
        noise_multiplier,
        tf.constant(seed),
    )[0]


def test_clipped_gradients_equal_a_hand_computation():
    inputs, targets, weight = _linear_case()
    # d/dw (x.w - y)^2 = 2 (x.w - y) x, each clipped to norm 5, then averaged.
    per_example = 2 * (inputs @ weight.numpy() - targets)[:, None] * inputs
    norms = np.linalg.norm(per_example, axis=1)
    assert (norms > 5).any() and (norms < 5).any()  # both branches of the clip
    clipped = per_example * np.minimum(1.0, 5.0 / norms)[:, None]
    expected = clipped.sum(0) / len(inputs)
    got = _private(inputs, targets, weight, 5.0, 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_noise_is_seeded_and_scaled_by_clip_and_multiplier():
    inputs, targets, weight = _linear_case()
    clean = _private(inputs, targets, weight, 0.5, 0.0)
    noisy = _private(inputs, targets, weight, 0.5, 2.0)
    np.testing.assert_array_equal(noisy, _private(inputs, targets, weight, 0.5, 2.0))
    assert not np.allclose(noisy, _private(inputs, targets, weight, 0.5, 2.0, (1, 3)))
    seed = tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), 1)[0]
    draw = tf.random.stateless_normal([3], seed) * 2.0 * 0.5 / len(inputs)
    np.testing.assert_allclose(noisy - clean, draw, rtol=1e-5, atol=1e-6)


def _exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """The exact epsilon of the Gaussian mechanism of sensitivity 1 (Balle and Wang 2018)."""

    def delta_of(epsilon):
        return stats.norm.cdf(0.5 / sigma - epsilon * sigma) - math.exp(
            epsilon
        ) * stats.norm.cdf(-0.5 / sigma - epsilon * sigma)

    low, high = 0.0, 100.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if delta_of(middle) > delta else (low, middle)
    return high


def test_epsilon_bounds_the_exact_curve_of_composed_gaussians_closely():
    # Without sampling (batch = dataset), k steps of noise sigma are exactly one
    # Gaussian mechanism of noise sigma / sqrt(k).
    for sigma, steps in ((1.0, 1), (2.0, 16), (5.0, 100)):
        exact = _exact_gaussian_epsilon(sigma / math.sqrt(steps), privacy.DELTA)
        bound = privacy.epsilon(sigma, 100, 100, steps)
        assert exact <= bound <= 1.25 * exact, (sigma, steps, exact, bound)


def test_epsilon_grows_with_steps_and_sampling_and_falls_with_noise():
    base = privacy.epsilon(1.0, 256, 60_000, 1000)
    assert privacy.epsilon(1.0, 256, 60_000, 4000) > base
    assert privacy.epsilon(1.0, 1024, 60_000, 1000) > base
    assert privacy.epsilon(2.0, 256, 60_000, 1000) < base
    assert privacy.epsilon(0.0, 256, 60_000, 1000) == math.inf


def test_a_private_vae_trains_and_refuses_noise_without_clipping():
    model = tiny.vae(dp_clip=1.0, dp_noise=1.0)
    model.compile(optimizer="adam")
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(tiny.binary_images(model, 8), batch_size=4, epochs=1, verbose=0)
    assert all(
        not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights)
    )
    with pytest.raises(ValueError, match="dp_noise needs dp_clip"):
        tiny.vae(dp_noise=1.0)
    with pytest.raises(ValueError, match="dp_clip must be a positive"):
        tiny.vae(dp_clip=0.0)
