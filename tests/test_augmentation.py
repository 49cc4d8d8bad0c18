"""Augmentation on tiny conditional models: shapes, label balance, seeds, refusals.

Oracles: class counts by hand, and each model's own `generate` for the images
of a batch (the labels and seed `augment` says it drew them with).
"""

import numpy as np
import pytest
import tiny

from keras_gen import data
from keras_gen.applications import augmentation
from keras_gen.models import base


def collected(dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(dataset.batch(1000))
    return tuple(np.concatenate([np.asarray(p[i]) for p in pairs]) for i in (0, 1))


def test_pairs_are_shaped_like_the_data_pipelines_and_classes_balanced():
    model = tiny.conditional_gan()  # one head of three classes, 16x16x1
    dataset = augmentation.augment(model, 7, seed=0, batch_size=3)
    images, labels = collected(dataset)
    real = data.pipeline(
        np.zeros((7, 16, 16, 1), np.uint8),
        labels=np.zeros((7, 1), np.int32),
        batch_size=7,
    )
    assert dataset.element_spec[0].shape == (16, 16, 1)
    assert next(iter(real))[1].dtype == labels.dtype == np.int32
    assert images.shape == (7, 16, 16, 1) and labels.shape == (7, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert np.bincount(labels[:, 0]).tolist() == [3, 2, 2]


def test_every_combination_of_two_heads_comes_equally_often():
    model = tiny.conditional_vae()  # age: 2 classes, gender: 3
    _, labels = collected(augmentation.augment(model, 12, seed=0, batch_size=5))
    assert labels.shape == (12, 2)
    combinations, counts = np.unique(labels, axis=0, return_counts=True)
    assert len(combinations) == 6 and set(counts) == {2}


def test_a_fixed_condition_holds_and_the_others_still_cycle():
    model = tiny.conditional_vae()
    _, labels = collected(augmentation.augment(model, 6, gender="other"))
    assert set(labels[:, 1]) == {2}
    assert np.bincount(labels[:, 0]).tolist() == [3, 3]


def test_images_are_generate_of_each_batch_labels_and_seed():
    model = tiny.conditional_gan()
    images, labels = collected(augmentation.augment(model, 5, seed=4, batch_size=2))
    for index, start in enumerate(range(0, 5, 2)):
        rows = labels[start : start + 2, 0]
        expected = model.generate(
            len(rows), seed=augmentation.batch_seed(4, index), digit=rows
        )
        np.testing.assert_allclose(images[start : start + 2], expected, atol=1e-6)


def test_same_seed_same_images_every_pass_and_seeds_share_no_batch():
    model = tiny.conditional_gan()
    dataset = augmentation.augment(model, 4, seed=1, batch_size=2)
    first, _ = collected(dataset)
    np.testing.assert_array_equal(first, collected(dataset)[0])  # a second pass
    again, _ = collected(augmentation.augment(model, 4, seed=1, batch_size=2))
    np.testing.assert_array_equal(first, again)
    other, _ = collected(augmentation.augment(model, 4, seed=0, batch_size=2))
    assert not np.allclose(first, other)
    # One class throughout, so only the seeds tell batches apart: seed + index
    # would make seed 1's first batch seed 0's second.
    one, _ = collected(augmentation.augment(model, 4, seed=1, batch_size=2, digit=1))
    zero, _ = collected(augmentation.augment(model, 4, seed=0, batch_size=2, digit=1))
    assert not np.allclose(one[:2], zero[2:])


def test_generation_is_lazy_batch_by_batch(monkeypatch):
    model = tiny.conditional_gan()
    calls = []
    generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda n, **kw: calls.append(n) or generate(n, **kw)
    )
    dataset = augmentation.augment(model, 10, batch_size=4)
    assert calls == [4]  # the first batch, which gives the dataset its shape
    next(iter(dataset.skip(4)))
    assert calls == [4, 4]  # the second batch, only once it is read


def test_models_that_cannot_draw_labelled_images_are_refused():
    with pytest.raises(base.CapabilityError, match="has no 'conditions' capability"):
        augmentation.augment(tiny.dcgan(), 4)
    with pytest.raises(base.CapabilityError, match="has no 'samples' capability"):
        augmentation.augment(tiny.classifier(), 4)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        augmentation.augment(tiny.conditional_gan(), 0)
    with pytest.raises(ValueError, match="unknown digit 'three'"):
        augmentation.augment(tiny.conditional_gan(), 4, digit="three")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        augmentation.augment(tiny.conditional_gan(), 4, seed=-1)
    with pytest.raises(ValueError, match="unknown preset"):
        augmentation.augment("cgan_fashion_mnis", 4)
