"""Every family in tiny.FAMILIES: exact config round trip, .keras reload that trains on."""

import keras
import numpy as np
import pytest
import tiny

from keras_gen import export, training


def compiled(name):
    family = tiny.FAMILIES[name]
    model = family.make(seed=7)
    family.compile(model, lambda: keras.optimizers.Adam(1e-3, beta_1=0.5))
    return model, family.batch(model, 32)


def _fit(model, data):
    images, labels = data if isinstance(data, tuple) else (data, None)
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("name", tiny.FAMILIES)
def test_config_round_trips_exactly(name):
    model, _ = compiled(name)
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config


@pytest.mark.parametrize("name", tiny.FAMILIES)
def test_keras_file_reloads_compiled_and_fit_continues(name, tmp_path):
    model, data = compiled(name)
    _fit(model, data)
    path = tmp_path / "model.keras"
    model.save(path)

    reloaded = keras.models.load_model(path)  # safe_mode is on by default
    assert type(reloaded) is type(model)
    assert reloaded.compiled
    for endpoint, (function, signature) in model.serving_endpoints().items():
        inputs = [export._example_input(spec, 4) for spec in signature]
        original_outputs = function(*inputs)
        reloaded_outputs = reloaded.serving_endpoints()[endpoint][0](*inputs)
        for key, value in original_outputs.items():
            np.testing.assert_array_equal(
                value, reloaded_outputs[key], err_msg=endpoint
            )
    assert training.step(reloaded) == training.step(model) == 2
    originals = training.optimizers(model)
    restored_optimizers = training.optimizers(reloaded)
    assert originals.keys() == restored_optimizers.keys()
    for key, original in originals.items():
        restored = restored_optimizers[key]
        assert type(restored) is type(original)
        assert int(restored.iterations) == int(original.iterations) > 0
        for a, b in zip(original.variables, restored.variables):
            np.testing.assert_array_equal(a, b)

    # Resumed training takes the very step the original would have taken next.
    _fit(model, data)
    _fit(reloaded, data)
    assert training.step(reloaded) == training.step(model) == 4
    for key, original in originals.items():
        assert int(restored_optimizers[key].iterations) == int(original.iterations)
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
