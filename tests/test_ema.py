"""The weights' moving average (models/ema.py) as Diffusion and the GANs keep it.

The shared checks (config, .keras reload, replicas, export) run on "DCGAN (EMA)"
through tiny.FAMILIES.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import export
from keras_gen.models import noise


def averaged(make, **overrides):
    """(model, its trained network, its average) of a family keeping an average."""
    model = make(**overrides)
    if hasattr(model, "ema_denoiser"):
        return model, model.denoiser, model.ema_denoiser
    return model, model.generator, model.ema_generator


def closed_form_average(trajectory, decay):
    """The average after len(trajectory) - 1 steps, written out as a weighted sum.

    trajectory[k] are the weights after step k (0: the initial ones), step k
    decays by d_k = min(decay, (1 + k) / (10 + k)), so weight k counts
    (1 - d_k) d_{k+1} ... d_n, and the initial weights d_1 ... d_n.
    """
    steps = len(trajectory) - 1
    decays = [min(decay, (1 + k) / (10 + k)) for k in range(1, steps + 1)]
    coefficients = [np.prod(decays)]
    for k in range(1, steps + 1):
        coefficients.append((1 - decays[k - 1]) * np.prod(decays[k:]))
    assert np.isclose(sum(coefficients), 1.0)
    return [
        sum(c * np.asarray(w[i], np.float64) for c, w in zip(coefficients, trajectory))
        for i in range(len(trajectory[0]))
    ]


FAMILIES_WITH_AVERAGE = {
    "DCGAN": (tiny.dcgan, "generator_ema_decay"),
    "WGANGP": (tiny.wgan_gp, "generator_ema_decay"),
    "Diffusion": (tiny.diffusion, "ema_decay"),
}


def _compile(model, learning_rate):
    owners = getattr(model, "network_optimizers", {})
    if owners:
        model.compile(**{name: keras.optimizers.Adam(learning_rate) for name in owners})
    else:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))


def _fit(model, steps, callbacks=()):
    """`steps` fit steps of 4 examples (a WGAN-GP's critic takes 2 shares of 2)."""
    data = tiny.FAMILIES[type(model).__name__].batch(model, 4 * steps)
    images, labels = data if isinstance(data, tuple) else (data, None)
    model.fit(
        images,
        labels,
        batch_size=4,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=list(callbacks),
    )


@pytest.mark.parametrize("name", FAMILIES_WITH_AVERAGE)
def test_the_average_after_n_steps_is_the_closed_form_of_the_trajectory(name):
    make, argument = FAMILIES_WITH_AVERAGE[name]
    # 0.2 lies between the warm-up's first decays (2/11) and its later ones (3/12,
    # ...): both branches of min(decay, warm-up) are taken.
    decay = 0.2
    model, network, average = averaged(make, **{argument: decay})
    _compile(model, 1e-2)
    trajectory = [network.get_weights()]
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: trajectory.append(network.get_weights())
    )
    _fit(model, 4, [record])

    assert len(trajectory) == 5
    assert not np.allclose(trajectory[-1][0], trajectory[0][0])  # weights moved
    expected = closed_form_average(trajectory, decay)
    for found, wanted in zip(average.get_weights(), expected):
        np.testing.assert_allclose(found, wanted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [tiny.dcgan, tiny.wgan_gp])
def test_generate_decode_and_the_signatures_use_the_average(make):
    model, generator, average = averaged(make, generator_ema_decay=0.5)
    _compile(model, 1e-2)
    _fit(model, 3)
    latents = noise.standard_normal(4, model.latent_dim, 3)
    from_average = np.clip((average(latents, training=False) + 1) / 2, 0, 1)
    from_generator = np.clip((generator(latents, training=False) + 1) / 2, 0, 1)
    assert np.abs(from_average - from_generator).max() > 1e-3

    np.testing.assert_allclose(model.generate(4, seed=3), from_average, atol=1e-6)
    np.testing.assert_allclose(model.decode(latents), from_average, atol=1e-6)
    endpoints = model.serving_endpoints()
    exported = endpoints["generate"][0](latents)["images"]
    np.testing.assert_allclose(exported, from_average, atol=1e-6)
    sampled = endpoints["sample"][0](np.int32(4), np.int64(3))["images"]
    np.testing.assert_allclose(sampled, from_average, atol=1e-6)


def test_a_saved_model_holds_the_average(tmp_path):
    model, _, average = averaged(tiny.dcgan, generator_ema_decay=0.5)
    _compile(model, 1e-2)
    _fit(model, 3)
    loaded = tf.saved_model.load(str(export.saved_model(model, tmp_path / "model")))
    latents = noise.standard_normal(4, model.latent_dim, 3)
    found = loaded.signatures["generate"](latents=latents)["images"]
    from_average = np.clip((average(latents, training=False) + 1) / 2, 0, 1)
    np.testing.assert_allclose(found, from_average, atol=1e-5)


def test_both_networks_are_saved_and_fine_tuning_resumes_the_trained_one(tmp_path):
    model, generator, average = averaged(tiny.dcgan, generator_ema_decay=0.5)
    _compile(model, 1e-2)
    _fit(model, 2)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    reloaded = tiny.dcgan(generator_ema_decay=0.5)
    reloaded.load_weights(path)
    for mine, theirs in [
        (generator, reloaded.generator),
        (average, reloaded.ema_generator),
    ]:
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(generator.get_weights()[0], average.get_weights()[0])
    assert reloaded.generator.trainable and not reloaded.ema_generator.trainable


@pytest.mark.parametrize(
    "make", [tiny.dcgan, tiny.wgan_gp, tiny.mlp_gan, tiny.conditional_gan]
)
def test_off_by_default_the_weights_are_the_networks_alone(make):
    """So the weights files of presets saved before the average existed load."""
    model = make()
    assert model.generator_ema_decay is None and model.ema_generator is None
    assert model.get_config()["generator_ema_decay"] is None
    networks = [model.generator] + [
        getattr(model, name)
        for name in ("discriminator", "critic")
        if hasattr(model, name)
    ]
    expected = [w.path for network in networks for w in network.weights]
    assert [w.path for w in model.weights] == expected
    assert model.sampling_generator is model.generator


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, "0.99", True])
def test_decays_outside_zero_to_one_are_refused(decay):
    with pytest.raises(ValueError, match="generator_ema_decay must be"):
        tiny.dcgan(generator_ema_decay=decay)
    with pytest.raises(ValueError, match="ema_decay must be"):
        tiny.diffusion(ema_decay=decay)


def test_diffusion_needs_a_decay():
    with pytest.raises(ValueError, match="ema_decay must be a number in"):
        tiny.diffusion(ema_decay=None)
