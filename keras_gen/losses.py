"""Per-example losses, and the one reduction that keeps them right under tf.distribute."""

import tensorflow as tf


def gan_discriminator_losses(real_logits, fake_logits) -> tf.Tensor:
    """Per-example -log D(x) - log(1 - D(G(z))), from logits of shape (batch, 1)."""
    return tf.nn.softplus(-real_logits[:, 0]) + tf.nn.softplus(fake_logits[:, 0])


def gan_generator_losses(fake_logits) -> tf.Tensor:
    """Per-example non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014)."""
    return tf.nn.softplus(-fake_logits[:, 0])


def average_over_global_batch(per_example) -> tf.Tensor:
    """Sum over this replica's examples divided by the global batch size.

    Replicas' gradients are summed, so this makes N replicas update exactly as one
    device would; a plain mean would weigh the loss N times.
    """
    return tf.nn.compute_average_loss(per_example)
