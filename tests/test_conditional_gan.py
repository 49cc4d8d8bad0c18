import json
import shlex

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import cli, evaluation, export, zoo
from keras_gen import images as image_grids
from keras_gen.models import DCGAN, ConditionalGAN, base, conditioning, noise


def images(count=8, seed=0):
    return np.random.default_rng(seed).random((count, 16, 16, 1)).astype("float32")


def labels(count=8, seed=0):
    return np.random.default_rng(seed).integers(0, 3, (count, 1)).astype("int32")


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def test_projection_discriminator_is_psi_of_phi_plus_embedding_dot_phi():
    model = tiny.conditional_gan()
    discriminator = model.discriminator
    # A class embedding far from zero, so the projection term shows.
    embedding = discriminator.get_layer("class_embedding")
    shape = embedding.embeddings.shape
    embedding.set_weights([np.random.default_rng(1).normal(size=shape)])
    x, y = tf.constant(images() * 2 - 1), labels()
    phi = keras.Model(
        discriminator.inputs[0], discriminator.get_layer("features").output
    )
    features = phi(x).numpy().astype("float64")
    kernel, bias = discriminator.get_layer("psi").get_weights()
    table = embedding.get_weights()[0]
    expected = (
        features @ kernel + bias + np.sum(table[y[:, 0]] * features, axis=1)[:, None]
    )
    np.testing.assert_allclose(
        discriminator([x, tf.constant(y)]), expected, rtol=1e-5, atol=1e-5
    )
    # The label matters: the same images scored as another class score otherwise.
    assert not np.allclose(discriminator([x, tf.constant((y + 1) % 3)]), expected)


def copy(network):
    clone = keras.models.clone_model(network)
    clone.set_weights(network.get_weights())
    return clone


def test_train_step_reports_the_losses_of_the_weights_it_started_from():
    model = tiny.conditional_gan()
    model.compile()
    x, y = tf.constant(images()), tf.constant(labels())
    latents = noise.replica_normal(len(x), [4], noise.step_seed(model.seed, 0, 0))
    generator, discriminator = copy(model.generator), copy(model.discriminator)
    # The generated images are of the batch's own classes.
    codes = tf.one_hot(y[:, 0], 3)
    fake = generator(tf.concat([latents, codes], -1), training=True)
    real_logits = discriminator([x * 2 - 1, y], training=True).numpy()
    fake_logits = discriminator([fake, y], training=True).numpy()
    expected = np.mean(-log_sigmoid(real_logits) - log_sigmoid(-fake_logits))
    logs = model.train_step((x, y))
    assert float(logs["discriminator_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(logs["d_fake"]) == pytest.approx(
        np.mean(1 / (1 + np.exp(-fake_logits))), rel=1e-5
    )


def test_a_batch_without_labels_is_refused():
    model = tiny.conditional_gan()
    model.compile()
    with pytest.raises(ValueError, match="no labels"):
        model.fit(images(16), batch_size=8, epochs=1, verbose=0)


def test_evaluate_reads_labelled_batches():
    model = tiny.conditional_gan()
    model.compile()
    results = model.evaluate(images(16), labels(16), return_dict=True, verbose=0)
    assert set(results) == {"generator_loss", "discriminator_loss", "d_real", "d_fake"}


def test_generate_by_name_equals_by_index_and_is_reproducible():
    model = tiny.conditional_gan()
    by_name = model.generate(4, seed=3, digit="two")
    assert by_name.shape == (4, 16, 16, 1) and by_name.dtype == tf.float32
    assert float(tf.reduce_min(by_name)) >= 0 and float(tf.reduce_max(by_name)) <= 1
    np.testing.assert_array_equal(by_name, model.generate(4, seed=3, digit=2))
    np.testing.assert_array_equal(
        model.generate(4, seed=3, digit=["one", "two", "zero", "one"]),
        model.generate(4, seed=3, digit=[1, 2, 0, 1]),
    )
    assert not np.array_equal(by_name, model.generate(4, seed=4, digit=2))


def test_each_sample_gets_its_own_label():
    model = tiny.conditional_gan()
    latents = noise.standard_normal(6, 4, seed=3)
    requested = [2, 0, 1, 1, 0, 2]
    np.testing.assert_allclose(
        model.generate(6, seed=3, digit=requested),
        model.decode(latents, digit=requested),
        atol=1e-6,
    )
    # No labels: the classes in turn.
    np.testing.assert_allclose(
        model.generate(6, seed=3),
        model.decode(latents, digit=[0, 1, 2, 0, 1, 2]),
        atol=1e-6,
    )
    # Same latents, other classes: other images.
    one = model.decode(latents, digit=0).numpy()
    other = model.decode(latents, digit=1).numpy()
    assert np.abs(one - other).max() > 1e-4


def test_bad_labels_are_refused_with_the_choices():
    model = tiny.conditional_gan()
    with pytest.raises(ValueError, match="Did you mean 'two'.*zero, one, two"):
        model.generate(2, digit="twoo")
    with pytest.raises(ValueError, match="index 3 is out of range; there are 3"):
        model.decode(np.zeros((2, 4), "float32"), digit=[0, 3])
    with pytest.raises(ValueError, match="got 1 values for 2 samples"):
        model.decode(np.zeros((2, 4), "float32"), digit=[0])
    with pytest.raises(ValueError, match=r"missing condition \['digit'\]"):
        model.decode(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="one value, or one per sample"):
        model.generate(3, digit=[0, 1])
    with pytest.raises(ValueError, match="must be a list of distinct class names"):
        tiny.conditional_gan(conditions={"digit": ["a", "a"]})
    with pytest.raises(ValueError, match="ConditionalGAN takes one head"):
        tiny.conditional_gan(conditions={"digit": ["a", "b"], "size": ["s", "l"]})


def test_conditions_and_config():
    model = tiny.conditional_gan()
    assert model.conditions == {"digit": ("zero", "one", "two")}
    config = model.get_config()
    assert config["conditions"] == {"digit": ["zero", "one", "two"]}
    assert ConditionalGAN.from_config(config).get_config() == config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tiny.conditional_gan()
    directory = export.saved_model(model, tmp_path_factory.mktemp("export") / "cgan")
    return model, tf.saved_model.load(str(directory)).signatures


def test_exported_signatures_match_keras(exported):
    model, signatures = exported
    assert sorted(signatures) == ["generate", "sample", "serving_default"]
    latents = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    requested = np.array([[0], [2], [1], [1], [0]], "int32")
    expected = model.decode(latents, digit=requested[:, 0])
    for name in ("generate", "serving_default"):
        got = signatures[name](latents=latents, labels=requested)["images"]
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    got = signatures["sample"](num_samples=np.int32(4), seed=np.int64(9), labels=[2])
    np.testing.assert_allclose(
        got["images"], model.generate(4, seed=9, digit=2), atol=1e-5, rtol=0
    )


def test_exported_signatures_refuse_labels_out_of_range(exported):
    _, signatures = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels out of range"):
        signatures["sample"](num_samples=np.int32(2), seed=np.int64(0), labels=[3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels out of range"):
        signatures["generate"](
            latents=tf.zeros([2, 4]), labels=tf.constant([[0], [-1]])
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row of labels"):
        signatures["generate"](latents=tf.zeros([2, 4]), labels=tf.constant([[0]]))


def tiny_cgan_preset(folder):
    """A tiny conditional GAN (digits zero, one, two) written as a preset folder."""
    model = tiny.conditional_gan(seed=0)
    card = {
        "description": "tiny conditional GAN",
        "model": {
            "class": "ConditionalGAN",
            "config": {
                k: v
                for k, v in model.get_config().items()
                if k not in ("name", "trainable", "dtype")
            },
        },
        "data": {
            "dataset": "mnist",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    return model, zoo.write(
        folder / "tiny_cgan", model, card, model.generate(3, seed=0)
    )


def test_sample_command_draws_the_class_a_prompt_names(tmp_path, capsys):
    model, folder = tiny_cgan_preset(tmp_path)
    out = tmp_path / "two.png"
    argv = [
        "sample",
        str(folder),
        "-n",
        "4",
        "--seed",
        "1",
        "--prompt",
        "Two",
        "-o",
        str(out),
    ]
    assert cli.main(argv) == 0
    expected = model.generate(4, seed=1, digit="two")
    written = tf.io.decode_png(out.read_bytes()).numpy()
    np.testing.assert_array_equal(written, image_grids.grid(np.asarray(expected)))
    assert cli.main(["sample", str(folder), "--prompt", "three", "-o", str(out)]) == 2
    assert "zero, one, two" in capsys.readouterr().err


def test_sample_and_evaluate_commands_take_a_truncation(tmp_path, measured_models):
    model, folder = tiny_cgan_preset(tmp_path)
    out = tmp_path / "truncated.png"
    argv = ["sample", str(folder), "-n", "4", "--seed", "1", "--truncation", "0.5"]
    assert cli.main([*argv, "-o", str(out)]) == 0
    expected = model.generate(4, seed=1, truncation=0.5)
    written = tf.io.decode_png(out.read_bytes()).numpy()
    np.testing.assert_array_equal(written, image_grids.grid(np.asarray(expected)))
    report = tmp_path / "report.json"
    argv = ["evaluate", str(folder), "--truncation", "0.5"]
    assert cli.main([*argv, "--json", str(report)]) == 0
    assert [m.truncation for m in measured_models] == [0.5]
    assert json.loads(report.read_text())["truncation"] == 0.5
    # The card holds the numbers of the preset's own truncation (None here) only.
    assert cli.main([*argv, "--update-card"]) == 2
    assert cli.main(["evaluate", "vae_mnist", "--truncation", "0.5"]) == 2
    assert len(measured_models) == 1  # neither refused command reached it


def test_per_class_rows_and_the_card_figure_their_command_redraws(tmp_path, capsys):
    model, folder = tiny_cgan_preset(tmp_path)
    (entry,), figures = evaluation.per_class_figures(model, str(folder))
    assert (
        entry["file"] == "per_class_digit.png" and "zero, one, two" in entry["caption"]
    )
    shown, columns = figures[entry["file"]]
    assert shown.shape[0] == 3 * columns
    # Row r is class r: those samples are the ones asked for class r.
    conditions, count = conditioning.per_class(model.conditions, None, columns, {})
    assert count == 3 * columns
    np.testing.assert_array_equal(conditions["digit"], np.repeat([0, 1, 2], columns))
    # The card's command, run as written, draws exactly the figure.
    command = shlex.split(entry["command"])
    assert command[:2] == ["keras-gen", "sample"] and command[-2:] == [
        "-o",
        entry["file"],
    ]
    out = tmp_path / entry["file"]
    assert cli.main([*command[1:-2], "-o", str(out)]) == 0
    written = tf.io.decode_png(out.read_bytes()).numpy()
    np.testing.assert_array_equal(written, image_grids.grid(np.asarray(shown), columns))
    capsys.readouterr()
    # A prompt and --per-class may not both fix the head; -n is per class.
    argv = ["sample", str(folder), "--per-class", "-o", str(out), "--overwrite"]
    assert cli.main([*argv, "--prompt", "two"]) == 2
    assert "fix it in one place" in capsys.readouterr().err
    assert cli.main([*argv[:3], "colour", *argv[3:]]) == 2
    assert "unknown condition ['colour']" in capsys.readouterr().err
    assert cli.main([*argv, "-n", "400"]) == 2
    assert "1200 samples (400 per class); at most 1024" in capsys.readouterr().err


def test_per_class_names_the_head_when_there_are_several():
    heads = {"age": ("young", "old"), "gender": ("female", "male")}
    with pytest.raises(ValueError, match=r"the heads \['age', 'gender'\]: name"):
        conditioning.per_class(heads, None, 2, {})
    conditions, count = conditioning.per_class(heads, "gender", 2, {"age": "old"})
    assert count == 4 and conditions["age"] == "old"
    np.testing.assert_array_equal(conditions["gender"], [0, 0, 1, 1])


def test_dcgan_plus_conditions():
    model = tiny.conditional_gan()
    assert isinstance(model, DCGAN) and model.can(base.CONDITIONS)
    assert ConditionalGAN.arguments() == ["conditions", *DCGAN.arguments()]
    assert (
        keras.saving.get_registered_name(ConditionalGAN) == "keras_gen>ConditionalGAN"
    )
