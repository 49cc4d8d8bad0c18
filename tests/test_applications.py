"""Applications on tiny models: latent paths, anomaly scores and detectors, inpainting.

Oracles: scikit-learn for the ROC numbers, hand computations for the paths and
scores, and each model's own sampler for inpainting with every pixel missing.
"""

import numpy as np
import pytest
import tensorflow as tf
import tiny
from sklearn import metrics as sklearn_metrics

from keras_gen import metrics
from keras_gen.applications import anomaly, inpainting, latent
from keras_gen.models import base


def test_roc_auc_and_fpr_at_recall_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    # Rounded scores: many ties across the groups, the case rank formulas get wrong.
    negative = np.round(rng.normal(0.0, 1.0, 300), 1)
    positive = np.round(rng.normal(0.8, 1.0, 200), 1)
    truth = np.r_[np.zeros(300), np.ones(200)]
    scores = np.r_[negative, positive]
    expected = sklearn_metrics.roc_auc_score(truth, scores)
    assert metrics.roc_auc(negative, positive) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, _ = sklearn_metrics.roc_curve(truth, scores)
    expected_fpr = fpr[np.searchsorted(tpr, 0.95)]
    got = metrics.false_positive_rate_at_recall(negative, positive, 0.95)
    assert got == pytest.approx(expected_fpr)


def test_slerp_keeps_the_norm_and_linear_is_the_chord():
    start, end = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0])
    arc = latent.path(start, end, steps=5)
    np.testing.assert_allclose(np.linalg.norm(arc, axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(arc[2], [3 / 2**0.5, 0, 3 / 2**0.5], rtol=1e-6)
    chord = latent.path(start, end, steps=3, method="linear")
    np.testing.assert_allclose(chord[1], [1.5, 0.0, 1.5])
    with pytest.raises(ValueError, match="method must be one of"):
        latent.path(start, end, steps=3, method="cubic")
    with pytest.raises(ValueError, match="steps must be an integer of at least 2"):
        latent.path(start, end, steps=1)


def test_interpolation_between_seeds_ends_at_the_seeds_images():
    model = tiny.dcgan()
    strip = latent.interpolate(model, 3, 7, steps=4)
    assert strip.shape == (4, 16, 16, 1)
    np.testing.assert_allclose(strip[0], model.generate(1, seed=3)[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], model.generate(1, seed=7)[0], atol=1e-5)


def test_images_enter_the_latent_space_by_encoder_or_by_recovery():
    vae = tiny.vae()
    images = tiny.binary_images(vae, 4)
    np.testing.assert_allclose(
        latent.latents_of_images(vae, images), vae.encode(images).mean(), atol=1e-6
    )
    gan = tiny.dcgan()
    for weight in gan.generator.trainable_weights:  # outputs far from a flat 0.5
        weight.assign(weight * 4.0)
    targets = gan.decode(tf.random.stateless_normal([4, gan.latent_dim], seed=(5, 5)))
    start = gan.decode(tf.random.stateless_normal([4, gan.latent_dim], seed=(0, 0)))
    recovered = gan.decode(
        latent.recover_latents(gan, targets, steps=100, prior_weight=0.0)
    )
    error = np.mean((np.asarray(recovered) - targets) ** 2)
    assert error < 0.25 * np.mean((np.asarray(start) - targets) ** 2)


def test_attribute_direction_is_the_difference_of_group_means():
    vae = tiny.vae()
    images = tiny.binary_images(vae, 6)
    labels = np.array(["old", "young", "old", "young", "young", "young"])
    means = np.asarray(vae.encode(images).mean())
    expected = means[[0, 2]].mean(0) - means[[1, 3, 4, 5]].mean(0)
    direction = latent.attribute_direction(vae, images, labels, "old")
    np.testing.assert_allclose(direction, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="must label some images but not all"):
        latent.attribute_direction(vae, images, labels, "baby")


def test_latent_exploration_refuses_models_without_latents():
    with pytest.raises(base.CapabilityError, match="no latent space"):
        latent.interpolate(tiny.pixelcnn(), 0, 1)


def test_anomaly_scores_are_bits_per_dimension_of_the_likelihood():
    model = tiny.pixelcnn()
    images = tiny.binary_images(model, 5)
    nats = np.asarray(model.negative_log_likelihood(images))
    scores = anomaly.anomaly_scores(model, images)
    np.testing.assert_allclose(scores, nats / np.log(2) / 36, rtol=1e-5)
    corrected = anomaly.anomaly_scores(model, images, complexity_correction=True)
    np.testing.assert_allclose(
        corrected, scores - anomaly.png_bits(images) / 36, rtol=1e-5
    )
    with pytest.raises(base.CapabilityError, match="cannot score anomalies"):
        anomaly.anomaly_scores(tiny.dcgan(), np.zeros((1, 16, 16, 1)))


def test_detector_flags_its_false_positive_rate_of_normal_images():
    model = tiny.pixelcnn()
    normal = tiny.binary_images(model, 40)
    detector = anomaly.AnomalyDetector.fit(model, normal, false_positive_rate=0.25)
    assert detector.is_anomalous(normal).mean() == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="false_positive_rate must be in"):
        anomaly.AnomalyDetector.fit(model, normal, false_positive_rate=1.0)


def test_pixelcnn_inpainting_keeps_observed_pixels_and_draws_as_generate_does():
    model = tiny.pixelcnn()
    images = tiny.binary_images(model, 3)
    everything = np.ones_like(images)
    np.testing.assert_array_equal(
        inpainting.inpaint(model, images, everything, seed=4),
        model.generate(3, seed=4),
    )
    mask = inpainting.bottom_half(images.shape)
    filled = np.asarray(inpainting.inpaint(model, images, mask, seed=4))
    np.testing.assert_array_equal(filled[:, :3], images[:, :3])
    assert set(np.unique(filled)) <= {0.0, 1.0}


def test_vae_inpainting_keeps_observed_pixels_and_is_seeded():
    model = tiny.vae()
    images = tiny.binary_images(model, 3)
    mask = inpainting.bottom_half(images.shape)
    filled = np.asarray(inpainting.inpaint(model, images, mask, seed=1))
    np.testing.assert_array_equal(filled[:, :4], images[:, :4])
    assert 0.0 <= filled.min() and filled.max() <= 1.0
    again = inpainting.inpaint(model, images, mask, seed=1)
    np.testing.assert_array_equal(filled, again)
    with pytest.raises(ValueError, match="the mask must have the images' shape"):
        inpainting.inpaint(model, images, mask[:, :4], seed=1)


def test_mean_filling_and_filled_region_psnr_by_hand():
    images = np.zeros((1, 2, 2, 1))
    missing = np.array([[[[0], [1]], [[0], [1]]]], np.float32)
    filled = inpainting.mean_filled(images, missing, np.full((2, 2, 1), 0.1))
    np.testing.assert_allclose(filled[0, :, :, 0], [[0, 0.1], [0, 0.1]])
    np.testing.assert_allclose(
        inpainting.filled_psnr(filled, images, missing), [20.0], rtol=1e-6
    )


def test_interpolate_command_writes_rows_or_a_looping_gif(tmp_path):
    from PIL import Image
    from test_zoo import TINY_CARD

    from keras_gen import cli, zoo

    model = zoo.build(TINY_CARD)
    preset = zoo.write(tmp_path / "tiny", model, TINY_CARD, model.generate(4, seed=0))
    strip = tmp_path / "strip.png"
    argv = ["interpolate", str(preset), "--seeds", "1", "2", "3", "--steps", "4"]
    assert cli.main([*argv, "-o", str(strip)]) == 0
    # Two rows of four 16-pixel images, 2 pixels of padding around each.
    assert Image.open(strip).size == (4 * 16 + 5 * 2, 2 * 16 + 3 * 2)
    gif = tmp_path / "loop.gif"
    assert cli.main([*argv, "--gif", "-o", str(gif)]) == 0
    frames = Image.open(gif)
    assert frames.n_frames == 3 * 3  # 1 -> 2 -> 3 -> 1, no frame twice
    first = np.asarray(frames.convert("L"), np.float32) / 255
    expected = np.asarray(model.generate(1, seed=1))[0, :, :, 0]
    np.testing.assert_allclose(first, expected, atol=1 / 255 + 1e-6)
    assert cli.main([*argv, "--gif", "-o", str(gif)]) == 0  # its own file: replaced
    user_file = tmp_path / "mine.gif"
    user_file.write_bytes(b"GIF89a not ours")
    assert cli.main([*argv, "--gif", "-o", str(user_file)]) == 2
    assert user_file.read_bytes() == b"GIF89a not ours"
    assert cli.main(["interpolate", str(preset), "--seeds", "1", "-o", str(strip)]) == 2
