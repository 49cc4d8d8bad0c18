"""Differentially private training (DP-SGD) and its privacy budget.

DP-SGD (Abadi et al. 2016): every example's gradient is clipped to norm `clip`,
the clipped gradients are summed, Gaussian noise of standard deviation
`noise_multiplier * clip` is added, and the sum is divided by the batch size.
The budget epsilon at a chosen delta comes from the `dp-accounting` package's
RDP accountant for the sampled Gaussian mechanism, which assumes each batch is
a Poisson sample of the data; keras_gen's batches are shuffled partitions, the
approximation every DP-SGD library reports under (the card says so).
"""

import math
from collections.abc import Callable

import tensorflow as tf

DELTA = 1e-5


def private_gradients(
    example_loss: Callable,
    examples: tuple,
    weights: list,
    clip: float,
    noise_multiplier: float,
    seed,
) -> list[tf.Tensor]:
    """Clipped, noised gradients of the mean loss over the global batch.

    `example_loss(example)` is one example's scalar loss, `example` one row of
    each tensor in `examples`; gradients are taken per row, vectorized (a
    jacobian of the batch's losses would cost batch-size backward passes).
    Each replica sums its own examples' clipped gradients and adds 1/replicas of
    one noise draw that every replica makes alike from `seed`: summed over
    replicas, that is exactly one device's update.
    """

    def gradient(example):
        with tf.GradientTape() as tape:
            loss = example_loss(example)
        return tape.gradient(loss, weights)

    per_example = tf.vectorized_map(gradient, examples)
    squared = [
        tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape))))
        for g in per_example
    ]
    scale = tf.minimum(1.0, clip / tf.maximum(tf.sqrt(tf.add_n(squared)), 1e-12))
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context else 1
    global_batch = tf.cast(tf.shape(scale)[0] * replicas, tf.float32)
    seeds = tf.random.experimental.stateless_split(
        tf.cast(seed, tf.int64), len(weights)
    )
    gradients = []
    for example_gradients, weight, weight_seed in zip(
        per_example, weights, tf.unstack(seeds)
    ):
        summed = tf.tensordot(scale, example_gradients, axes=1)
        noise = tf.random.stateless_normal(weight.shape, weight_seed)
        noise *= noise_multiplier * clip / replicas
        gradients.append((summed + noise) / global_batch)
    return gradients


def epsilon(
    noise_multiplier: float,
    batch_size: int,
    dataset_size: int,
    steps: int,
    delta: float = DELTA,
) -> float:
    """The (epsilon, delta) budget of `steps` DP-SGD steps: RDP accountant.

    Infinite without noise. Needs the `dp-accounting` package (the `privacy` extra).
    """
    if noise_multiplier <= 0:
        return math.inf
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError as error:
        raise ImportError(
            "privacy budgets need the dp-accounting package: "
            "pip install 'keras-gen[privacy]'"
        ) from error
    sampled = dp_accounting.PoissonSampledDpEvent(
        batch_size / dataset_size, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(sampled, int(steps)))
    return float(accountant.get_epsilon(delta))
