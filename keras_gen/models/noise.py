"""The noise every model draws: seeded, and the same on one device or many replicas."""

import tensorflow as tf


def replica_normal(local_batch, shape, seed, sampler=tf.random.stateless_normal):
    """Standard normal noise (or `sampler`'s) for this replica's share of the global batch.

    Every replica draws the same global-batch tensor from a stateless seed and
    keeps its own rows, so N replicas together see exactly the noise one device
    would draw, and no two replicas share noise.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context else 1
    replica = context.replica_id_in_sync_group if context else 0
    noise = sampler(tf.concat([[local_batch * replicas], shape], axis=0), seed=seed)
    start = tf.cast(replica, tf.int32) * local_batch
    return noise[start : start + local_batch]


def replica_uniform(local_batch, shape, seed) -> tf.Tensor:
    """Uniform [0, 1) noise for this replica's rows of the global batch."""
    return replica_normal(local_batch, shape, seed, sampler=tf.random.stateless_uniform)


def step_seed(seed, step, stream):
    """A stateless seed for one noise stream at one training step.

    Step -1 is evaluation's: `test_step` and `score` draw the same noise every time.
    """
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 16 + stream])


def standard_normal(num_samples, dim, seed):
    """Latents (num_samples, dim) for `generate`: reproducible for a seed, fresh for None.

    `num_samples` and `seed` may be tensors (the exported `sample` signature).
    """
    if seed is None:
        return tf.random.normal((num_samples, dim))
    return tf.random.stateless_normal((num_samples, dim), seed=(seed, 0))
