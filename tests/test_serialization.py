import keras
import numpy as np
import pytest
import tiny

from keras_gen.models import DCGAN


def tiny_dcgan():
    model = tiny.dcgan(seed=7)
    model.compile(
        generator_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
        discriminator_optimizer=keras.optimizers.SGD(1e-2),
    )
    return model


def tiny_vae():
    model = tiny.vae(beta=2.0, seed=7)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def data_for(model):
    shape = tiny.images_for(model, 32)
    return (np.random.default_rng(0).random(shape) < 0.5).astype("float32")


def optimizers(model):
    if isinstance(model, DCGAN):
        return [model.generator_optimizer, model.discriminator_optimizer]
    return [model.optimizer]


@pytest.mark.parametrize("make", [tiny_dcgan, tiny_vae])
def test_config_round_trips_exactly(make):
    model = make()
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config


@pytest.mark.parametrize("make", [tiny_dcgan, tiny_vae])
def test_keras_file_reloads_compiled_and_fit_continues(make, tmp_path):
    model = make()
    data = data_for(model)
    model.fit(data, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    reloaded = keras.models.load_model(path)  # safe_mode is on by default
    assert type(reloaded) is type(model)
    assert reloaded.compiled
    np.testing.assert_array_equal(
        model.generate(4, seed=5), reloaded.generate(4, seed=5)
    )
    for original, restored in zip(optimizers(model), optimizers(reloaded)):
        assert type(restored) is type(original)
        assert int(restored.iterations) == int(original.iterations) == 2
        for a, b in zip(original.variables, restored.variables):
            np.testing.assert_array_equal(a, b)

    # Resumed training takes the very step the original would have taken next.
    model.fit(data, batch_size=16, epochs=1, verbose=0, shuffle=False)
    reloaded.fit(data, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert all(int(o.iterations) == 4 for o in optimizers(reloaded))
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
