import numpy as np
import pytest
import tiny

from keras_gen.models import base, networks


def test_probabilities_per_head_and_features_from_the_same_network():
    model = tiny.classifier()
    images = tiny.binary_images(model, 5)
    probabilities = model.probabilities(images)
    assert list(probabilities) == ["shape", "size"]
    assert probabilities["shape"].shape == (5, 3) and probabilities["size"].shape == (
        5,
        2,
    )
    for value in probabilities.values():
        np.testing.assert_allclose(np.sum(value, axis=1), 1.0, rtol=1e-5)
    features = model.features(images)
    assert features.shape == (5, model.feature_dim)
    logits = model(images)
    np.testing.assert_allclose(
        model.heads[0](features), logits[0], rtol=1e-5, atol=1e-6
    )


def test_loss_is_the_sum_of_each_heads_cross_entropy():
    model = tiny.classifier()
    model.compile(optimizer="sgd")
    images, labels = tiny._classified_images(model, 6)
    logs = model.evaluate(images, labels, return_dict=True, verbose=0, batch_size=6)
    probabilities = model.probabilities(images)
    expected = -sum(
        np.log(np.asarray(probabilities[head])[np.arange(6), labels[:, i]])
        for i, head in enumerate(["shape", "size"])
    ).mean()
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)


def test_training_learns_a_separable_task():
    model = tiny.classifier(class_names={"bright": ["no", "yes"]})
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (256, 1)).astype("int32")
    images = (rng.random((256, 8, 8, 1)) * 0.5 + 0.5 * labels[:, :, None, None]).astype(
        "float32"
    )
    model.fit(images, labels, epochs=20, batch_size=32, verbose=0)
    logs = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert logs["bright_accuracy"] > 0.95


def test_clear_errors_for_missing_labels_and_wrong_shapes():
    model = tiny.classifier()
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"labels of shape \(batch, 2\)"):
        model.fit(tiny.binary_images(model, 4), epochs=1, verbose=0)
    with pytest.raises(
        ValueError, match=r"expected images of shape \(batch, 8, 8, 1\)"
    ):
        model.features(np.zeros((2, 9, 9, 1), "float32"))
    with pytest.raises(ValueError, match="at least one head"):
        tiny.classifier(class_names={})


def test_a_classifier_says_it_cannot_generate():
    model = tiny.classifier()
    assert model.can(base.CLASSIFY) and not model.can(base.SAMPLES)
    message = "Classifier cannot generate images: it has no 'samples' capability"
    with pytest.raises(base.CapabilityError, match=f"{message} \\(it has: classify\\)"):
        model.generate(2)
    with pytest.raises(ValueError, match="unknown capability 'sample'"):
        model.can("sample")


def test_without_dropout_or_augmentation_training_draws_no_noise():
    # What the shipped presets before these options are: they load unchanged.
    model = tiny.classifier(dropout=0.0, flip=False, shift=0)
    assert model.flip_and_shift is None and model.feature_dropout is None
    images = tiny.binary_images(model, 4)
    for a, b in zip(model(images, training=True), model(images, training=True)):
        np.testing.assert_array_equal(a, b)  # batch statistics, and nothing drawn


def test_flips_and_shifts_move_whole_pixels_and_only_in_training():
    layer = networks.ReplicaFlipAndShift(flip=True, shift=2, seed=3)
    images = np.random.default_rng(0).random((256, 6, 7, 2)).astype("float32")
    np.testing.assert_array_equal(layer(images, training=False), images)
    moved = np.asarray(layer(images, training=True))
    found = [_flip_and_shift_of(image, out, 2) for image, out in zip(images, moved)]
    assert None not in found  # each output is its input, mirrored or not, shifted
    assert {flip for flip, _, _ in found} == {False, True}
    assert {(rows, columns) for _, rows, columns in found} == {
        (rows, columns) for rows in range(-2, 3) for columns in range(-2, 3)
    }  # every shift of up to 2 pixels each way, among 256 draws
    again = np.asarray(layer(images, training=True))
    assert not np.array_equal(again, moved)  # a new draw at every call


def _flip_and_shift_of(image, out, shift):
    """(flipped, rows, columns) such that out is image, mirrored if flipped, moved
    down rows and right columns with zeros coming in; None if there is none."""
    height, width = image.shape[:2]
    for flipped in (False, True):
        source = image[:, ::-1] if flipped else image
        for rows in range(-shift, shift + 1):
            for columns in range(-shift, shift + 1):
                expected = np.zeros_like(image)
                top, left = max(rows, 0), max(columns, 0)
                bottom, right = height + min(rows, 0), width + min(columns, 0)
                expected[top:bottom, left:right] = source[
                    top - rows : bottom - rows, left - columns : right - columns
                ]
                if np.array_equal(expected, out):
                    return flipped, rows, columns
    return None


def test_bad_shift_is_refused():
    with pytest.raises(ValueError, match="shift must be a number of pixels >= 0"):
        networks.ReplicaFlipAndShift(shift=-1)
