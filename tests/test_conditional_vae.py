import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tiny
from test_vae import numpy_negative_elbo

from keras_gen import export
from keras_gen.models import VAE, ConditionalVAE, base, noise

tfd = tfp.distributions
HEADS = {"age": ["young", "old"], "gender": ["female", "male", "other"]}


def binary_images(count=6, seed=0):
    return (np.random.default_rng(seed).random((count, 8, 8, 1)) < 0.4).astype(
        "float32"
    )


def labels(count=6, seed=0):
    return tiny.labels_for(HEADS, count, seed)


def named(labels):
    """The conditions of labels (batch, heads): each head's column of indices."""
    return {head: labels[:, i] for i, head in enumerate(HEADS)}


def codes(labels):
    """One-hot per head, concatenated: age (2) then gender (3)."""
    return np.concatenate([np.eye(2)[labels[:, 0]], np.eye(3)[labels[:, 1]]], axis=1)


def test_kl_is_tfd_kl_divergence_and_the_elbo_matches_numpy():
    model = tiny.conditional_vae(beta=1.5)
    images, y = binary_images(), labels()
    seed = model._evaluation_seed()
    reconstruction, kl = model._negative_elbo_terms(
        images, seed, training=False, labels=y
    )
    np.testing.assert_allclose(
        kl, tfd.kl_divergence(model.encode(images, **named(y)), model.prior), rtol=1e-6
    )
    expected_reconstruction, expected_kl = numpy_negative_elbo(
        model, images, seed, codes(y)
    )
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        reconstruction, expected_reconstruction, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        model.score(images, **named(y)),
        expected_reconstruction + expected_kl,  # the negative ELBO, free of beta
        rtol=1e-5,
        atol=1e-4,
    )


def test_score_is_the_negative_elbo_that_evaluate_reports_on_labelled_batches():
    model = tiny.conditional_vae(beta=4.0)
    model.compile(optimizer="adam")
    images, y = binary_images(8), labels(8)
    results = model.evaluate(images, y, batch_size=8, return_dict=True, verbose=0)
    assert results["reconstruction_loss"] + results["kl_loss"] == pytest.approx(
        float(tf.reduce_mean(model.score(images, **named(y)))), rel=1e-6
    )


def test_both_networks_read_the_labels():
    model = tiny.conditional_vae()
    images, y = binary_images(), labels()
    other = (y + 1) % np.array([2, 3])
    assert not np.allclose(
        model.encode(images, **named(y)).mean(),
        model.encode(images, **named(other)).mean(),
    )
    latents = noise.standard_normal(6, 3, seed=0)
    one = model.decode(latents, **named(y)).numpy()
    assert np.abs(one - model.decode(latents, **named(other)).numpy()).max() > 1e-4


def test_importance_weighted_bound_takes_the_labels_and_tightens():
    model = tiny.conditional_vae()
    images, y = binary_images(4), labels(4)
    one = model.negative_log_likelihood(images, num_samples=1, **named(y))
    many = model.negative_log_likelihood(images, num_samples=300, **named(y))
    assert one.shape == (4,) and np.all(np.isfinite(many))
    assert float(tf.reduce_mean(many)) < float(tf.reduce_mean(one))
    other = (y + 1) % np.array([2, 3])
    assert not np.allclose(
        many, model.negative_log_likelihood(images, num_samples=300, **named(other))
    )


def test_one_fit_step_moves_every_weight():
    model = tiny.conditional_vae()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(binary_images(16), labels(16), batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 1
    for old, weight in zip(before, model.trainable_weights):
        assert not np.array_equal(old, weight.numpy()), weight.path


def test_a_batch_without_labels_is_refused():
    model = tiny.conditional_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="no labels"):
        model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"missing condition \['age', 'gender'\]"):
        model.score(binary_images())
    with pytest.raises(ValueError, match=r"missing condition \['gender'\]"):
        model.negative_log_likelihood(binary_images(), age="old")


def test_generate_by_name_equals_by_index_and_unnamed_heads_cycle():
    model = tiny.conditional_vae()
    by_name = model.generate(4, seed=3, age="old", gender="other")
    assert by_name.shape == (4, 8, 8, 1) and by_name.dtype == tf.float32
    np.testing.assert_array_equal(by_name, model.generate(4, seed=3, age=1, gender=2))
    latents = noise.standard_normal(6, 3, seed=3)
    genders = ["male", "female", "other", "male", "male", "female"]
    np.testing.assert_allclose(
        model.generate(6, seed=3, age="old", gender=genders),
        model.decode(latents, age=1, gender=[1, 0, 2, 1, 1, 0]),
        atol=1e-6,
    )
    # Heads not given cycle in mixed radix: age fastest, then gender.
    cycled = [[0, 0], [1, 0], [0, 1], [1, 1], [0, 2], [1, 2]]
    np.testing.assert_allclose(
        model.generate(6, seed=3),
        model.decode(latents, **named(np.array(cycled))),
        atol=1e-6,
    )


def test_bad_conditions_are_refused_with_the_choices():
    model = tiny.conditional_vae()
    with pytest.raises(ValueError, match="unknown gender 'mal'.*female, male, other"):
        model.generate(2, gender="mal")
    with pytest.raises(ValueError, match=r"unknown condition \['colour'\]"):
        model.generate(2, colour="red")
    with pytest.raises(ValueError, match="age index 2 is out of range"):
        model.decode(np.zeros((1, 3), "float32"), age=2, gender=0)
    with pytest.raises(ValueError, match="got 2 values for 1 samples"):
        model.decode(np.zeros((1, 3), "float32"), age=[0, 1], gender=0)
    with pytest.raises(ValueError, match="cannot be named 'seed'"):
        tiny.conditional_vae(conditions={"seed": ["a", "b"]})


def test_the_unconditional_vae_refuses_conditions():
    with pytest.raises(base.CapabilityError, match="VAE cannot take conditions"):
        tiny.vae().decode(np.zeros((1, 3), "float32"), age=0)


def test_config_keeps_the_heads_in_label_order():
    model = tiny.conditional_vae()
    config = model.get_config()
    assert config["conditions"] == HEADS
    assert list(ConditionalVAE.from_config(config).conditions) == ["age", "gender"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tiny.conditional_vae(likelihood="discretized_gaussian")
    directory = export.saved_model(model, tmp_path_factory.mktemp("export") / "cvae")
    return model, tf.saved_model.load(str(directory)).signatures


def test_exported_signatures_match_keras(exported):
    model, signatures = exported
    assert sorted(signatures) == sorted(
        ["decode", "encode", "reconstruct", "score", "sample", "serving_default"]
    )
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((5, 3)).astype("float32")
    images = rng.random((5, 8, 8, 1)).astype("float32")
    y = labels(5, seed=1)
    posterior = model.encode(images, **named(y))
    expected = {
        "decode": {"images": model.decode(latents, **named(y))},
        "encode": {"mean": posterior.mean(), "stddev": posterior.stddev()},
        "reconstruct": {"images": model.reconstruct(images, **named(y))},
        "score": {"negative_elbo": model.score(images, **named(y))},
        "sample": {"images": model.generate(4, seed=9, age="old", gender="female")},
    }
    requests = {
        "decode": {"latents": latents, "labels": y},
        "encode": {"images": images, "labels": y},
        "reconstruct": {"images": images, "labels": y},
        "score": {"images": images, "labels": y},
        "sample": {
            "num_samples": np.int32(4),
            "seed": np.int64(9),
            "labels": np.array([1, 0], "int32"),
        },
    }
    for name, outputs in expected.items():
        got = signatures[name](**requests[name])
        for output, value in outputs.items():
            np.testing.assert_allclose(got[output], value, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(
        signatures["serving_default"](latents=latents, labels=y)["images"],
        signatures["decode"](latents=latents, labels=y)["images"],
    )


def test_exported_signatures_refuse_labels_out_of_range(exported):
    _, signatures = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels out of range"):
        signatures["sample"](
            num_samples=np.int32(2), seed=np.int64(0), labels=np.int32([0, 3])
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels out of range"):
        signatures["decode"](latents=tf.zeros([1, 3]), labels=tf.constant([[2, 0]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected shape"):
        signatures["decode"](latents=tf.zeros([1, 3]), labels=tf.constant([[0]]))


def test_conditions_given_as_a_batch_of_labels_equal_the_labels():
    """What evaluate does: each head's column of a labelled batch, as a tensor."""
    model = tiny.conditional_vae()
    images, y = binary_images(4), labels(4)
    by_column = model.negative_log_likelihood(
        images, num_samples=20, **named(tf.constant(y))
    )
    by_name = model.negative_log_likelihood(
        images,
        num_samples=20,
        age=[HEADS["age"][i] for i in y[:, 0]],
        gender=[HEADS["gender"][i] for i in y[:, 1]],
    )
    np.testing.assert_array_equal(by_column, by_name)


def test_preview_reconstructs_the_batch_with_its_labels():
    model = tiny.conditional_vae()
    images, y = binary_images(2), labels(2)
    pairs, columns = model.preview(images, y)["reconstructions"]
    assert columns == 2
    np.testing.assert_allclose(
        pairs[2:], model.reconstruct(images, **named(y)), atol=1e-6
    )
    with pytest.raises(ValueError, match=r"needs labels, int32 \(batch, 2\)"):
        model.preview(images)


def test_the_constructor_takes_the_vaes_arguments_by_keyword():
    assert ConditionalVAE.arguments() == ["conditions", *VAE.arguments()]
    model = tiny.conditional_vae(beta=2.5)
    assert model.beta == 2.5 and model.can(base.CONDITIONS)
