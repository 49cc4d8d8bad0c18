"""Run as a script: train each model family on 1 and on 2 CPU replicas, print the differences.

A separate process, because logical devices must be set before TensorFlow starts.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras
import numpy as np
import tiny

from keras_gen.models import noise


def train(name, strategy, initial, data):
    family = tiny.FAMILIES[name]
    with strategy.scope():
        model = family.make(seed=5)
        model.set_weights(initial)
        # Plain SGD: a loss scaled by the replica count would show in the update
        # (Adam hides it).
        family.compile(model, lambda: keras.optimizers.SGD(0.1))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return model.get_weights(), {k: float(v[-1]) for k, v in history.history.items()}


def main():
    results = {}
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    names = sys.argv[1:] or list(tiny.FAMILIES)
    for name in names:
        keras.utils.set_random_seed(0)
        model = tiny.FAMILIES[name].make(seed=5)
        initial = model.get_weights()
        data = tiny.FAMILIES[name].batch(model, 24)
        one_weights, one_logs = train(
            name, tf.distribute.OneDeviceStrategy(devices[0]), initial, data
        )
        # ReductionToOneDevice: with CPU collectives, the replicas' reductions can be
        # keyed in different orders and abort (TF 2.21); GPUs use NCCL instead.
        mirrored = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
        two_weights, two_logs = train(name, mirrored, initial, data)
        results[name] = {
            "max_weight_difference": max(
                float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)
            ),
            "max_weight_change": max(
                float(np.max(np.abs(a - b))) for a, b in zip(one_weights, initial)
            ),
            "logs_one": one_logs,
            "logs_two": two_logs,
        }
    # The noise each replica draws, against what one device draws for the whole batch.
    mirrored = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    seed = noise.step_seed(3, 7, 0)
    shares = mirrored.experimental_local_results(
        mirrored.run(lambda: noise.replica_normal(3, [2], seed))
    )
    whole = tf.random.stateless_normal([6, 2], seed=seed)
    results["noise"] = {
        "shares_equal_whole": bool(np.array_equal(np.concatenate(shares), whole)),
        "replicas_differ": not np.array_equal(shares[0], shares[1]),
    }
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
