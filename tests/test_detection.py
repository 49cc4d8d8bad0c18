"""Real-vs-synthetic detection on a tiny detector: data, scores, and `keras-gen detect`.

Oracles: Pillow's JPEG codec for the stored synthetic images, hand-computed
scores, a softmax of the model's own logits, and 2x2 block means for the area
resize of an image `detect` centre-crops.
"""

import argparse
import io

import numpy as np
import pytest
import tensorflow as tf
import tiny
import tool_scripts
from PIL import Image

from keras_gen import cli, metrics, training, zoo
from keras_gen.applications import augmentation, detection
from keras_gen.models import base

SHAPE = (16, 16, 3)


def tiny_detector(seed: int = 3):
    import keras

    keras.utils.set_random_seed(seed)
    return detection.detector(SHAPE, filters=(4,), feature_dim=6)


def test_stored_images_are_pillows_jpeg_read_as_the_faces_are():
    pixels = np.random.default_rng(0).random((2, *SHAPE)).astype(np.float32)
    stored = detection.as_stored(pixels)
    assert stored.dtype == np.uint8 and stored.shape == (2, *SHAPE)
    quantized = np.round(pixels * 255).astype(np.uint8)
    for image, got in zip(quantized, stored):
        # Saved by Pillow as faces64.tar's files were, decoded as data.load_images
        # decodes them.
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=95, subsampling=0)
        expected = tf.io.decode_image(buffer.getvalue(), channels=3).numpy()
        np.testing.assert_array_equal(got, expected)
    # The round trip changes noise: it is not a mere quantization.
    assert np.abs(stored.astype(int) - quantized).max() > 3


def test_synthetic_images_are_seeded_batches_of_generate(monkeypatch):
    monkeypatch.setattr(detection, "GENERATION_BATCH", 2)
    generator = tiny.dcgan(channels=3)
    raw = detection.synthetic_images(generator, 3, seed=5, stored=False)
    expected = np.concatenate(
        [
            generator.generate(2, seed=augmentation.batch_seed(5, 0)),
            generator.generate(1, seed=augmentation.batch_seed(5, 1)),
        ]
    )
    np.testing.assert_array_equal(raw, np.round(expected * 255).astype(np.uint8))
    stored = detection.synthetic_images(generator, 3, seed=5)
    np.testing.assert_array_equal(stored, detection.as_stored(expected))
    other = detection.synthetic_images(generator, 3, seed=6, stored=False)
    assert not np.array_equal(raw, other)
    with pytest.raises(base.CapabilityError, match="cannot give synthetic images"):
        detection.synthetic_images(tiny_detector(), 2, seed=0)


def test_training_set_labels_every_image_by_its_source():
    groups = {
        "real": np.full((3, *SHAPE), 10, np.uint8),
        "gan": np.full((2, *SHAPE), 20, np.uint8),
        "vae": np.full((1, *SHAPE), 30, np.uint8),
    }
    real = groups.pop("real")
    pixels, labels, sources = detection.training_set(real, groups, seed=1)
    assert pixels.shape == (6, *SHAPE) and labels.shape == (6, 1)
    assert labels.dtype == np.int32 and np.bincount(labels[:, 0]).tolist() == [3, 3]
    value = {"real": 10, "gan": 20, "vae": 30}
    for image, label, source in zip(pixels, labels[:, 0], sources):
        assert (image == value[source]).all()
        assert label == (detection.REAL if source == "real" else detection.SYNTHETIC)
    again = detection.training_set(real, groups, seed=1)
    np.testing.assert_array_equal(sources, again[2])
    assert not (sources == detection.training_set(real, groups, seed=2)[2]).all()
    with pytest.raises(ValueError, match="uint8 images of one shape"):
        detection.training_set(real, {"gan": np.zeros((1, 8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match="uint8 images of one shape"):
        detection.training_set(real, {"gan": np.zeros((1, *SHAPE), np.float32)})


def test_scores_by_hand():
    real, synthetic = [0.1, 0.6, 0.3], [0.7, 0.4]
    found = detection.scores(real, synthetic)
    assert found["accuracy"] == pytest.approx(3 / 5)
    assert found["real_called_real"] == pytest.approx(2 / 3)
    assert found["synthetic_called_synthetic"] == pytest.approx(1 / 2)
    # 0.7 beats all three real scores, 0.4 beats two of them.
    assert found["roc_auc"] == pytest.approx(5 / 6)
    assert found["roc_auc"] == metrics.roc_auc(real, synthetic)


def test_probability_is_the_softmax_of_the_synthetic_logit():
    model = tiny_detector()
    pixels = np.random.default_rng(1).random((4, *SHAPE)).astype(np.float32)
    (logits,) = model(pixels)
    logits = np.asarray(logits, np.float64)
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    got = detection.synthetic_probability(model, pixels)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert detection.is_detector(model)


def test_only_detectors_are_accepted():
    with pytest.raises(base.CapabilityError, match="heads shape .*, size .*: not a"):
        detection.require_detector(tiny.classifier(), "mine")
    with pytest.raises(base.CapabilityError, match="does not classify images"):
        detection.require_detector(tiny.dcgan())


def _write_image(path, pixels: np.ndarray, format: str = "PNG") -> str:
    Image.fromarray(pixels.squeeze()).save(path, format)
    return str(path)


def test_detect_command_crops_resizes_and_prints_each_probability(tmp_path, capsys):
    model = tiny_detector()
    card = {
        "model": {
            "class": "Classifier",
            "config": {k: model.get_config()[k] for k in model.arguments()},
        },
        "data": {
            "dataset": "faces",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    preset = str(zoo.write(tmp_path / "tiny_detector", model, card, None))
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)  # cropped to 32x32
    small = rng.integers(0, 256, SHAPE, dtype=np.uint8)  # read as it is
    paths = [
        _write_image(tmp_path / "wide.png", wide),
        _write_image(tmp_path / "small.png", small),
    ]
    assert cli.main(["detect", preset, *paths]) == 0
    printed = [line.split("  ") for line in capsys.readouterr().out.splitlines()]
    assert [path for _, path in printed] == paths
    # Centre crop, then area resize by two: the mean of each 2x2 block.
    crop = wide[:, 8:40].astype(np.float64)
    blocks = crop.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    expected_pixels = (np.stack([np.round(blocks), small]) / 255.0).astype("float32")
    read = detection.read_images(paths, SHAPE)
    np.testing.assert_allclose(read, expected_pixels, atol=1 / 255 + 1e-6)
    expected = detection.synthetic_probability(model, expected_pixels)
    np.testing.assert_allclose([float(p) for p, _ in printed], expected, atol=2e-3)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    for argv, message in (
        ([preset, str(tmp_path / "missing.png")], "does not exist"),
        ([preset, str(garbage)], "garbage.png"),
        (["classifier_faces", paths[0]], "not a real-vs-synthetic detector"),
    ):
        assert cli.main(["detect", *argv]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error


def test_keras_gen_train_refuses_a_preset_its_card_says_a_tool_makes():
    import pytest

    from keras_gen import training, zoo

    recipe = zoo.card("detector_faces")
    assert recipe["training"]["made_by"] == "python tools/detector.py"
    with pytest.raises(ValueError, match="make it with python tools/detector.py"):
        training._check_trainable(recipe)


def test_detector_faces_was_made_from_the_shipped_generators():
    """A retrained generator draws other samples: the detector's numbers stop holding."""
    made_from = zoo.card("detector_faces")["data"]["generators"]
    assert set(made_from) == {"dcgan_faces", "cvae_faces", "wgan_gp_faces"}
    shipped = {
        name: zoo.card(name)["weights"][zoo.WEIGHTS]["sha256"] for name in made_from
    }
    assert made_from == shipped, (
        "a generator changed since detector_faces was made: run python "
        "tools/detector.py --data ../shared/data/faces64.tar --output zoo/detector_faces"
    )


def test_detector_tool_curve_measures_auc_without_changing_training():
    """tools/detector.py --eval-every: the unseen generator's test ROC-AUC at the
    due epochs, by inference only, so the trained weights are those of a run
    without it; and the card gets the curve with its figure."""
    from sklearn.metrics import roc_auc_score

    tool = tool_scripts.load("detector")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 160, (24, *SHAPE), dtype=np.uint8)
    synthetic = rng.integers(90, 256, (24, *SHAPE), dtype=np.uint8)
    images = np.concatenate([real, synthetic])
    labels = np.repeat([0, 1], 24).astype("int32")[:, None]
    args = argparse.Namespace(
        seed=0, filters=[4], feature_dim=6, learning_rate=1e-2, batch_size=16, epochs=4
    )
    command = "python tools/detector.py --eval-every 2"
    curve = tool.auc_curve(2, real[:10], synthetic[:10], command)
    measured = tool.fitted(images, labels, args, [curve])
    plain = tool.fitted(images, labels, args)
    for a, b in zip(measured.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)

    assert [(p["epoch"], p["step"]) for p in curve.points] == [(2, 6), (4, 12)]
    probabilities = [
        tool.probabilities(measured, x) for x in (real[:10], synthetic[:10])
    ]
    expected = roc_auc_score(np.repeat([0, 1], 10), np.concatenate(probabilities))
    assert curve.points[-1]["value"] == pytest.approx(expected, abs=1e-9)

    card, figures = {"figures": []}, {}
    curve.add_to(card, figures)
    assert card["training_curve"] == {
        "command": command,
        "metric": tool.CURVE_METRIC,
        "samples": 10,
        "points": curve.points,
    }
    assert [f["file"] for f in card["figures"]] == [training.CURVE_FIGURE]
    assert figures[training.CURVE_FIGURE][0].shape[-1] == 3
