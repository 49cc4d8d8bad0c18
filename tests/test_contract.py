"""The family contract, checked for every family in tiny.FAMILIES.

Config round trips and `.keras` reloads are in test_serialization, 1 vs 2 replicas
in test_replicas, export parity in test_export; here: each optimizer updates only
its own network, the same seed gives the same samples, and capabilities are
declared truthfully.
"""

import keras
import numpy as np
import pytest
import tiny

from keras_gen.models import base

# What each capability promises: the methods a caller may then use.
PROMISED = {
    base.SAMPLES: ("generate",),
    base.LIKELIHOOD: ("negative_log_likelihood", "likelihood_bound"),
    base.CONDITIONS: ("conditions",),
    base.RECONSTRUCTION: ("encode", "reconstruct"),
    base.PREVIEW: ("preview",),
    base.CLASSIFY: ("features", "probabilities"),
    base.TRANSLATION: ("translate", "input_image_shape", "image_shape"),
}


def _trainable(network) -> dict:
    return {v.path: np.array(v) for v in network.trainable_variables}


def _train(model, data, steps=1):
    images, labels = data if isinstance(data, tuple) else (data, None)
    batch_size = len(images) // steps
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)


@pytest.mark.parametrize("name", tiny.FAMILIES)
def test_each_optimizer_changes_only_its_own_network(name):
    family = tiny.FAMILIES[name]
    # An instance's: a DBN has one optimizer per layer, as many as its config says.
    owners = getattr(family.make(), "network_optimizers", {}) or {"optimizer": None}
    for chosen in owners:
        model = family.make()
        # Only `chosen` may move anything: the others step with a learning rate of 0.
        rates = {n: 0.1 if n == chosen else 0.0 for n in owners}
        if owners == {"optimizer": None}:
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        else:
            model.compile(**{n: keras.optimizers.SGD(r) for n, r in rates.items()})
        before = _trainable(model)
        _train(model, family.batch(model, 8), family.train_steps)
        changed = {
            path
            for path, value in _trainable(model).items()
            if not np.array_equal(value, before[path])
        }
        own = (
            set(before)
            if owners[chosen] is None
            else set(_trainable(getattr(model, owners[chosen])))
        )
        assert changed, f"{chosen} changed nothing"
        assert changed <= own, f"{chosen} changed {sorted(changed - own)}"


@pytest.mark.parametrize(
    "name",
    [n for n, f in tiny.FAMILIES.items() if f.make().can(base.SAMPLES)],
)
def test_same_seed_same_samples_other_seed_other_samples(name):
    model = tiny.FAMILIES[name].make()
    first = np.asarray(model.generate(4, seed=3))
    np.testing.assert_array_equal(first, np.asarray(model.generate(4, seed=3)))
    assert not np.array_equal(first, np.asarray(model.generate(4, seed=4)))
    assert first.dtype == np.float32 and first.min() >= 0.0 and first.max() <= 1.0


@pytest.mark.parametrize("name", tiny.FAMILIES)
def test_capabilities_are_declared_truthfully(name):
    model = tiny.FAMILIES[name].make()
    for capability, methods in PROMISED.items():
        present = all(hasattr(model, method) for method in methods)
        if model.can(capability):
            assert present, f"{name} declares {capability} without {methods}"
    missing = next(c for c in PROMISED if not model.can(c))
    with pytest.raises(base.CapabilityError, match=missing):
        model.require(missing, "be checked")
