"""Per-example adversarial and divergence losses, and the one reduction that keeps them
right under tf.distribute."""

import tensorflow as tf


def gan_discriminator_losses(real_logits, fake_logits) -> tf.Tensor:
    """Per-example -log D(x) - log(1 - D(G(z))), from logits of shape (batch, 1).

    A PatchGAN's logits, (batch, rows, columns, 1), give each example the mean
    over its patches.
    """
    return patch_mean(tf.nn.softplus(-real_logits)) + patch_mean(
        tf.nn.softplus(fake_logits)
    )


def gan_generator_losses(fake_logits) -> tf.Tensor:
    """Per-example non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014),
    averaged over a PatchGAN's patches."""
    return patch_mean(tf.nn.softplus(-fake_logits))


def patch_mean(values) -> tf.Tensor:
    """Per-example mean over every axis but the first: (batch, 1) gives its one value."""
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def average_over_global_batch(per_example) -> tf.Tensor:
    """Sum over this replica's examples divided by the global batch size.

    Replicas' gradients are summed, so this makes N replicas update exactly as one
    device would; a plain mean would weigh the loss N times.
    """
    return tf.nn.compute_average_loss(per_example)


def wasserstein_critic_losses(real_scores, fake_scores) -> tf.Tensor:
    """Per-example D(G(z)) - D(x), from scores of shape (batch, 1) (Arjovsky et al. 2017)."""
    return fake_scores[:, 0] - real_scores[:, 0]


def wasserstein_generator_losses(fake_scores) -> tf.Tensor:
    """Per-example -D(G(z)), from scores of shape (batch, 1)."""
    return -fake_scores[:, 0]


# Added under the square root of a gradient norm: the norm's gradient g / ||g|| is
# then finite, and zero, where the critic's gradient is zero (tf.norm gives NaN).
NORM_EPSILON = 1e-12


def gradient_penalties(critic, real, fake, epsilon, training=False) -> tf.Tensor:
    """Per-example (||grad D(x_hat)||_2 - 1)^2 at x_hat = epsilon * real + (1 - epsilon) * fake.

    WGAN-GP's penalty (Gulrajani et al. 2017). Differentiable with respect to the
    critic's weights (call it under their tape), and finite where the critic's
    gradient is zero.
    """
    interpolates = tf.convert_to_tensor(epsilon * real + (1.0 - epsilon) * fake)
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        scores = critic(interpolates, training=training)
    # Each score depends on its own image only, so the gradient of their sum
    # holds every example's own gradient.
    gradients = tape.gradient(scores, interpolates)
    axes = list(range(1, len(gradients.shape)))
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=axes) + NORM_EPSILON)
    return tf.square(norms - 1.0)
