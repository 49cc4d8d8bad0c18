"""Exponential moving averages of a network's weights, which families sample from.

An average of the weights along the last few thousand steps samples better than
the weights of any one step (Yazıcı et al. 2019 for GANs; Ho et al. 2020 and
every diffusion model since). A family keeps two copies of a network: the one
its optimizer trains, which is what fine-tuning resumes, and a frozen one holding
the average, which generates, evaluates and exports; `update` moves the second
towards the first after every optimizer step. Diffusion's denoiser and the GANs'
generators share this code.
"""

import keras
import tensorflow as tf

# The warm-up min(decay, (1 + n) / (10 + n)) at step n: early on, when the first
# weights are still random, the average forgets them quickly.
WARM_UP_OFFSET = 10.0


def check_decay(name: str, decay: float | None, optional: bool = False) -> None:
    """Refuse a decay outside [0, 1) (or None, if the average is `optional`)."""
    if decay is None and optional:
        return
    is_number = isinstance(decay, (int, float)) and not isinstance(decay, bool)
    if not (is_number and 0 <= decay < 1):
        allowed = "None (no average) or a number" if optional else "a number"
        raise ValueError(
            f"{name} must be {allowed} in [0, 1) (e.g. 0.999: an average over "
            f"about the last 1000 steps), got {decay!r}"
        )


def frozen_like(average: keras.Model, network: keras.Model) -> keras.Model:
    """`average` (a network of `network`'s architecture) holding its weights, frozen.

    Frozen, the optimizer never sees it, and its batch normalization runs on the
    averaged statistics even in a training call.
    """
    average.set_weights(network.get_weights())
    average.trainable = False
    return average


def frozen_copy(network: keras.Model, name: str) -> keras.Model:
    """A frozen copy of `network` named `name`: what starts its moving average.

    keras.models.clone_model rebuilds every layer from its config, so a family
    needs no second builder; built in the scope `name`, the copy's variable paths
    differ from the network's.
    """
    with keras.name_scope(name):
        copy = keras.models.clone_model(network)
    copy.name = name
    return frozen_like(copy, network)


def decay_at(decay: float, step) -> tf.Tensor:
    """The decay used after optimizer step `step` (1 after the first update)."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(decay, (1.0 + step) / (WARM_UP_OFFSET + step))


def update(average: keras.Model, network: keras.Model, decay: float, step) -> None:
    """average <- d average + (1 - d) weight for every weight, d = decay_at(decay, step).

    Call it inside train_step, after the optimizer step that `step` (the
    optimizer's iterations) counts. Under tf.distribute each replica holds the
    same updated weights, so each device's copy of the average is updated from
    its own copy of the weights, in a cross-replica context as optimizers update
    theirs (merge_call, extended.update): no replica's update is lost or doubled.
    """
    decay = decay_at(decay, step)
    pairs = [
        (averaged.value, weight.value)
        for averaged, weight in zip(average.weights, network.weights)
    ]

    def update_all(strategy):
        for averaged, weight in pairs:
            strategy.extended.update(
                averaged,
                lambda a, w: a.assign_sub((1.0 - decay) * (a - w)),
                args=(weight,),
                group=False,
            )

    context = tf.distribute.get_replica_context()
    if context is None:
        update_all(tf.distribute.get_strategy())
    else:
        context.merge_call(update_all)
