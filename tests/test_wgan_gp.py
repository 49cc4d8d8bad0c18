import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from test_dcgan import images

from keras_gen import losses
from keras_gen.models import WGANGP


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
        losses.wasserstein_critic_losses(real_scores, fake_scores),
        fake_scores[:, 0] - real_scores[:, 0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.wasserstein_generator_losses(fake_scores), -fake_scores[:, 0]
    )
    # A linear critic's gradient is its kernel at every interpolate.
    expected_penalty = (np.linalg.norm(kernel) - 1.0) ** 2
    np.testing.assert_allclose(
        losses.gradient_penalties(critic, real, fake, epsilon),
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
        penalties = losses.gradient_penalties(network, real, fake, epsilon)
    gradients = tape.gradient(penalties, network.trainable_variables)
    np.testing.assert_allclose(penalties, np.ones(3), rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in gradients if g is not None)


def test_a_step_takes_a_critic_update_per_share_and_one_generator_update():
    # That each optimizer changes only its own network is tests/test_contract.py's.
    model = tiny.wgan_gp(num_critic_steps=2)
    model.compile()
    model.fit(images(16), batch_size=16, epochs=1, verbose=0)
    assert int(model.critic_optimizer.iterations) == 2
    assert int(model.generator_optimizer.iterations) == 1


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


def test_same_seed_same_training():
    # Same seed, same samples is tests/test_contract.py's.
    assert tiny.wgan_gp().generate(5, seed=3).shape == (5, 16, 16, 1)

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
