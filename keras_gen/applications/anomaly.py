"""Anomaly detection with a likelihood model: scores, a thresholded detector, and
how well the scores separate normal from anomalous images.

The score is the negative log-likelihood per image: data unlike the training
data should be improbable. Likelihood models are known to fail this way too
(Nalisnick et al. 2019): simple images can be *more* probable than the training
data. `complexity_correction` subtracts the image's PNG-compressed length
(Serra et al. 2020), an estimate of how probable it is under any model.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_gen.models import base

BATCH_SIZE = 100


def anomaly_scores(
    model: base.Family, images, complexity_correction: bool = False, **conditions
) -> np.ndarray:
    """One score per image, higher meaning more anomalous, in bits per dimension.

    Without correction: -log2 p(x) / D. With it: that minus the PNG length of the
    image in bits / D (Serra et al.'s S(x), with PNG as the generic compressor).
    Images are in [0, 1] as the model scores them (binary for Bernoulli models).
    """
    model.require(base.LIKELIHOOD, "score anomalies")
    images = np.asarray(images, np.float32)
    dimensions = int(np.prod(images.shape[1:]))
    nats = np.concatenate(
        [
            np.asarray(
                model.negative_log_likelihood(images[i : i + BATCH_SIZE], **conditions)
            )
            for i in range(0, len(images), BATCH_SIZE)
        ]
    )
    bits = nats / np.log(2.0) / dimensions
    if complexity_correction:
        bits = bits - png_bits(images) / dimensions
    return bits


def png_bits(images) -> np.ndarray:
    """The length in bits of each image (in [0, 1]) encoded as an 8-bit PNG."""
    pixels = tf.cast(tf.round(tf.convert_to_tensor(images) * 255.0), tf.uint8)
    return np.array([8 * len(tf.io.encode_png(image).numpy()) for image in pixels])


@dataclasses.dataclass(frozen=True)
class AnomalyDetector:
    """A likelihood model and the score above which an image is called anomalous.

    Example:
        detector = AnomalyDetector.fit(vae, held_out_digits, false_positive_rate=0.05)
        detector.is_anomalous(images)  # bool per image
    """

    model: base.Family
    threshold: float
    false_positive_rate: float
    complexity_correction: bool = False

    @classmethod
    def fit(
        cls,
        model: base.Family,
        normal_images,
        false_positive_rate: float = 0.05,
        complexity_correction: bool = False,
    ) -> "AnomalyDetector":
        """Choose the threshold that flags `false_positive_rate` of held-out normal images.

        Use images the model did not train on: training images score too well.
        """
        if not 0.0 < false_positive_rate < 1.0:
            raise ValueError(
                f"false_positive_rate must be in (0, 1), got {false_positive_rate!r}"
            )
        scores = anomaly_scores(model, normal_images, complexity_correction)
        threshold = float(np.quantile(scores, 1.0 - false_positive_rate))
        return cls(model, threshold, false_positive_rate, complexity_correction)

    def scores(self, images) -> np.ndarray:
        """Anomaly scores as the detector computes them."""
        return anomaly_scores(self.model, images, self.complexity_correction)

    def is_anomalous(self, images) -> np.ndarray:
        """True for each image scoring above the threshold."""
        return self.scores(images) > self.threshold
