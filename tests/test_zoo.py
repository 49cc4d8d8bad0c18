import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import zoo
from keras_gen.models import DCGAN

TINY_CARD = {
    "name": "tiny",
    "description": "A tiny DCGAN for tests.",
    "model": {
        "class": "DCGAN",
        "config": {
            "image_size": 16,
            "channels": 1,
            "latent_dim": 4,
            "generator_filters": 4,
            "discriminator_filters": 4,
            "seed": 0,
        },
    },
    "data": {
        "dataset": "mnist",
        "split": "train",
        "description": "Synthetic.",
        "terms": "None.",
    },
    "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
}


@pytest.fixture
def tiny_preset(tmp_path):
    model = zoo.build(TINY_CARD)
    return zoo.write(
        tmp_path / "tiny", model, TINY_CARD, model.generate(4, seed=0)
    ), model


def test_list_has_the_shipped_presets():
    assert {"dcgan_faces", "vae_mnist"} <= set(zoo.list())


def test_unknown_name_lists_presets_and_closest_match():
    with pytest.raises(ValueError) as error:
        zoo.load("dcgan_face")
    message = str(error.value)
    assert "Did you mean 'dcgan_faces'?" in message
    assert "dcgan_faces" in message and "vae_mnist" in message


def test_load_by_path_restores_the_weights(tiny_preset):
    folder, model = tiny_preset
    loaded = zoo.load(folder)
    assert isinstance(loaded, DCGAN)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (folder / "samples.png").is_file() and (folder / "README.md").is_file()
    card = zoo.card(folder)
    assert card["weights"][zoo.WEIGHTS]["sha256"] == zoo._files.sha256(
        folder / zoo.WEIGHTS
    )


def test_tampered_weights_are_refused_before_loading(tiny_preset):
    folder, _ = tiny_preset
    payload = bytearray((folder / zoo.WEIGHTS).read_bytes())
    payload[-100] ^= 0xFF
    (folder / zoo.WEIGHTS).write_bytes(bytes(payload))
    with pytest.raises(zoo.WeightsError, match="refusing .* its sha256 is"):
        zoo.load(folder)


def test_weights_are_fetched_from_the_card_url_and_verified(tiny_preset, tmp_path):
    folder, model = tiny_preset
    hosted = tmp_path / "hosted.weights.h5"
    shutil.move(folder / zoo.WEIGHTS, hosted)
    card = zoo.card(folder)
    card["weights"][zoo.WEIGHTS]["url"] = hosted.as_uri()
    (folder / zoo.CARD).write_text(json.dumps(card))
    np.testing.assert_array_equal(
        zoo.load(folder).generate(2, seed=1), model.generate(2, seed=1)
    )

    card["weights"][zoo.WEIGHTS].update(url=hosted.as_uri(), sha256="0" * 64)
    (folder / zoo.CARD).write_text(json.dumps(card))
    with pytest.raises(Exception, match="(?i)corrupt|hash"):
        zoo.load(folder)


def test_missing_weights_without_url_say_so(tiny_preset):
    folder, _ = tiny_preset
    (folder / zoo.WEIGHTS).unlink()
    with pytest.raises(zoo.WeightsError, match="missing and the card gives no URL"):
        zoo.load(folder)


def test_a_folder_without_card_is_not_a_preset(tmp_path):
    with pytest.raises(ValueError, match="has no card.json"):
        zoo.load(tmp_path)


@pytest.mark.parametrize("name", ["dcgan_faces", "vae_mnist"])
def test_shipped_preset_generates_by_contract(name):
    model = zoo.load(name)
    size = zoo.card(name)["model"]["config"]
    images = model.generate(6, seed=0)
    assert images.dtype == tf.float32 and images.shape[0] == 6
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 1.0
    np.testing.assert_array_equal(images, model.generate(6, seed=0))
    assert not np.array_equal(images, model.generate(6, seed=1))
    assert size  # the card names the architecture it was trained with


@pytest.mark.parametrize("name", ["dcgan_faces", "vae_mnist"])
def test_shipped_cards_are_complete(name):
    card = zoo.card(name)
    for key in ("model", "data", "training", "trained", "weights", "metrics"):
        assert key in card, f"{name} card lacks {key!r}"
    assert card["trained"]["command"].startswith("keras-gen train ")
    assert card["metrics"] and all(m["command"] for m in card["metrics"])
    for file, entry in card["weights"].items():
        assert zoo._files.sha256(zoo.path(name) / file) == entry["sha256"]
