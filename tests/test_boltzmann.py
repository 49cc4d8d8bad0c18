"""RBM and DBN: free energy, AIS against the exact partition function of a tiny RBM,
PCD raising the exact likelihood, the DBN's greedy schedule.

Shared checks (config, .keras reload, replicas, export) run over tiny.FAMILIES.
"""

import itertools

import keras
import numpy as np
import pytest
import tiny

from keras_gen.models import DBN, RBM, boltzmann

# 12 visible units: 4096 visible states, few enough to sum exactly.
SHAPE = (3, 4, 1)
VISIBLE = 12
HIDDEN = 8


def _rbm(**overrides) -> RBM:
    config = {
        "image_shape": SHAPE,
        "hidden_units": HIDDEN,
        "persistent_chains": 16,
        "sampling_steps": 10,
    }
    return RBM(**{**config, **overrides})


def _with_random_parameters(model: RBM, seed=0, scale=1.0) -> RBM:
    """Weights large enough for a multimodal, far-from-uniform distribution."""
    rng = np.random.default_rng(seed)
    model.rbm.kernel.assign(rng.normal(0.0, scale, (VISIBLE, HIDDEN)))
    model.rbm.visible_bias.assign(rng.normal(0.0, scale, VISIBLE))
    model.rbm.hidden_bias.assign(rng.normal(0.0, scale, HIDDEN))
    return model


def _parameters(model: RBM):
    rbm = model.rbm
    return (
        np.asarray(rbm.kernel, np.float64),
        np.asarray(rbm.visible_bias, np.float64),
        np.asarray(rbm.hidden_bias, np.float64),
    )


def _exact_free_energy(model: RBM, visible) -> np.ndarray:
    """F(v) = -v.b - sum_j log(1 + exp(v W_j + c_j)), in float64."""
    kernel, visible_bias, hidden_bias = _parameters(model)
    visible = np.asarray(visible, np.float64).reshape(len(visible), -1)
    return -visible @ visible_bias - np.logaddexp(
        0.0, visible @ kernel + hidden_bias
    ).sum(axis=1)


def _exact_log_partition(model: RBM) -> float:
    """log Z = log sum_v exp(-F(v)) over all 2^12 visible states."""
    states = np.array(list(itertools.product([0.0, 1.0], repeat=VISIBLE)))
    return float(np.logaddexp.reduce(-_exact_free_energy(model, states)))


def _exact_log_likelihood(model: RBM, images) -> float:
    """Mean log p(x) over `images`, exactly."""
    return float(
        np.mean(-_exact_free_energy(model, images) - _exact_log_partition(model))
    )


def _prototype_images(count=64, seed=0) -> np.ndarray:
    """Two binary patterns, each pixel flipped with probability 0.05."""
    rng = np.random.default_rng(seed)
    patterns = np.array([[1.0] * 6 + [0.0] * 6, [0.0, 1.0] * 6])
    images = patterns[rng.integers(0, 2, count)]
    flips = rng.random(images.shape) < 0.05
    return np.abs(images - flips).reshape(count, *SHAPE).astype("float32")


def test_free_energy_is_the_hand_computed_one():
    model = _with_random_parameters(_rbm(), seed=1)
    images = tiny.binary_images(model, 5)
    kernel, visible_bias, hidden_bias = _parameters(model)
    for image, found in zip(images, model.free_energy(images).numpy()):
        v = image.ravel().astype(np.float64)
        by_hand = -sum(v[i] * visible_bias[i] for i in range(VISIBLE))
        for j in range(HIDDEN):
            x = hidden_bias[j] + sum(v[i] * kernel[i, j] for i in range(VISIBLE))
            by_hand -= np.log1p(np.exp(x))
        assert found == pytest.approx(by_hand, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_ais_log_partition_is_within_five_hundredths_of_a_nat_of_the_exact_one(seed):
    model = _with_random_parameters(_rbm(), seed=seed)
    estimate = model.log_partition(num_runs=200, num_temperatures=3000)
    assert estimate == pytest.approx(_exact_log_partition(model), abs=0.05)


def test_negative_log_likelihood_is_the_exact_one():
    model = _with_random_parameters(_rbm(ais_runs=200, ais_temperatures=3000), seed=2)
    images = tiny.binary_images(model, 6)
    exact = _exact_free_energy(model, images) + _exact_log_partition(model)
    found = model.negative_log_likelihood(images).numpy()
    np.testing.assert_allclose(found, exact, atol=0.05)
    assert model.likelihood_bound == "AIS, 200 runs x 3000 temperatures"


def test_log_partition_is_kept_until_the_weights_change(monkeypatch):
    model = _with_random_parameters(_rbm(ais_runs=20, ais_temperatures=100))
    runs = []
    compute = model._annealed_log_partition
    monkeypatch.setattr(
        model, "_annealed_log_partition", lambda *a: runs.append(a) or compute(*a)
    )
    first = model.log_partition()
    model.negative_log_likelihood(tiny.binary_images(model, 2))
    assert model.log_partition() == first and len(runs) == 1
    model.log_partition(seed=1)  # other settings: estimated afresh
    model.rbm.hidden_bias.assign(model.rbm.hidden_bias + 1.0)
    assert model.log_partition() != first and len(runs) == 3


@pytest.fixture(scope="module")
def trained():
    """A tiny RBM trained by PCD on two noisy patterns: (model, images, log p before, logs)."""
    keras.utils.set_random_seed(0)
    images = _prototype_images()
    model = _rbm(gibbs_steps=1, persistent_chains=16, sampling_steps=50)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    before = _exact_log_likelihood(model, images)
    history = model.fit(images, batch_size=16, epochs=25, verbose=0, shuffle=False)
    return model, images, before, history.history


def test_pcd_raises_the_exact_log_likelihood_of_its_data(trained):
    model, images, before, logs = trained
    after = _exact_log_likelihood(model, images)
    # Two patterns with 5% noise: about 3.1 nats of entropy, against 8.3 for uniform.
    assert before < -8.0 and after > before + 1.5
    assert set(logs) == {"free_energy_gap", "reconstruction_error"}
    assert logs["reconstruction_error"][-1] < logs["reconstruction_error"][0]


def test_generated_images_look_like_the_training_patterns(trained):
    model, images, _, _ = trained
    generated = model.generate(32, seed=0).numpy()
    assert generated.shape == (32, *SHAPE)
    differing = np.abs(
        np.round(generated).reshape(32, 1, -1) - images.reshape(1, 64, -1)
    ).sum(-1)
    # Most samples are some training image, up to a pixel or two of its noise.
    assert np.median(differing.min(axis=1)) <= 1


def test_dbn_trains_its_layers_in_turn_and_freezes_those_below():
    model = tiny.dbn(steps_per_layer=2)
    # Momentum would carry layer 1 on after its turn if it were not put back.
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    images = tiny.binary_images(model, 16)

    def snapshot():
        return [np.array(w) for w in model.rbm_1.trainable_variables], [
            np.array(w) for w in model.rbm_2.trainable_variables
        ]

    first, second = snapshot()
    logs = model.fit(images, batch_size=8, epochs=1, verbose=0).history
    after_turn, untouched = snapshot()  # steps 0 and 1: layer 1's turn
    assert logs["layer"] == [1.0]
    assert any(not np.array_equal(a, b) for a, b in zip(first, after_turn))
    for a, b in zip(second, untouched):
        np.testing.assert_array_equal(a, b)
    logs = model.fit(images, batch_size=8, epochs=2, verbose=0).history
    frozen, trained = snapshot()  # steps 2 to 5: layer 2's
    assert logs["layer"] == [2.0, 2.0]
    for a, b in zip(after_turn, frozen):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(untouched, trained))
    assert all(
        int(o.iterations) == 6 for o in (model.rbm_1_optimizer, model.rbm_2_optimizer)
    )


def test_dbn_evaluates_its_top_layer_trained_or_loaded():
    # A loaded model's optimizers are fresh, at step 0: they must not choose the layer.
    model = tiny.dbn(steps_per_layer=100)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images = tiny.binary_images(model, 16)
    model.fit(images, batch_size=8, epochs=1, verbose=0)  # layer 1's turn only
    measured = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    loaded = tiny.dbn(steps_per_layer=100)
    loaded.set_weights(model.get_weights())
    loaded.compile(optimizer=keras.optimizers.SGD(0.1))
    assert int(loaded.rbm_1_optimizer.iterations) == 0
    reloaded = loaded.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    assert measured["layer"] == reloaded["layer"] == 2.0
    for name in ("free_energy_gap", "reconstruction_error"):
        np.testing.assert_allclose(measured[name], reloaded[name], rtol=1e-6)


def test_dbn_compile_config_round_trips_one_optimizer_per_layer():
    model = tiny.dbn(hidden_units=(6, 5, 4))
    model.compile(optimizer="adam", rbm_2_optimizer=keras.optimizers.SGD(0.5))
    config = model.get_compile_config()
    assert sorted(config) == ["rbm_1_optimizer", "rbm_2_optimizer", "rbm_3_optimizer"]
    reloaded = tiny.dbn(hidden_units=(6, 5, 4))
    reloaded.compile_from_config(config)
    assert isinstance(reloaded.rbm_1_optimizer, keras.optimizers.Adam)
    assert float(reloaded.rbm_2_optimizer.learning_rate) == 0.5
    assert reloaded.rbm_1_optimizer is not reloaded.rbm_3_optimizer


def test_annealing_schedule_runs_from_zero_to_one_densest_near_one():
    betas = boltzmann.annealing_schedule(14500)
    assert len(betas) == 14500 and betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)
    assert np.sum(betas < 0.5) == 500 and np.sum(betas >= 0.9) == 10000


@pytest.mark.parametrize(
    "family, arguments, message",
    [
        (RBM, {"hidden_units": 0}, "hidden_units must be an integer of at least 1"),
        (
            RBM,
            {"ais_temperatures": 2},
            "ais_temperatures must be an integer of at least 4",
        ),
        (DBN, {"hidden_units": ()}, "hidden_units must name at least one layer"),
        (DBN, {"hidden_units": (5, 0)}, r"hidden_units\[1\] must be an integer"),
        (DBN, {"steps_per_layer": 1.5}, "steps_per_layer must be an integer"),
    ],
)
def test_bad_configs_are_refused_naming_the_argument(family, arguments, message):
    with pytest.raises(ValueError, match=message):
        family(image_shape=(2, 2, 1), **arguments)
