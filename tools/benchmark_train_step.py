"""Time model.fit against a hand-written tf.function loop over the same networks.

Prints images/s for both and their ratio (fit should be within a few percent of the
hand loop), and what the input pipeline delivers alone. Run alone (other jobs on the machine skew both numbers):

    python tools/benchmark_train_step.py [--model dcgan|vae] [--batch-size N] [--steps N]
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from keras_gen import data
from keras_gen.models import DCGAN, VAE


def dcgan_hand_step(model):
    generator, discriminator = model.generator, model.discriminator
    g_opt, d_opt = model.generator_optimizer, model.discriminator_optimizer

    @tf.function
    def step(real):
        real = real * 2.0 - 1.0
        latents = tf.random.normal([tf.shape(real)[0], model.latent_dim])
        with tf.GradientTape() as g_tape:
            fake = generator(latents, training=True)
        with tf.GradientTape() as d_tape:
            real_logits = discriminator(real, training=True)
            fake_logits = discriminator(fake, training=True)
            d_loss = tf.reduce_mean(
                tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits)
            )
        d_vars = discriminator.trainable_variables
        d_opt.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
        with tf.GradientTape() as f_tape:
            f_tape.watch(fake)
            g_loss = tf.reduce_mean(tf.nn.softplus(-discriminator(fake, training=True)))
        g_vars = generator.trainable_variables
        grads = g_tape.gradient(
            fake, g_vars, output_gradients=f_tape.gradient(g_loss, fake)
        )
        g_opt.apply_gradients(zip(grads, g_vars))

    return step


def vae_hand_step(model):
    optimizer = model.optimizer

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            mean, raw = tf.split(model.encoder(images, training=True), 2, axis=-1)
            std = tf.nn.softplus(raw) + 1e-5
            latents = mean + std * tf.random.normal(tf.shape(mean))
            logits = model.decoder(latents, training=True)
            nll = tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits),
                [1, 2, 3],
            )
            kl = 0.5 * tf.reduce_sum(
                std**2 + mean**2 - 1.0 - 2.0 * tf.math.log(std), -1
            )
            loss = tf.reduce_mean(nll + kl)
        weights = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))

    return step


SETUPS = {
    "dcgan": (lambda: DCGAN(), (64, 64, 3), dcgan_hand_step, {}),
    "vae": (lambda: VAE(), (28, 28, 1), vae_hand_step, {"optimizer": "adam"}),
}


class _Timer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SETUPS), default="dcgan")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    make, shape, hand_step, compile_args = SETUPS[args.model]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.batch_size * 4, *shape), dtype=np.uint8)
    binarize = "dynamic" if args.model == "vae" else None
    dataset = data.pipeline(
        pixels, batch_size=args.batch_size, binarize=binarize
    ).repeat()
    timed = args.steps - args.warmup

    model = make()
    model.compile(**compile_args)
    timer = _Timer(args.warmup)
    model.fit(
        dataset,
        steps_per_epoch=args.steps,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[timer],
    )
    fit_rate = timed * args.batch_size / (timer.end - timer.start)

    model = make()
    model.compile(**compile_args)
    step = hand_step(model)
    batches = iter(dataset)
    for _ in range(args.warmup):
        step(next(batches))
    start = time.perf_counter()
    for _ in range(timed):
        step(next(batches))
    hand_rate = timed * args.batch_size / (time.perf_counter() - start)

    start, count = time.perf_counter(), 0
    for batch in dataset.take(50):
        count += int(batch.shape[0])
    pipeline_rate = count / (time.perf_counter() - start)

    print(f"{args.model}, batch {args.batch_size}, {timed} timed steps")
    print(
        f"input pipeline {pipeline_rate:8.1f} images/s (alone; must far exceed the rates below)"
    )
    print(f"model.fit      {fit_rate:8.1f} images/s")
    print(f"hand loop      {hand_rate:8.1f} images/s")
    print(f"fit/hand ratio {fit_rate / hand_rate:8.3f}")


if __name__ == "__main__":
    main()
