import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage

from keras_gen import metrics


def statistics(features, batch_size=None):
    stats = metrics.FeatureStatistics()
    batch_size = batch_size or len(features)
    for i in range(0, len(features), batch_size):
        stats.update(features[i : i + batch_size])
    return stats


def test_fid_of_two_gaussians_has_the_closed_form():
    # Diagonal covariances: FID = |mu_a - mu_b|^2 + sum (sa + sb - 2 sqrt(sa sb)).
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 4 + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    got = metrics.frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fid_matches_an_independent_scipy_computation():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16))
    b = rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16)) * 0.5 + 0.3
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * root)
    assert metrics.fid(statistics(a), statistics(b)) == pytest.approx(
        expected, rel=1e-8
    )


def test_fid_of_a_set_with_itself_is_zero_even_when_singular():
    features = np.random.default_rng(1).standard_normal(
        (10, 64)
    )  # fewer samples than dims
    stats = statistics(features)
    assert metrics.fid(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_statistics_do_not_depend_on_batch_size_or_order():
    features = np.random.default_rng(2).standard_normal((101, 5))
    whole = statistics(features)
    shuffled = statistics(
        features[np.random.default_rng(3).permutation(101)], batch_size=7
    )
    np.testing.assert_allclose(whole.mean, shuffled.mean, rtol=1e-12)
    np.testing.assert_allclose(
        whole.covariance, np.cov(features, rowvar=False), rtol=1e-10
    )
    np.testing.assert_allclose(whole.covariance, shuffled.covariance, rtol=1e-10)


def test_kid_is_unbiased_for_samples_of_one_distribution():
    rng = np.random.default_rng(4)
    same = [
        metrics.kid(
            rng.standard_normal((60, 8)), rng.standard_normal((60, 8)), subsets=20
        )[0]
        for _ in range(30)
    ]
    # Unbiased: the mean over many draws is near 0 and takes both signs (a biased
    # estimator would stay positive).
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3
    assert min(same) < 0 < max(same)
    far, _ = metrics.kid(rng.standard_normal((60, 8)), rng.standard_normal((60, 8)) + 3)
    assert far > 10 * max(same)


def test_kid_does_not_depend_on_order_beyond_its_subsets():
    rng = np.random.default_rng(5)
    real, generated = rng.standard_normal((50, 4)), rng.standard_normal((50, 4)) + 0.5
    one = metrics.kid(real, generated, subsets=1, subset_size=50)
    other = metrics.kid(real[::-1], generated[::-1], subsets=1, subset_size=50)
    assert one[0] == pytest.approx(other[0], rel=1e-10)


def test_precision_recall_on_identical_and_far_apart_sets():
    points = np.random.default_rng(6).standard_normal((200, 3))
    assert metrics.precision_recall(points, points) == (1.0, 1.0)
    assert metrics.precision_recall(points, points + 100.0) == (0.0, 0.0)
    shuffled = points[np.random.default_rng(7).permutation(200)]
    assert metrics.precision_recall(points, shuffled, batch_size=17) == (1.0, 1.0)


def test_precision_recall_see_a_collapsed_generator():
    rng = np.random.default_rng(8)
    real = rng.standard_normal((300, 2))
    collapsed = rng.standard_normal((300, 2)) * 0.05  # all samples near one mode
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.2


def test_inception_score_bounds():
    uniform = np.full((100, 10), 0.1)
    assert metrics.inception_score(uniform)[0] == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(100) % 10]
    assert metrics.inception_score(confident, splits=1)[0] == pytest.approx(10.0)
    assert metrics.inception_score(confident[::-1], splits=1)[0] == pytest.approx(10.0)
    assert np.isfinite(metrics.inception_score(confident[:3])[0])  # fewer than splits


def test_mode_coverage_counts_classes_and_kl():
    data = np.full(10, 0.1)
    balanced = metrics.mode_coverage(np.arange(1000) % 10, data)
    assert balanced["covered"] == 10 and balanced["kl"] == pytest.approx(0.0, abs=1e-12)
    collapsed = metrics.mode_coverage(np.array([3] * 990 + [4] * 10), data)
    expected = 0.99 * np.log(0.99 / 0.1) + 0.01 * np.log(0.01 / 0.1)
    assert collapsed["covered"] == 1
    assert collapsed["kl"] == pytest.approx(expected, rel=1e-12)
    one_class = metrics.mode_coverage(np.zeros(50, int), data)
    assert one_class["kl"] == pytest.approx(np.log(10), rel=1e-12)
    assert collapsed["histogram"][3] == 990


def test_memorisation_ratio():
    rng = np.random.default_rng(9)
    train, test = rng.random((50, 4, 4)), rng.random((50, 4, 4))
    copies = train[:20] + 1e-3
    assert metrics.memorisation_ratio(copies, train, test) < 0.05
    fresh = rng.random((40, 4, 4))
    assert 0.7 < metrics.memorisation_ratio(fresh, train, test) < 1.4


def test_bits_per_dim_of_a_known_density():
    # A uniform distribution over 256 values per pixel: 8 bits per dimension exactly.
    nats = np.full(5, 784 * np.log(256))
    assert metrics.bits_per_dim(nats, 784) == pytest.approx(8.0)


# Image-to-image metrics, against independent computations.


def test_psnr_is_ten_log10_of_one_over_the_mean_squared_error():
    rng = np.random.default_rng(0)
    targets = rng.random((3, 8, 8, 3))
    images = np.clip(targets + rng.normal(0, 0.1, targets.shape), 0, 1)
    mse = ((images - targets) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(
        metrics.psnr(images, targets), 10 * np.log10(1 / mse), rtol=1e-5
    )


def test_ssim_is_one_for_identical_images_and_less_otherwise():
    rng = np.random.default_rng(1)
    targets = rng.random((2, 16, 16, 3))
    np.testing.assert_allclose(metrics.ssim(targets, targets), 1.0, rtol=1e-6)
    noisy = np.clip(targets + rng.normal(0, 0.2, targets.shape), 0, 1)
    assert (metrics.ssim(noisy, targets) < 0.9).all()


def test_colourfulness_follows_hasler_and_suesstrunk():
    rng = np.random.default_rng(2)
    images = rng.random((2, 5, 4, 3))
    for image, found in zip(images, metrics.colourfulness(images)):
        red, green, blue = (image[..., c].ravel() * 255 for c in range(3))
        rg, yb = red - green, 0.5 * (red + green) - blue
        expected = np.hypot(np.std(rg), np.std(yb)) + 0.3 * np.hypot(
            np.mean(rg), np.mean(yb)
        )
        assert found == pytest.approx(expected, rel=1e-10)
    gray = np.repeat(images[..., :1], 3, axis=-1)
    np.testing.assert_allclose(metrics.colourfulness(gray), 0.0, atol=1e-9)


def test_sharpness_is_the_laplacians_energy_and_blur_lowers_it():
    rng = np.random.default_rng(3)
    images = rng.random((3, 9, 7, 2))
    # scipy's Laplacian per image and channel, its border (where modes differ) cut.
    responses = [
        scipy.ndimage.laplace(image[..., c])[1:-1, 1:-1]
        for image in images
        for c in range(2)
    ]
    expected = np.mean(np.square(responses))
    assert metrics.sharpness(images) == pytest.approx(expected, rel=1e-12)
    blurred = scipy.ndimage.gaussian_filter(images, sigma=(0, 1, 1, 0))
    assert metrics.sharpness(blurred) < 0.5 * metrics.sharpness(images)
    assert metrics.sharpness(np.full((1, 5, 5, 1), 0.3)) == 0.0


def test_a_covariance_of_one_feature_vector_is_refused():
    single = metrics.FeatureStatistics().update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2 feature vectors, got 1"):
        single.covariance  # noqa: B018  (the property raises)
