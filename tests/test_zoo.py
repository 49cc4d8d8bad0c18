import copy
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import zoo
from keras_gen.models import DCGAN, base

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
    "training": {
        "epochs": 1,
        "batch_size": 4,
        "seed": 0,
        "compile": {},
        # Not the default 1,000 samples: what a tiny model's numbers are is not tested.
        "evaluation": {"num_samples": 100},
    },
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


# --- Cards: one schema, errors naming the file and the key ---------------------------

DELETE = object()


def write_card(folder: Path, changes=(), text: str | None = None) -> Path:
    """A preset folder holding only TINY_CARD with `changes` ("a.b", value) applied."""
    card = copy.deepcopy(TINY_CARD)
    for key_path, value in changes:
        *parents, last = key_path.split(".")
        node = card
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    folder.mkdir(parents=True)
    (folder / zoo.CARD).write_text(text if text is not None else json.dumps(card))
    return folder


@pytest.fixture
def no_hang():
    """Fail, rather than hang the suite, if a test reads a file it should refuse."""

    def fail(*_):
        raise TimeoutError("read a file that should have been refused unread")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name", zoo.list())
def test_every_shipped_card_fits_the_schema(name):
    card = zoo.validate(zoo.card(name), name)
    # A preset trained into another folder and copied here keeps that folder's name.
    assert card["name"] == name
    samples = card.get("trained", {}).get("samples_command")
    assert samples is None or samples.startswith(f"keras-gen sample {name} ")
    folder = zoo.path(name)
    for file in [
        *card.get("weights", {}),
        *(f["file"] for f in card.get("figures", [])),
    ]:
        assert (folder / file).is_file() and not (folder / file).is_symlink(), file


@pytest.mark.parametrize("name", zoo.list())
def test_every_shipped_model_card_is_what_its_card_renders(name):
    # A card edited without re-rendering leaves its README stale: run
    # python tools/model_cards.py after editing a card.
    shipped = (zoo.path(name) / "README.md").read_text()
    assert shipped == zoo.model_card(zoo.card(name)), (
        f"zoo/{name}/README.md is stale: run python tools/model_cards.py"
    )


def test_the_schema_table_is_well_formed():
    for pattern in zoo.CARD_SCHEMA:
        parent, _ = zoo._split(pattern)
        if parent:
            expected = zoo.LIST if pattern.endswith("[]") else zoo.OBJECT
            assert zoo.CARD_SCHEMA[parent][1] is expected, pattern


SIXTY_FOUR_ZEROS = "0" * 64


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (
            [("training.batch_size", "8")],
            'training.batch_size must be a positive integer, got "8"',
        ),
        ([("training.batch_size", 0)], "training.batch_size must be a positive"),
        ([("training.epochs", True)], "training.epochs must be a positive integer"),
        ([("training.seed", 1.5)], "training.seed must be an integer, got 1.5"),
        (
            [("training.evaluation", {"measure": ["steps", "fid"]})],
            "training.evaluation.measure must be a list of some of test, samples,",
        ),
        ([("training.batch_size", DELETE)], "training.batch_size is missing"),
        ([("training.compile", DELETE)], "training.compile is missing"),
        ([("data", DELETE)], "data is missing"),
        ([("data.split", 3)], "data.split must be a string, got 3"),
        ([("data.labels", "yes")], "data.labels must be true or false"),
        ([("model.class", 7)], "model.class must be a string"),
        ([("model.config", [])], "model.config must be a JSON object"),
        ([("trainig", {})], "unknown key trainig. Did you mean 'training'?"),
        ([("training.batchsize", 8)], "unknown key training.batchsize"),
        ([("trained", {"command": "x"})], "trained.epochs is missing"),
        (
            [("weights", {zoo.WEIGHTS: {"sha256": "abc", "url": None}})],
            'weights["model.weights.h5"].sha256 must be a sha256',
        ),
        (
            [("weights", {zoo.WEIGHTS: {"sha256": SIXTY_FOUR_ZEROS, "url": 5}})],
            'weights["model.weights.h5"].url must be a string or null',
        ),
        (
            [("weights", {zoo.WEIGHTS: {"sha256": SIXTY_FOUR_ZEROS}})],
            'weights["model.weights.h5"].url is missing',
        ),
        (
            [("metrics", [{"name": "x", "value": "1", "command": "c"}])],
            'metrics[0].value must be a number, got "1"',
        ),
        ([("metrics", [{"name": "x", "value": 1.0}])], "metrics[0].command is missing"),
        ([("metrics", {"x": 1})], "metrics must be a list"),
    ],
)
def test_a_card_that_breaks_the_schema_names_its_file_and_key(
    tmp_path, changes, fragment
):
    folder = write_card(tmp_path / "p", changes)
    with pytest.raises(zoo.CardError) as error:
        zoo.card(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / zoo.CARD}: "), message
    assert fragment in message


def test_invalid_json_names_the_file_and_line(tmp_path):
    folder = write_card(
        tmp_path / "p", text='{\n  "model": {\n    "class": "DCGAN",\n  }\n}'
    )
    with pytest.raises(
        zoo.CardError, match="invalid JSON at line 4, column 3"
    ) as error:
        zoo.card(folder)
    assert str(folder / zoo.CARD) in str(error.value)


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[1, 2]", "the card must be a JSON object"),
    ],
)
def test_a_card_that_is_not_a_json_object_is_refused(tmp_path, payload, fragment):
    folder = write_card(tmp_path / "p")
    (folder / zoo.CARD).write_bytes(payload)
    with pytest.raises(zoo.CardError, match=fragment):
        zoo.card(folder)


def test_an_unknown_model_class_lists_the_known_ones(tmp_path):
    folder = write_card(tmp_path / "p", [("model.class", "DCGANN")])
    with pytest.raises(zoo.CardError) as error:
        zoo.card(folder)
    message = str(error.value)
    assert "'DCGANN' is an unknown model class. Did you mean 'DCGAN'?" in message
    known = ", ".join(sorted(base.FAMILIES))  # every registered family, sorted
    assert f"Known classes: {known}." in message


VAE_MODEL = {"class": "VAE", "config": {"image_shape": [8, 8, 1], "latent_dim": 2}}


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (
            [("model.config.latent_dimm", 3)],
            "model.config.latent_dimm is not an argument of DCGAN (did you mean",
        ),
        (
            [("model.config.image_size", "16")],
            'model.config.image_size must be an integer like its default 64, got "16"',
        ),
        (
            [("model.class", "ConditionalGAN")],
            "model.config.conditions is missing: ConditionalGAN has no default",
        ),
        (
            [("model.config.image_size", 15)],
            "DCGAN refuses model.config: image_size=15 cannot be reached",
        ),
        (
            [
                (
                    "model",
                    {**VAE_MODEL, "config": {**VAE_MODEL["config"], "filters": ["x"]}},
                )
            ],
            "VAE refuses model.config:",
        ),
    ],
)
def test_load_turns_a_config_the_class_refuses_into_a_clear_error(
    tmp_path, changes, fragment
):
    folder = write_card(tmp_path / "p", changes)
    with pytest.raises(zoo.CardError) as error:
        zoo.load(folder, weights=False)
    message = str(error.value)
    assert message.startswith(f"{folder / zoo.CARD}: ") and fragment in message
    assert "\n" not in message


def test_load_turns_a_compile_config_keras_refuses_into_a_clear_error(tmp_path):
    folder = write_card(
        tmp_path / "p", [("training.compile", {"generator_optimizer": 5})]
    )
    with pytest.raises(zoo.CardError, match="DCGAN refuses training.compile"):
        zoo.load(folder, weights=False)


def test_record_metrics_refuses_a_bad_metric_and_leaves_the_card(tmp_path):
    folder = write_card(tmp_path / "p")
    before = (folder / zoo.CARD).read_bytes()
    with pytest.raises(zoo.CardError, match=r"metrics\[0\].value must be a number"):
        zoo.record_metrics(folder, [{"name": "fid", "value": None}], "keras-gen x")
    assert (folder / zoo.CARD).read_bytes() == before


def test_record_metrics_replaces_every_old_number_of_a_part_measured_again(tmp_path):
    old = [
        {"name": "FID (old name)", "value": 3.0, "command": "a", "part": "samples"},
        {"name": "test loss", "value": 2.0, "command": "a", "part": "test"},
        {"name": "export parity", "value": 1e-6, "command": "b"},  # no part
    ]
    folder = write_card(tmp_path / "p", [("metrics", old)])
    new = [{"name": "FID (x)", "value": 1.5, "part": "samples"}]
    zoo.record_metrics(folder, new, "keras-gen evaluate p --measure samples")
    found = {m["name"]: m for m in zoo.card(folder)["metrics"]}
    assert set(found) == {"test loss", "export parity", "FID (x)"}
    assert found["FID (x)"]["command"] == "keras-gen evaluate p --measure samples"
    with pytest.raises(zoo.CardError, match=r"metrics\[\d+\]\.part must be one of"):
        zoo.record_metrics(folder, [{"name": "x", "value": 1.0, "part": "s"}], "c")


# --- Files a card names: plain names of regular files in its folder ---------------

WEIGHTS_ENTRY = {zoo.WEIGHTS: {"sha256": SIXTY_FOUR_ZEROS, "url": None}}


@pytest.mark.parametrize(
    "name", ["../x.weights.h5", "/etc/passwd", "sub/x.h5", "..", ""]
)
def test_a_weights_file_name_cannot_be_a_path(tmp_path, name):
    entry = {name: {"sha256": SIXTY_FOUR_ZEROS, "url": None}}
    folder = write_card(tmp_path / "p", [("weights", entry)])
    with pytest.raises(zoo.CardError, match="not a plain file name"):
        zoo.card(folder)


def test_a_figure_file_name_cannot_be_a_path(tmp_path):
    figure = {"file": "../../etc/passwd", "caption": "c", "command": "c"}
    folder = write_card(tmp_path / "p", [("figures", [figure])])
    with pytest.raises(zoo.CardError, match=r"figures\[0\].file must be a file name"):
        zoo.card(folder)


def test_weights_linked_to_dev_zero_are_refused_unread(tmp_path, no_hang):
    folder = write_card(tmp_path / "p", [("weights", WEIGHTS_ENTRY)])
    os.symlink("/dev/zero", folder / zoo.WEIGHTS)
    with pytest.raises(
        zoo.WeightsError, match="it is a symlink \\(to /dev/zero\\)"
    ) as error:
        zoo.load(folder)
    assert str(folder / zoo.WEIGHTS) in str(error.value)


def test_weights_linked_inside_the_folder_are_refused_too(tiny_preset):
    """Links are refused, not resolved: a preset folder holds its own files."""
    folder, _ = tiny_preset
    (folder / zoo.WEIGHTS).rename(folder / "real.weights.h5")
    os.symlink("real.weights.h5", folder / zoo.WEIGHTS)
    with pytest.raises(zoo.WeightsError, match="symlink"):
        zoo.load(folder)


def test_weights_that_are_a_fifo_are_refused_unread(tmp_path, no_hang):
    folder = write_card(tmp_path / "p", [("weights", WEIGHTS_ENTRY)])
    os.mkfifo(folder / zoo.WEIGHTS)
    with pytest.raises(zoo.WeightsError, match="it is a FIFO, not a regular file"):
        zoo.load(folder)


def test_a_card_that_is_a_fifo_is_refused_unread(tmp_path, no_hang):
    folder = tmp_path / "p"
    folder.mkdir()
    os.mkfifo(folder / zoo.CARD)
    with pytest.raises(zoo.CardError, match="card.json: it is a FIFO"):
        zoo.card(folder)


# --- Names and paths: a bare name is a shipped preset, anything else a folder ------


def test_a_bare_name_is_the_shipped_preset_even_beside_a_folder_of_that_name(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_card(tmp_path / "vae_mnist", text="not json")
    assert zoo.path("vae_mnist") == zoo.root() / "vae_mnist"
    assert zoo.card("vae_mnist")["model"]["class"] == "VAE"
    assert zoo.path("./vae_mnist") == Path("vae_mnist")
    with pytest.raises(zoo.CardError, match="invalid JSON"):
        zoo.card("./vae_mnist")


def test_an_unknown_bare_name_that_is_a_folder_here_gets_a_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_card(tmp_path / "mine")
    with pytest.raises(
        ValueError, match="unknown preset 'mine'. .*did you mean ./mine"
    ):
        zoo.load("mine")
    assert zoo.path("./mine") == Path("mine")


@pytest.mark.parametrize("spelling", ["./p", "runs/p", "~/runs/p", "absolute", "Path"])
def test_anything_but_a_bare_name_is_a_folder(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = "runs/p" if spelling in ("runs/p", "~/runs/p") else "p"
    write_card(tmp_path / folder)
    given = {"absolute": str(tmp_path / "p"), "Path": Path("p")}.get(spelling, spelling)
    assert zoo.path(given).resolve() == (tmp_path / folder).resolve()
    assert zoo.card(given)["name"] == "tiny"


def test_a_missing_folder_or_a_file_is_not_a_preset(tmp_path):
    with pytest.raises(ValueError, match="no preset folder at .*: it does not exist"):
        zoo.path(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="pass its bare name 'vae_mnist'"):
        zoo.path(tmp_path / "vae_mnist")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a preset folder: it is not a folder"):
        zoo.path(tmp_path / "notes.txt")
