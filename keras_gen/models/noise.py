"""The noise every model draws: seeded, and the same on one device or many replicas."""

import math

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


def standard_normal(num_samples, dim, seed, truncation=None):
    """Latents (num_samples, dim) for `generate`: reproducible for a seed, fresh for None.

    `truncation` t draws every coordinate from the standard normal truncated to
    [-t, t] instead, exactly (the inverse CDF of a uniform draw between the CDF's
    values at -t and t); None or infinity does not truncate. `num_samples` and
    `seed` may be tensors (the exported `sample` signature).
    """
    shape = (num_samples, dim)
    if truncation is None or math.isinf(truncation):
        if seed is None:
            return tf.random.normal(shape)
        return tf.random.stateless_normal(shape, seed=(seed, 0))
    if seed is None:
        uniform = tf.random.uniform(shape, dtype=tf.float64)
    else:
        uniform = tf.random.stateless_uniform(shape, seed=(seed, 0), dtype=tf.float64)
    lower = 0.5 * math.erfc(truncation / math.sqrt(2.0))  # Phi(-t), the mass below -t
    return tf.cast(tf.math.ndtri(lower + (1.0 - 2.0 * lower) * uniform), tf.float32)


def check_truncation(truncation) -> None:
    """Refuse a truncation that is not a positive number (None: untruncated)."""
    if truncation is None:
        return
    is_number = isinstance(truncation, (int, float)) and not isinstance(
        truncation, bool
    )
    if not (is_number and truncation > 0):
        raise ValueError(
            "truncation must be None (untruncated latents) or a positive number, the "
            f"bound t of latents drawn from N(0, 1) truncated to [-t, t] (e.g. 0.7; "
            f"infinity does not truncate), got {truncation!r}"
        )
