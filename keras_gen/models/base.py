"""Shared by every model: noise, loss averaging and batching that are right under tf.distribute."""

import tensorflow as tf


def replica_normal(local_batch, shape, seed):
    """Standard normal noise for this replica's share of the global batch.

    Every replica draws the same global-batch tensor from a stateless seed and
    keeps its own rows, so N replicas together see exactly the noise one device
    would draw, and no two replicas share noise.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context else 1
    replica = context.replica_id_in_sync_group if context else 0
    noise = tf.random.stateless_normal(
        tf.concat([[local_batch * replicas], shape], axis=0), seed=seed
    )
    start = tf.cast(replica, tf.int32) * local_batch
    return noise[start : start + local_batch]


def step_seed(seed, step, stream):
    """A stateless seed for one noise stream at one training step."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 16 + stream])


def standard_normal(num_samples, dim, seed):
    """Latents for `generate`: reproducible for an int seed, fresh for None."""
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if seed is None:
        return tf.random.normal((num_samples, dim))
    return tf.random.stateless_normal((num_samples, dim), seed=(seed, 0))


def checked_latents(latents, latent_dim: int) -> tf.Tensor:
    """Latents as float32 (batch, latent_dim), or a ValueError naming that shape."""
    latents = tf.convert_to_tensor(latents, tf.float32)
    if latents.shape.rank != 2 or latents.shape[-1] != latent_dim:
        raise ValueError(
            f"expected latents of shape (batch, {latent_dim}), got {tuple(latents.shape)}"
        )
    return latents


def images(data):
    """The images of a batch that may also carry labels or other extras."""
    return data[0] if isinstance(data, (tuple, list)) else data


def in_batches(function, inputs, batch_size=256):
    """Apply `function` batch by batch, so large requests fit in memory."""
    count = int(inputs.shape[0])
    return tf.concat(
        [function(inputs[i : i + batch_size]) for i in range(0, count, batch_size)], 0
    )


def logs(metrics) -> dict:
    """Tracker results as train_step/test_step return them to fit.

    Under MultiWorkerMirroredStrategy, Keras 3 reduces these with
    reduce("MEAN", axis=0), which fails on scalars (tensorflow#72388); there
    each result goes as a vector of one, which reduces to the same scalar.
    """
    results = {metric.name: metric.result() for metric in metrics}
    if isinstance(
        tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy
    ):
        results = {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


MAX_EXPORTED_SAMPLES = 1024


def sample_endpoint(latent_dim: int, decode) -> tuple:
    """The exported `sample(num_samples, seed)`: the images `generate(num_samples, seed)` gives.

    Requests outside 1..MAX_EXPORTED_SAMPLES are refused at the signature, before any
    memory is allocated for them.
    """

    def sample(num_samples, seed):
        checks = [
            tf.debugging.assert_positive(
                num_samples, message="num_samples must be at least 1"
            ),
            tf.debugging.assert_less_equal(
                num_samples,
                MAX_EXPORTED_SAMPLES,
                message=f"num_samples must be at most {MAX_EXPORTED_SAMPLES}; "
                "ask several times for more",
            ),
        ]
        with tf.control_dependencies(checks):
            shape = tf.stack([num_samples, latent_dim])
        latents = tf.random.stateless_normal(shape, seed=tf.stack([seed, 0]))
        return {"images": decode(latents)}

    signature = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int64, name="seed"),
    ]
    return sample, signature
