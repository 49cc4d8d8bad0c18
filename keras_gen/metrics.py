"""Sample-quality metrics on features, in float64, independent of batch size and order.

Features come from any extractor (a classifier's penultimate layer, the FID Inception
network); these functions only see arrays. Statistics that stream (`FeatureStatistics`)
accumulate sums, so feeding batches in any split or order gives the same numbers.
Image-to-image metrics (PSNR, SSIM, colourfulness) are per image, for the caller to
average.
"""

import numpy as np
import tensorflow as tf


class FeatureStatistics:
    """Streaming mean and covariance of feature vectors, for the Fréchet distance."""

    def __init__(self):
        self.count = 0
        self._sum = None
        self._outer = None

    def update(self, features) -> "FeatureStatistics":
        features = np.asarray(features, np.float64).reshape(len(features), -1)
        if self._sum is None:
            dim = features.shape[1]
            self._sum, self._outer = np.zeros(dim), np.zeros((dim, dim))
        self.count += len(features)
        self._sum += features.sum(axis=0)
        self._outer += features.T @ features
        return self

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self.count

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (divided by count - 1), as the reference FID."""
        if self.count < 2:
            raise ValueError(
                f"a covariance needs at least 2 feature vectors, got {self.count}"
            )
        mean = self.mean
        return (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def frechet_distance(mean_a, covariance_a, mean_b, covariance_b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for two Gaussians.

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues
    of the symmetric S_a^(1/2) S_b S_a^(1/2): no complex parts, and no blow-up when the
    covariances are singular (fewer samples than feature dimensions).
    """
    root_a = _psd_sqrt(np.asarray(covariance_a, np.float64))
    middle = root_a @ np.asarray(covariance_b, np.float64) @ root_a
    trace_root = np.sqrt(
        _nonnegative(np.linalg.eigvalsh((middle + middle.T) / 2))
    ).sum()
    difference = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    return float(
        difference @ difference
        + np.trace(covariance_a)
        + np.trace(covariance_b)
        - 2 * trace_root
    )


def fid(real: FeatureStatistics, generated: FeatureStatistics) -> float:
    """Fréchet distance between the feature statistics of real and generated images."""
    return frechet_distance(
        real.mean, real.covariance, generated.mean, generated.covariance
    )


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(_nonnegative(values))) @ vectors.T


def _nonnegative(eigenvalues):
    # Eigenvalues that are zero in exact arithmetic come out as +-1e-15 or so; their
    # square roots (3e-8) would add up to a visible error, so they are set to zero.
    tolerance = np.abs(eigenvalues).max() * len(eigenvalues) * np.finfo(np.float64).eps
    return np.where(eigenvalues > tolerance, eigenvalues, 0.0)


def kid(real, generated, subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """Kernel Inception Distance: unbiased MMD^2, cubic kernel (x.y / d + 1)^3.

    Mean and standard deviation over `subsets` random subsets of `subset_size` of each
    set (Bińkowski et al. 2018), as (mean, std).
    """
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    size = min(subset_size, len(real), len(generated))
    rng = np.random.default_rng(seed)
    estimates = [
        _mmd2(
            real[rng.choice(len(real), size, replace=False)],
            generated[rng.choice(len(generated), size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(estimates)), float(np.std(estimates))


def _mmd2(x, y):
    dim, n = x.shape[1], len(x)

    def kernel(a, b):
        return (a @ b.T / dim + 1) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (
        n * (n - 1)
    )
    return float(off_diagonal - 2 * k_xy.mean())


def precision_recall(real, generated, k: int = 3, batch_size: int = 1024):
    """Improved precision and recall (Kynkäänniemi et al. 2019), as (precision, recall).

    A set's manifold is the union of balls around its points reaching their k-th
    nearest neighbour. Precision: the share of generated points inside the real
    manifold; recall: the share of real points inside the generated one.
    """
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    real_radii = _kth_neighbour_distance(real, k, batch_size)
    generated_radii = _kth_neighbour_distance(generated, k, batch_size)
    precision = _inside(generated, real, real_radii, batch_size).mean()
    recall = _inside(real, generated, generated_radii, batch_size).mean()
    return float(precision), float(recall)


def _distances(a, b):
    squares = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squares, 0, None))


def _kth_neighbour_distance(points, k, batch_size):
    # Index k, not k - 1: each point's nearest neighbour in its own set is itself.
    return np.concatenate(
        [
            np.partition(_distances(points[i : i + batch_size], points), k, axis=1)[
                :, k
            ]
            for i in range(0, len(points), batch_size)
        ]
    )


def _inside(points, manifold, radii, batch_size):
    return np.concatenate(
        [
            (_distances(points[i : i + batch_size], manifold) <= radii[None, :]).any(
                axis=1
            )
            for i in range(0, len(points), batch_size)
        ]
    )


def inception_score(probabilities, splits: int = 10):
    """exp(E_x KL(p(y|x) || p(y))) from class probabilities, as (mean, std) over splits.

    1 when every prediction is the same (or uniform); the number of classes when
    predictions are confident and the classes balanced.
    """
    probabilities = np.asarray(probabilities, np.float64)
    scores = []
    for part in np.array_split(probabilities, min(splits, len(probabilities))):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (_log(part) - _log(marginal))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _log(values):
    return np.log(np.clip(values, 1e-30, None))


def mode_coverage(predicted_classes, data_distribution, min_share: float = 0.1) -> dict:
    """How the classes of generated samples cover those of the data.

    `covered`: classes that get at least `min_share` of the samples their data share
    would give them; `kl`: KL(generated || data) in nats, the divergence of the
    generated class histogram from the data's (finite, as the data has every class;
    log K when all samples fall in one of K balanced classes). Mode collapse shows as
    few classes covered and a large KL.
    """
    data_distribution = np.asarray(data_distribution, np.float64)
    data_distribution = data_distribution / data_distribution.sum()
    counts = np.bincount(
        np.asarray(predicted_classes), minlength=len(data_distribution)
    )
    generated = counts / counts.sum()
    covered = int((generated >= min_share * data_distribution).sum())
    present = generated > 0
    with np.errstate(divide="ignore"):
        kl = float(
            (
                generated[present]
                * (np.log(generated[present]) - np.log(data_distribution[present]))
            ).sum()
        )
    return {"histogram": counts.tolist(), "covered": covered, "kl": kl}


def memorisation_ratio(generated, train, test, batch_size: int = 1024) -> float:
    """Mean distance of each sample to its nearest training image over that to its nearest
    test image. Near 1: samples are no closer to what the model saw than to unseen data;
    well below 1: it reproduces training images.
    """
    generated = np.asarray(generated, np.float64).reshape(len(generated), -1)

    def nearest(reference):
        reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
        return np.concatenate(
            [
                _distances(generated[i : i + batch_size], reference).min(axis=1)
                for i in range(0, len(generated), batch_size)
            ]
        )

    return float(nearest(train).mean() / nearest(test).mean())


def bits_per_dim(nats_per_example, dimensions: int) -> float:
    """Negative log-likelihood in nats per example -> bits per dimension."""
    return float(np.mean(nats_per_example) / (dimensions * np.log(2)))


# Image-to-image metrics: each output against its own target, per image.


def psnr(images, targets) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image against its target, pixels in
    [0, 1]: 10 log10(1 / mean squared error) (`tf.image.psnr`)."""
    return tf.image.psnr(_float32(images), _float32(targets), max_val=1.0).numpy()


def ssim(images, targets) -> np.ndarray:
    """Structural similarity of each image with its target, pixels in [0, 1]
    (`tf.image.ssim`: Wang et al. 2004's 11x11 Gaussian window, sigma 1.5, k1 0.01,
    k2 0.03; colour images: the mean over channels). 1 for identical images."""
    return tf.image.ssim(_float32(images), _float32(targets), max_val=1.0).numpy()


def colourfulness(images) -> np.ndarray:
    """Hasler and Süsstrunk's (2003) colourfulness M of each RGB image in [0, 1].

    On their 0..255 scale: rg = R - G, yb = (R + G) / 2 - B, and M = sqrt(sd(rg)^2 +
    sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2) over the image's pixels; 0 for
    gray, larger for more and stronger colour. Colorization models that play safe
    give too little of it.
    """
    pixels = np.asarray(images, np.float64) * 255.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rg = (red - green).reshape(len(pixels), -1)
    yb = ((red + green) / 2 - blue).reshape(len(pixels), -1)
    spread = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2)
    return spread + 0.3 * np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)


def sharpness(images) -> float:
    """Mean squared 4-neighbour Laplacian over interior pixels, in [0, 1] units.

    The energy in an image's finest detail, which blur removes: samples that are
    blurrier than real images score below them, noisier ones above.
    """
    pixels = np.asarray(images, np.float64)
    centre = pixels[:, 1:-1, 1:-1]
    laplacian = (
        pixels[:, :-2, 1:-1]
        + pixels[:, 2:, 1:-1]
        + pixels[:, 1:-1, :-2]
        + pixels[:, 1:-1, 2:]
        - 4 * centre
    )
    return float(np.mean(laplacian**2))


def _float32(images):
    return np.asarray(images, np.float32)


# --- Separating two groups by a score: detectors and membership inference ---------


def roc_auc(negative_scores, positive_scores) -> float:
    """The area under the ROC curve: P(positive scores above negative), ties half.

    The Mann-Whitney statistic, exact for any number of ties; 0.5 is chance.
    """
    negative = np.asarray(negative_scores, np.float64).ravel()
    positive = np.asarray(positive_scores, np.float64).ravel()
    if len(negative) == 0 or len(positive) == 0:
        raise ValueError("roc_auc needs at least one score in each group")
    ranks = _average_ranks(np.concatenate([negative, positive]))
    positive_ranks = ranks[len(negative) :].sum()
    smallest = len(positive) * (len(positive) + 1) / 2
    return float((positive_ranks - smallest) / (len(positive) * len(negative)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def false_positive_rate_at_recall(
    negative_scores, positive_scores, recall: float = 0.95
) -> float:
    """The share of negatives flagged when the threshold flags `recall` of positives.

    Positives at or above the threshold are flagged; the threshold is the highest
    that still flags at least `recall` of them ("FPR at 95% TPR").
    """
    positive = np.sort(np.asarray(positive_scores, np.float64).ravel())[::-1]
    threshold = positive[int(np.ceil(recall * len(positive))) - 1]
    return float(np.mean(np.asarray(negative_scores, np.float64) >= threshold))
