import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import export
from keras_gen.models import WGANGP, wgan_gp


def images(count=8, seed=0, size=16, channels=1):
    return (
        np.random.default_rng(seed)
        .random((count, size, size, channels))
        .astype("float32")
    )


def linear_critic(kernel):
    """D(x) = <kernel, x>: its gradient with respect to x is the kernel, everywhere."""
    critic = keras.Sequential(
        [
            keras.Input((2, 2, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(1, use_bias=False),
        ]
    )
    critic.set_weights([np.reshape(kernel, (4, 1)).astype("float32")])
    return critic


def test_losses_match_hand_computation():
    kernel = np.array([0.5, -1.0, 2.0, 0.25], "float32")
    critic = linear_critic(kernel)
    rng = np.random.default_rng(0)
    real = rng.standard_normal((3, 2, 2, 1)).astype("float32")
    fake = rng.standard_normal((3, 2, 2, 1)).astype("float32")
    epsilon = rng.random((3, 1, 1, 1)).astype("float32")
    real_scores = real.reshape(3, 4) @ kernel[:, None]
    fake_scores = fake.reshape(3, 4) @ kernel[:, None]

    np.testing.assert_allclose(
        wgan_gp.wasserstein_critic_losses(real_scores, fake_scores),
        fake_scores[:, 0] - real_scores[:, 0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        wgan_gp.wasserstein_generator_losses(fake_scores), -fake_scores[:, 0]
    )
    # A linear critic's gradient is its kernel at every interpolate.
    expected_penalty = (np.linalg.norm(kernel) - 1.0) ** 2
    np.testing.assert_allclose(
        wgan_gp.gradient_penalties(critic, real, fake, epsilon),
        np.full(3, expected_penalty),
        rtol=1e-5,
    )


def test_logged_critic_loss_is_the_wasserstein_loss_plus_the_weighted_penalty():
    model = tiny.wgan_gp(gradient_penalty_weight=10.0)
    model.compile()
    for logs in (
        model.test_step(tf.constant(images(8))),
        model.train_step(tf.constant(images(8))),
    ):
        logs = {name: float(value) for name, value in logs.items()}
        assert logs["critic_loss"] == pytest.approx(
            -logs["wasserstein_distance"] + 10.0 * logs["gradient_penalty"], rel=1e-4
        )
        model.reset_metrics()


@pytest.mark.parametrize("critic", ["linear", "model"])
def test_gradient_penalty_has_finite_gradients_where_the_critic_gradient_is_zero(
    critic,
):
    if critic == "linear":
        network, shape = linear_critic(np.zeros(4)), (3, 2, 2, 1)
    else:
        network = tiny.wgan_gp().critic
        network.set_weights([np.zeros_like(w) for w in network.get_weights()])
        shape = (3, 16, 16, 1)
    real, fake = np.ones(shape, "float32"), np.zeros(shape, "float32")
    epsilon = np.full((3, 1, 1, 1), 0.5, "float32")
    with tf.GradientTape() as tape:
        penalties = wgan_gp.gradient_penalties(network, real, fake, epsilon)
    gradients = tape.gradient(penalties, network.trainable_variables)
    np.testing.assert_allclose(penalties, np.ones(3), rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in gradients if g is not None)


def trainable(network):
    return [w.numpy().copy() for w in network.trainable_weights]


def changed(before, network):
    return [
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, network.trainable_weights)
    ]


@pytest.mark.parametrize("frozen", ["generator", "critic"])
def test_each_network_changes_only_through_its_own_optimizer(frozen):
    model = tiny.wgan_gp(num_critic_steps=2)
    zero, normal = keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.1)
    if frozen == "generator":
        model.compile(generator_optimizer=zero, critic_optimizer=normal)
    else:
        model.compile(generator_optimizer=normal, critic_optimizer=zero)
    assert {id(v) for v in model.critic_optimizer._trainable_variables} == {
        id(v) for v in model.critic.trainable_variables
    }
    generator_before = trainable(model.generator)
    critic_before = trainable(model.critic)
    model.fit(images(16), batch_size=16, epochs=1, verbose=0)
    # One train_step: a critic update per share of the batch, one generator update.
    assert int(model.critic_optimizer.iterations) == 2
    assert int(model.generator_optimizer.iterations) == 1
    generator_changed = changed(generator_before, model.generator)
    critic_changed = changed(critic_before, model.critic)
    if frozen == "generator":
        assert not any(generator_changed) and all(critic_changed)
    else:
        assert all(generator_changed) and not any(critic_changed)


def test_compile_defaults_and_their_config_round_trip():
    model = tiny.wgan_gp()
    model.compile()
    for optimizer in (model.generator_optimizer, model.critic_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)
        assert (optimizer.beta_1, optimizer.beta_2) == (0.0, 0.9)
    config = json.loads(json.dumps(model.get_compile_config()))
    reloaded = tiny.wgan_gp()
    reloaded.compile_from_config(config)
    for name, optimizer in config.items():
        assert reloaded.get_compile_config()[name]["config"] == optimizer["config"]


def test_mixed_precision_wraps_both_optimizers_and_trains():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny.wgan_gp()
        model.compile()
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.critic_optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.critic(images(2)).dtype == tf.float32  # scores, not float16
    logs = model.train_step(tf.constant(images(8)))
    assert all(np.isfinite(float(value)) for value in logs.values())


def test_same_seed_same_samples_and_same_training():
    model = tiny.wgan_gp()
    samples = model.generate(5, seed=3)
    assert samples.shape == (5, 16, 16, 1) and samples.dtype == tf.float32
    assert float(tf.reduce_min(samples)) >= 0.0 and float(tf.reduce_max(samples)) <= 1.0
    np.testing.assert_array_equal(samples, model.generate(5, seed=3))
    assert not np.array_equal(samples, model.generate(5, seed=4))

    def trained():
        keras.utils.set_random_seed(0)
        model = tiny.wgan_gp(seed=3)
        model.compile()
        model.fit(images(16), batch_size=8, epochs=1, verbose=0, shuffle=False)
        return model.get_weights()

    for a, b in zip(trained(), trained()):
        np.testing.assert_array_equal(a, b)


def test_a_batch_that_does_not_split_evenly_is_refused():
    model = tiny.wgan_gp(num_critic_steps=2)
    model.compile()
    with pytest.raises(ValueError, match="must be a multiple of 2.*Got a batch of 7"):
        model.train_step(tf.constant(images(7)))
    # When the batch size is only known at run time (a pipeline that keeps its last
    # partial batch), the same advice comes from a run-time check.
    batches = tf.data.Dataset.from_tensor_slices(images(7)).batch(7)
    assert batches.element_spec.shape[0] is None
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be a multiple of 2"):
        model.fit(batches, epochs=1, verbose=0)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="num_critic_steps must be"):
        WGANGP(num_critic_steps=0)
    with pytest.raises(ValueError, match="gradient_penalty_weight must be"):
        WGANGP(gradient_penalty_weight=-1.0)


def test_generate_rejects_bad_requests():
    model = tiny.wgan_gp()
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        model.generate(0)
    with pytest.raises(ValueError, match=r"expected latents of shape \(batch, 4\)"):
        model.decode(np.zeros((2, 7), "float32"))


def test_saved_model_signatures_match_the_keras_model(tmp_path):
    model = tiny.wgan_gp()
    loaded = tf.saved_model.load(str(export.saved_model(model, tmp_path / "model")))
    latents = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    np.testing.assert_allclose(
        loaded.signatures["generate"](latents=tf.constant(latents))["images"],
        model.decode(latents),
        atol=1e-5,
    )
    sampled = loaded.signatures["sample"](
        num_samples=tf.constant(5, tf.int32), seed=tf.constant(9, tf.int64)
    )["images"]
    np.testing.assert_allclose(sampled, model.generate(5, seed=9), atol=1e-5)


# tiny.FAMILIES trains one critic step per batch on 2 replicas; this trains two, so
# the split of each replica's batch into critic shares is checked as well.
REPLICA_SCRIPT = """
import dataclasses, functools, json, sys
import replica_check, tiny
tiny.FAMILIES = {"WGANGP": dataclasses.replace(
    tiny.FAMILIES["WGANGP"], make=functools.partial(tiny.wgan_gp, num_critic_steps=2)
)}
sys.argv = sys.argv[:1]
replica_check.main()
"""


def test_two_replicas_take_the_same_critic_steps_as_one_device():
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", REPLICA_SCRIPT],
        cwd=tests,
        env={**os.environ, "PYTHONPATH": str(tests)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = json.loads(result.stdout)["WGANGP"]
    assert result["max_weight_change"] > 1e-3
    assert result["max_weight_difference"] < 1e-5
    for key, value in result["logs_one"].items():
        # abs 1e-5: critic_loss is a near-cancelling sum of terms of order 1.
        assert result["logs_two"][key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
