import itertools

import numpy as np
import pytest

from keras_gen import evaluation


def test_mean_pairwise_distance_matches_a_plain_loop():
    images = np.random.default_rng(0).random((7, 3, 3, 2))
    pairs = [np.linalg.norm(a - b) for a, b in itertools.permutations(images, 2)]
    assert evaluation.mean_pairwise_distance(images) == pytest.approx(
        np.mean(pairs), rel=1e-8
    )


def test_identical_samples_have_no_diversity():
    assert evaluation.mean_pairwise_distance(np.ones((5, 4, 4, 1))) == pytest.approx(
        0.0, abs=1e-6
    )
