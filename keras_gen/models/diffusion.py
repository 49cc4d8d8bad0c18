"""Denoising diffusion (Ho et al. 2020) with DDIM sampling (Song et al. 2021) and
classifier-free guidance (Ho and Salimans 2022).

A U-Net predicts the noise (or the velocity v, Salimans and Ho 2022) that a
cosine schedule (Nichol and Dhariwal 2021) added to an image; sampling runs it
from pure noise back to an image, in as many steps as asked for. Conditions are
learned with a "null" class per head, so one network gives conditional and
unconditional predictions and guidance mixes them at sampling time.

The schedule, the conversions between noise, velocity and image, and the two
samplers' updates are module functions of plain tensors, so tests can drive them
with an analytic denoiser; the family wires them to its networks.
"""

import math
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_gen import losses
from keras_gen.models import base, conditioning, ema, inputs, networks, noise

PREDICTIONS = ("epsilon", "v")
SAMPLERS = ("ddim", "ddpm")
# Nichol and Dhariwal's offset s, which keeps beta_1 from being vanishingly small,
# and their clip of the betas, which keeps the last step from being exactly 1.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999
# DDIM steps of the TensorBoard preview after every epoch: enough to see shapes.
PREVIEW_STEPS = 10
# Samples `generate` runs through the network together (twice as many rows with
# guidance): a 64x64 U-Net's activations for more would take gigabytes.
SAMPLING_BATCH_SIZE = 128


# --- The schedule and the process, as functions of tensors -------------------------


def cosine_alphas_cumprod(timesteps: int) -> np.ndarray:
    """alpha_bar_t for t = 1..T (float64, index t - 1): the cosine schedule.

    alpha_bar(t) = f(t) / f(0), f(t) = cos²(((t/T + s) / (1 + s)) · π/2), taken as
    betas beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1) clipped to MAX_BETA and
    multiplied back up, as Nichol and Dhariwal's code does: every alpha_bar is
    the closed form but where a clipped beta (the last steps) raises it.
    """

    def f(t):
        return (
            np.cos((t / timesteps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2)
            ** 2
        )

    steps = np.arange(timesteps + 1, dtype=np.float64)
    betas = np.minimum(1.0 - f(steps[1:]) / f(steps[:-1]), MAX_BETA)
    return np.cumprod(1.0 - betas)


def diffuse(images, noise_, alpha_bar):
    """x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps: a sample of q(x_t | x_0).

    `alpha_bar` broadcasts against the images: one value, or (batch, 1, 1, 1).
    """
    return ops.sqrt(alpha_bar) * images + ops.sqrt(1.0 - alpha_bar) * noise_


def velocity(images, noise_, alpha_bar):
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans and Ho 2022)."""
    return ops.sqrt(alpha_bar) * noise_ - ops.sqrt(1.0 - alpha_bar) * images


def noise_and_image(noisy, output, alpha_bar, prediction: str) -> tuple:
    """(eps, x_0) that a network `output` of `prediction` kind implies at x_t."""
    a, b = ops.sqrt(alpha_bar), ops.sqrt(1.0 - alpha_bar)
    if prediction == "v":
        return b * noisy + a * output, a * noisy - b * output
    return output, (noisy - b * output) / a


def ddim_update(noisy, image, alpha_bar, previous_alpha_bar, eta, draw):
    """x_s from x_t, the predicted x_0 and the noise it implies (Song et al. 2021, eq. 12).

    x_s = sqrt(ab_s) x_0 + sqrt(1 - ab_s - σ²) eps + σ z, with
    σ = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s): eta 0 is
    deterministic, eta 1 is the DDPM posterior's variance.
    """
    eps = (noisy - ops.sqrt(alpha_bar) * image) / ops.sqrt(1.0 - alpha_bar)
    variance = (
        eta**2
        * (1.0 - previous_alpha_bar)
        / (1.0 - alpha_bar)
        * (1.0 - alpha_bar / previous_alpha_bar)
    )
    direction = ops.sqrt(ops.maximum(1.0 - previous_alpha_bar - variance, 0.0))
    return (
        ops.sqrt(previous_alpha_bar) * image
        + direction * eps
        + ops.sqrt(variance) * draw
    )


def ddpm_update(noisy, image, alpha_bar, previous_alpha_bar, draw):
    """x_s ~ q(x_s | x_t, x_0), the posterior of Ho et al. (2020, eq. 7), at predicted x_0.

    Over a subsequence of steps the betas are those of the subsequence,
    beta = 1 - ab_t / ab_s (Nichol and Dhariwal's respacing); over every step it
    is Ho et al.'s ancestral sampler with the posterior variance beta-tilde.
    """
    beta = 1.0 - alpha_bar / previous_alpha_bar
    mean = (
        ops.sqrt(previous_alpha_bar) * beta / (1.0 - alpha_bar) * image
        + ops.sqrt(1.0 - beta) * (1.0 - previous_alpha_bar) / (1.0 - alpha_bar) * noisy
    )
    variance = beta * (1.0 - previous_alpha_bar) / (1.0 - alpha_bar)
    return mean + ops.sqrt(variance) * draw


def sampling_timesteps(step, steps, timesteps):
    """The timestep index (0..T-1) of sampling step `step` of `steps` (0 is the last).

    floor((step + 1) T / steps) - 1: evenly spread, the first step at T - 1;
    step -1 gives -1, "no noise" (alpha_bar 1). Every step a distinct index for
    steps <= T.
    """
    return (step + 1) * timesteps // steps - 1


# --- The family ---------------------------------------------------------------------


@base.family
class Diffusion(base.Family):
    """Denoising diffusion model of images, optionally class-conditional with guidance.

    Trains on images in [0, 1] (scaled to [-1, 1]), and for a conditional model
    (images, labels int32 (batch, heads)) batches: each step draws a timestep, a
    noise and condition-dropout masks per example, and minimises the mean squared
    error of the predicted noise (or velocity), averaged over the global batch.
    Two copies of the U-Net: `denoiser`, which the optimizer trains, and
    `ema_denoiser`, its exponential moving average, which generates, previews,
    evaluates and exports. Both are saved: fine-tuning resumes the raw weights.

    Conditions. Each head has a "null" class, index len(names), meaning
    "unconditioned". Training drops every head to it at the rate
    `condition_dropout` and, with several heads, each head alone at that rate too,
    so a request that names some heads only is one the network has seen.
    Sampling with guidance w predicts eps_u + w (eps_c - eps_u), eps_u with every
    head null: w = 0 is unconditional, w = 1 plainly conditional, w > 1 sharper
    classes at some cost in diversity (negative w pushes away from the classes).

    Args:
        image_shape: (height, width, channels); height and width divisible by
            2 ** (len(widths) - 1).
        widths: channels of each U-Net level, from full resolution down.
        residual_blocks: residual blocks per level on the way down (one more up).
        attention_levels: how many of the lowest-resolution levels have
            self-attention after each residual block (the middle block has it
            whenever this is at least 1); 0 for none.
        groups: group-normalization groups; every width must be a multiple.
        time_embedding_dim: size of the sinusoidal timestep features (even).
        prediction: "epsilon" (the noise) or "v" (the velocity).
        timesteps: T, the number of noise levels of the cosine schedule.
        conditions: head -> class names; None or {} for an unconditional model.
        condition_dropout: classifier-free guidance's training rate of the null class.
        ema_decay: decay of the weights' moving average, per optimizer step (with
            the usual warm-up min(decay, (1 + n) / (10 + n)) at step n).
        seed: fixes the training draws: step n draws the same timesteps, noise and
            dropout on any number of replicas; evaluation draws the same every time.
        sampling_steps: `generate`'s default number of steps.
        guidance: `generate`'s default guidance scale w.
        guidance_interval: (low, high) to guide only the steps whose noise level
            sigma = sqrt((1 - alpha_bar) / alpha_bar) is in (low, high], taking the
            conditional prediction alone (w = 1) at the others: guidance at high
            noise costs diversity, at low noise it does little (Kynkaanniemi et
            al. 2024). None guides every step.

    Example:
        model = keras_gen.Diffusion(conditions={"labels": names})
        model.compile(optimizer=keras.optimizers.Adam(2e-4))
        model.fit(images, labels, batch_size=64, epochs=20)
        boots = model.generate(16, seed=0, labels="ankle boot", guidance=2.0)
        fast = model.generate(16, seed=0, steps=10)  # DDIM, 10 steps
    """

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {base.SAMPLES, base.PREVIEW, base.CONDITIONS}
    )
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape", "widths")

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        widths: tuple[int, ...] = (32, 64, 128),
        residual_blocks: int = 2,
        attention_levels: int = 1,
        groups: int = 8,
        time_embedding_dim: int = 32,
        prediction: str = "epsilon",
        timesteps: int = 1000,
        conditions: dict | None = None,
        condition_dropout: float = 0.1,
        ema_decay: float = 0.999,
        seed: int = 0,
        sampling_steps: int = 50,
        guidance: float = 1.0,
        guidance_interval: tuple[float, float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.widths = tuple(widths)
        self.residual_blocks = residual_blocks
        self.attention_levels = attention_levels
        self.groups = groups
        self.time_embedding_dim = time_embedding_dim
        self.prediction = prediction
        self.timesteps = timesteps
        self.conditions = (
            conditioning.checked_conditions(conditions) if conditions else {}
        )
        self.condition_dropout = condition_dropout
        self.ema_decay = ema_decay
        self.seed = seed
        self.sampling_steps = sampling_steps
        self.guidance = guidance
        self.guidance_interval = guidance_interval
        self._check_config()
        if not self.conditions:  # this instance declares what it can do
            self.capabilities = type(self).capabilities - {base.CONDITIONS}
        # A NumPy array, made a constant in each graph that reads it.
        self.alphas_cumprod = cosine_alphas_cumprod(timesteps).astype("float32")
        self.denoiser = self._build_denoiser("denoiser")
        self.ema_denoiser = ema.frozen_like(
            self._build_denoiser("ema_denoiser"), self.denoiser
        )
        self.trackers = base.mean_trackers("loss")
        self._graphs = _Graphs()
        self.build()

    def _check_config(self) -> None:
        """Refuse a config that cannot make a U-Net or a schedule, naming the argument."""
        height, width = self.image_shape[:2]
        halvings = 2 ** (len(self.widths) - 1)
        problems = [
            (
                len(self.image_shape) != 3,
                "image_shape must be (height, width, channels)",
            ),
            (
                height % halvings or width % halvings,
                (
                    f"image height and width must be divisible by {halvings} "
                    f"(2 ** (len(widths) - 1)); got {self.image_shape}"
                ),
            ),
            (
                any(w % self.groups for w in self.widths),
                (
                    f"every width must be a multiple of groups={self.groups}; "
                    f"got widths {self.widths}"
                ),
            ),
            (
                not 0 <= self.attention_levels <= len(self.widths),
                f"attention_levels must be from 0 to {len(self.widths)}",
            ),
            (self.residual_blocks < 1, "residual_blocks must be at least 1"),
            (
                self.time_embedding_dim < 2 or self.time_embedding_dim % 2,
                "time_embedding_dim must be even and at least 2",
            ),
            (
                self.prediction not in PREDICTIONS,
                f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}",
            ),
            (self.timesteps < 2, "timesteps must be at least 2"),
            (
                not 0 <= self.condition_dropout < 1,
                "condition_dropout must be in [0, 1)",
            ),
            (
                not 1 <= self.sampling_steps <= self.timesteps,
                f"sampling_steps must be from 1 to timesteps={self.timesteps}",
            ),
            (not math.isfinite(self.guidance), "guidance must be a finite number"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)
        ema.check_decay("ema_decay", self.ema_decay)

    def _build_denoiser(self, name: str) -> keras.Model:
        class_counts = [len(names) for names in self.conditions.values()]
        return networks.build_denoising_unet(
            self.image_shape,
            self.widths,
            self.residual_blocks,
            self.attention_levels,
            self.groups,
            self.time_embedding_dim,
            class_counts,
            name=name,
        )

    @property
    def null_labels(self) -> tf.Tensor:
        """The null class of every head, int32 (heads,): "unconditioned"."""
        return tf.constant([len(n) for n in self.conditions.values()], tf.int32)

    # --- Training -------------------------------------------------------------------

    def compile(self, optimizer=None, **kwargs):
        """Keras's compile, Adam(2e-4) by default, the optimizer built on the denoiser
        at once (built inside the first step, it would make fit trace that step twice)."""
        super().compile(optimizer=optimizer or keras.optimizers.Adam(2e-4), **kwargs)
        self.optimizer.build(self.denoiser.trainable_variables)

    def compile_from_config(self, config):
        # Keras skips a custom compile when it reloads a model; this one round-trips.
        self.compile(**keras.saving.deserialize_keras_object(config))

    def train_step(self, data):
        images, labels = self._batch(data)
        step = self.optimizer.iterations
        timesteps, draws, labels = self._training_draws(images, labels, step, True)

        # 1. One update of the denoiser on the noise (or velocity) it predicts.
        with tf.GradientTape() as tape:
            per_example = self._denoising_losses(
                images, timesteps, draws, labels, self.denoiser, training=True
            )
            loss = losses.average_over_global_batch(per_example)
            loss = self.optimizer.scale_loss(loss)
        weights = self.denoiser.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))

        # 2. The moving average follows the updated weights.
        ema.update(
            self.ema_denoiser, self.denoiser, self.ema_decay, self.optimizer.iterations
        )
        return self._track(loss=per_example)

    def test_step(self, data):
        """The loss of the moving average (what ships), on evaluation's fixed draws."""
        images, labels = self._batch(data)
        timesteps, draws, labels = self._training_draws(images, labels, -1, False)
        per_example = self._denoising_losses(
            images, timesteps, draws, labels, self.ema_denoiser, training=False
        )
        return self._track(loss=per_example)

    def _training_draws(self, images, labels, step, dropout: bool) -> tuple:
        """(timesteps, noise, labels with dropped heads null) for this replica's rows.

        Drawn at training step `step` (-1: evaluation's fixed draws) for the global
        batch from stateless seeds and shared out, so N replicas draw what one
        device would (noise.replica_normal).
        """
        batch = tf.shape(images)[0]
        uniform = noise.replica_uniform(batch, [1], noise.step_seed(self.seed, step, 1))
        timesteps = tf.minimum(
            tf.cast(uniform[:, 0] * self.timesteps, tf.int32), self.timesteps - 1
        )
        draws = noise.replica_normal(
            batch, list(self.image_shape), noise.step_seed(self.seed, step, 0)
        )
        if labels is None or not dropout or not self.condition_dropout:
            return timesteps, draws, labels
        heads = len(self.conditions)
        uniform = noise.replica_uniform(
            batch, [heads + 1], noise.step_seed(self.seed, step, 2)
        )
        dropped = uniform[:, :1] < self.condition_dropout  # every head at once
        if heads > 1:  # and each head alone
            dropped |= uniform[:, 1:] < self.condition_dropout
        return timesteps, draws, tf.where(dropped, self.null_labels, labels)

    def _denoising_losses(self, images, timesteps, draws, labels, network, training):
        """Per-example mean squared error of the network's eps (or v) prediction."""
        clean = images * 2.0 - 1.0
        alpha_bar = tf.gather(self.alphas_cumprod, timesteps)[:, None, None, None]
        noisy = diffuse(clean, draws, alpha_bar)
        target = (
            draws if self.prediction == "epsilon" else velocity(clean, draws, alpha_bar)
        )
        output = self._network_output(network, noisy, timesteps, labels, training)
        return losses.patch_mean(tf.square(output - target))

    # --- Prediction -----------------------------------------------------------------

    def _network_output(self, network, noisy, timesteps, labels, training=False):
        """The network's float32 eps or v for noisy images at int32 timesteps (batch,)."""
        network_inputs = [tf.convert_to_tensor(noisy), tf.convert_to_tensor(timesteps)]
        if self.conditions:
            network_inputs.append(tf.convert_to_tensor(labels))
        return tf.cast(network(network_inputs, training=training), tf.float32)

    def _guided_output(self, noisy, timestep, labels, guidance, guided: bool):
        """The EMA network's output at one timestep for every row, with guidance.

        Guided, one pass over [conditional rows; the same rows unconditioned] and
        out_u + w (out_c - out_u); v is affine in eps at fixed x_t with weights
        summing to one, so guiding v is guiding eps. Unguided, one plain pass.
        """
        rows = tf.shape(noisy)[0]
        timesteps = tf.fill([rows], timestep)
        if not guided:
            return self._network_output(self.ema_denoiser, noisy, timesteps, labels)
        unconditioned = tf.tile(self.null_labels[None], [rows, 1])
        both = self._network_output(
            self.ema_denoiser,
            tf.concat([noisy, noisy], 0),
            tf.concat([timesteps, timesteps], 0),
            tf.concat([labels, unconditioned], 0),
        )
        conditional, unconditional = both[:rows], both[rows:]
        if self.guidance_interval is not None:
            guidance = self._guidance_at(timestep, guidance)
        return unconditional + guidance * (conditional - unconditional)

    @property
    def guidance_interval(self) -> tuple[float, float] | None:
        return self._guidance_interval

    @guidance_interval.setter
    def guidance_interval(self, interval) -> None:
        # Checked whenever set: `evaluate --guidance-interval` sets it on a loaded model.
        self._guidance_interval = _checked_interval(interval)

    def _guidance_at(self, timestep, guidance):
        """w inside the guidance interval, 1 (the conditional prediction) outside."""
        low, high = self.guidance_interval
        alpha_bar = tf.gather(self.alphas_cumprod, timestep)
        sigma = tf.sqrt((1.0 - alpha_bar) / alpha_bar)
        inside = tf.logical_and(sigma > low, sigma <= high)
        return tf.where(inside, tf.cast(guidance, tf.float32), 1.0)

    def denoise(self, noisy_images, timesteps, **conditions) -> tf.Tensor:
        """The EMA network's prediction (eps or v, as `prediction` says) for each row.

        `noisy_images` in the model's [-1, 1] scale at int timestep indices
        0..timesteps-1 (one for all rows, or one per row). A conditional model
        needs every head: a class name or index, or None for unconditioned.
        """
        noisy_images = inputs.checked_values(
            inputs.shaped_images(noisy_images, self.image_shape), "noisy_images"
        )
        count = noisy_images.shape[0]
        timesteps = tf.convert_to_tensor(timesteps, tf.int32)
        if timesteps.shape.rank == 0:
            timesteps = tf.fill([count], timesteps)
        elif timesteps.shape != (count,):
            raise ValueError(
                f"timesteps: give one for all {count} images or one per image, "
                f"got shape {tuple(timesteps.shape)}"
            )
        labels = self._row_labels(conditions, count)
        return self._denoise(noisy_images, self._checked_timesteps(timesteps), labels)

    def _denoise(self, noisy_images, timesteps, labels):
        return self._network_output(self.ema_denoiser, noisy_images, timesteps, labels)

    def call(self, call_inputs, training=False):
        """The EMA network's eps or v for (noisy images, timesteps[, labels])."""
        noisy, timesteps, *labels = call_inputs
        labels = labels[0] if labels else None
        return self._network_output(self.ema_denoiser, noisy, timesteps, labels)

    # --- Sampling -------------------------------------------------------------------

    def generate(
        self,
        num_samples: int,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: str = "ddim",
        eta: float = 0.0,
        **conditions,
    ) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1]; the same seed gives the same images.

        steps: sampling steps (default `sampling_steps`), 1..timesteps.
        guidance: the scale w (default `guidance`); 0 samples unconditionally.
        sampler: "ddim" (eta 0 is deterministic given the seed; eta 1 is as noisy
            as DDPM) or "ddpm", Ho et al.'s ancestral sampler over `steps` evenly
            spread timesteps (steps=timesteps for the original).
        Conditions as the shared contract takes them (a class name or index per
        head, for every sample or one per sample); a head left out cycles
        through its classes, as in every family; a head given as None is
        unconditioned (its null class), so guidance acts on the named heads only.
        """
        self.require(base.SAMPLES, "generate images")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if guidance is not None and not self.conditions:
            raise ValueError(
                "guidance needs a conditional model; this one has no conditions"
            )
        steps = (
            self.sampling_steps
            if steps is None
            else _checked_steps(steps, self.timesteps)
        )
        guidance = self.guidance if guidance is None else guidance
        _check_sampler(sampler, eta, guidance)
        labels = self._cycled_labels(conditions, int(num_samples))
        return self._sample(
            int(num_samples), seed, labels, steps, guidance, sampler, eta
        )

    def preview(self, images=None, labels=None) -> dict:
        """PREVIEW_SAMPLES samples in PREVIEW_STEPS DDIM steps, the same seed every epoch."""
        steps = min(PREVIEW_STEPS, self.timesteps)
        samples = self.generate(
            base.PREVIEW_SAMPLES, seed=base.PREVIEW_SEED, steps=steps
        )
        return {"samples": (samples, None)}

    def _sample(
        self,
        num_samples,
        seed,
        labels,
        steps=None,
        guidance=None,
        sampler="ddim",
        eta=0.0,
    ) -> tf.Tensor:
        """Images in [0, 1] from checked arguments; tensors allowed (the signature).

        x_T is drawn for every sample at once from (seed, 0). Eagerly the loop
        runs SAMPLING_BATCH_SIZE rows at a time, as one cached graph per (sampler,
        guided), chunk c's step k drawing its noise from (seed, c (T + 1) + k + 1);
        in a graph (the signature) all rows are chunk 0. So a seed gives the same
        images either way, for stochastic samplers up to SAMPLING_BATCH_SIZE
        samples. A conditional model is guided (two passes a step) unless the
        guidance is exactly 0 (every row unconditioned) or 1 (the conditional pass
        alone).
        """
        steps = self.sampling_steps if steps is None else steps
        guidance = self.guidance if guidance is None else guidance
        if labels is None:
            labels = tf.zeros([num_samples, 0], tf.int32)
        guided = bool(self.conditions)
        if guided and isinstance(guidance, (int, float)) and guidance in (0, 1):
            guided = False
            if guidance == 0:
                labels = tf.tile(self.null_labels[None], [num_samples, 1])
        if seed is None:  # fresh noise, from TensorFlow's global generator
            seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        seed = tf.cast(seed, tf.int64)
        shape = tf.concat([[tf.cast(num_samples, tf.int32)], self.image_shape], 0)
        start = tf.random.stateless_normal(shape, seed=tf.stack([seed, 0]))
        labels = tf.cast(labels, tf.int32)
        options = (
            tf.cast(steps, tf.int32),
            tf.cast(guidance, tf.float32),
            tf.cast(eta, tf.float32),
        )
        if not tf.executing_eagerly():
            first = tf.constant(0, tf.int64)
            return self._sampling_loop(
                start, labels, seed, first, *options, sampler=sampler, guided=guided
            )
        loop = self._graphs.get(self, sampler, guided)
        rows = SAMPLING_BATCH_SIZE
        return tf.concat(
            [
                loop(start[i : i + rows], labels[i : i + rows], seed, chunk, *options)
                for chunk, i in enumerate(range(0, int(num_samples), rows))
            ],
            axis=0,
        )

    def _sampling_loop(
        self, start, labels, seed, chunk, steps, guidance, eta, sampler, guided
    ) -> tf.Tensor:
        """From noise x_T to images in `steps` updates (see `_sample` for the seeds)."""
        shape = tf.shape(start)
        streams = tf.cast(chunk, tf.int64) * (self.timesteps + 1) + 1

        def update(step, noisy):
            timestep = sampling_timesteps(step, steps, self.timesteps)
            previous = sampling_timesteps(step - 1, steps, self.timesteps)
            alpha_bar = tf.gather(self.alphas_cumprod, timestep)
            previous_alpha_bar = tf.where(
                previous >= 0,
                tf.gather(self.alphas_cumprod, tf.maximum(previous, 0)),
                1.0,
            )
            output = self._guided_output(noisy, timestep, labels, guidance, guided)
            _, image = noise_and_image(noisy, output, alpha_bar, self.prediction)
            image = tf.clip_by_value(image, -1.0, 1.0)  # x_0 lies in the data's range
            draw = tf.random.stateless_normal(
                shape, seed=tf.stack([seed, streams + tf.cast(step, tf.int64)])
            )
            if sampler == "ddpm":
                noisy = ddpm_update(noisy, image, alpha_bar, previous_alpha_bar, draw)
            else:
                noisy = ddim_update(
                    noisy, image, alpha_bar, previous_alpha_bar, eta, draw
                )
            return step - 1, noisy

        _, images = tf.while_loop(
            lambda step, _: step >= 0,
            update,
            (steps - 1, start),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, *self.image_shape]),
            ),
        )
        return tf.clip_by_value((images + 1.0) / 2.0, 0.0, 1.0)

    # --- Labels ---------------------------------------------------------------------

    def _split_conditions(self, conditions: dict) -> tuple:
        """(heads given None, the other requests), unknown heads refused."""
        if not self.conditions:
            self._labels(conditions, 0)  # the shared refusal: no conditions
            return [], {}
        unknown = set(conditions) - set(self.conditions)
        if unknown:
            raise ValueError(
                f"unknown condition {sorted(unknown)}; this model takes "
                f"{list(self.conditions)}"
            )
        unconditioned = [head for head, value in conditions.items() if value is None]
        return unconditioned, {h: v for h, v in conditions.items() if v is not None}

    def _cycled_labels(self, conditions: dict, count: int):
        """generate's labels: heads left out cycle, heads given None are null."""
        unconditioned, requested = self._split_conditions(conditions)
        return self._with_null_heads(
            conditioning.cycled_labels, unconditioned, requested, count
        )

    def _row_labels(self, conditions: dict, count: int):
        """Per-row labels: every head named (None for unconditioned)."""
        unconditioned, requested = self._split_conditions(conditions)
        return self._with_null_heads(
            conditioning.row_labels, unconditioned, requested, count
        )

    def _with_null_heads(self, make, unconditioned, requested, count):
        if not self.conditions:
            return None
        named = {h: n for h, n in self.conditions.items() if h not in unconditioned}
        made = make(count, named, requested) if named else None
        columns, position = [], 0
        for head, names in self.conditions.items():
            if head in unconditioned:
                columns.append(tf.fill([count], len(names)))
            else:
                columns.append(made[:, position])
                position += 1
        return tf.stack(columns, axis=1)

    def _checked_labels_or_null(self, labels, count=None) -> tf.Tensor:
        """Labels int32 (batch, heads), each a class index or the head's null index."""
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise ValueError(
                f"labels must be integer class indices, got {labels.dtype}"
            )
        labels = tf.cast(labels, tf.int32)
        sizes = [len(names) for names in self.conditions.values()]
        if labels.shape.rank != 2 or labels.shape[-1] != len(sizes):
            raise ValueError(
                f"expected labels of shape (batch, {len(sizes)}), one column per head "
                f"({', '.join(self.conditions)}), got {tuple(labels.shape)}"
            )
        ranges = ", ".join(
            f"{head} 0..{size} ({size}: unconditioned)"
            for head, size in zip(self.conditions, sizes)
        )
        message = f"labels out of range; valid: {ranges}"
        if tf.executing_eagerly():
            values = labels.numpy()
            if ((values < 0) | (values > np.array(sizes))).any():
                raise ValueError(message)
            if count is not None and values.shape[0] != int(count):
                raise ValueError(
                    f"got {values.shape[0]} labels for {int(count)} inputs"
                )
            return labels
        checks = [
            tf.debugging.assert_non_negative(labels, message=message),
            tf.debugging.assert_less_equal(labels, tf.constant(sizes), message=message),
        ]
        if count is not None:
            checks.append(
                tf.debugging.assert_equal(
                    tf.shape(labels)[0],
                    tf.cast(count, tf.int32),
                    message="the batch needs one row of labels per input",
                )
            )
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def _checked_timesteps(self, timesteps) -> tf.Tensor:
        message = f"timesteps must be from 0 to {self.timesteps - 1}"
        return _in_range(timesteps, 0, self.timesteps - 1, message)

    # --- Export ---------------------------------------------------------------------

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "denoise": one evaluation of the EMA network, (noisy_images in [-1, 1],
        timesteps int32 (batch,)[, labels int32 (batch, heads), null index allowed])
        -> predicted_noise (or predicted_velocity): a client can run its own sampler.
        It is the first, so also `serving_default`, and the one TFLite holds.
        "sample": (num_samples, seed, steps[, labels (heads,), guidance]) -> images,
        the deterministic DDIM loop as one graph, equal to generate's.
        """
        return {"denoise": self._denoise_endpoint(), "sample": self._sample_endpoint()}

    def _denoise_endpoint(self) -> tuple:
        output = (
            "predicted_noise" if self.prediction == "epsilon" else "predicted_velocity"
        )
        signature = [
            tf.TensorSpec([None, *self.image_shape], tf.float32, name="noisy_images"),
            tf.TensorSpec([None], tf.int32, name="timesteps"),
        ]
        if self.conditions:
            heads = len(self.conditions)
            signature.append(tf.TensorSpec([None, heads], tf.int32, name="labels"))

        def denoise(noisy_images, timesteps, labels=None):
            noisy_images = inputs.checked_values(
                inputs.shaped_images(noisy_images, self.image_shape), "noisy_images"
            )
            count = tf.shape(noisy_images)[0]
            if labels is not None:
                labels = self._checked_labels_or_null(labels, count)
            timesteps = self._checked_timesteps(timesteps)
            return {output: self._denoise(noisy_images, timesteps, labels)}

        return denoise, signature

    def _sample_endpoint(self) -> tuple:
        signature = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="steps"),
        ]
        if self.conditions:
            heads = len(self.conditions)
            signature += [
                tf.TensorSpec([heads], tf.int32, name="labels"),
                tf.TensorSpec([], tf.float32, name="guidance"),
            ]

        def sample(num_samples, seed, steps, labels=None, guidance=None):
            num_samples = base._bounded(num_samples)  # the shared bound and words
            steps = _in_range(
                steps, 1, self.timesteps, f"steps must be from 1 to {self.timesteps}"
            )
            if labels is not None:
                labels = self._checked_labels_or_null(labels[None])
                labels = tf.tile(labels, [num_samples, 1])
                guidance = tf.convert_to_tensor(guidance, tf.float32)
                guidance = inputs.checked_values(guidance[None], "guidance")[0]
            images = self._sample(num_samples, seed, labels, steps, guidance)
            return {"images": images}

        return sample, signature


class _Graphs:
    """The sampling loops `generate` runs, one tf.function per (sampler, guided,
    guidance interval): the interval is read when a loop is traced.

    Held in a plain object, not as model attributes, so that Keras and SavedModel
    export do not track or save them.
    """

    def __init__(self):
        self.functions = {}

    def get(self, model: Diffusion, sampler: str, guided: bool):
        key = (sampler, guided, model.guidance_interval)
        if key not in self.functions:
            heads = len(model.conditions)
            self.functions[key] = tf.function(
                lambda *arguments: model._sampling_loop(
                    *arguments, sampler=sampler, guided=guided
                ),
                input_signature=[
                    tf.TensorSpec([None, *model.image_shape], tf.float32),
                    tf.TensorSpec([None, heads], tf.int32),
                    tf.TensorSpec([], tf.int64),
                    tf.TensorSpec([], tf.int64),
                    tf.TensorSpec([], tf.int32),
                    tf.TensorSpec([], tf.float32),
                    tf.TensorSpec([], tf.float32),
                ],
            )
        return self.functions[key]


def _checked_steps(steps, timesteps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= timesteps:
        raise ValueError(
            f"steps must be an integer from 1 to {timesteps} (the model's timesteps), "
            f"got {steps!r}"
        )
    return int(steps)


def _checked_interval(interval) -> tuple[float, float] | None:
    """The guidance interval as a tuple, or None; refused unless 0 <= low < high."""
    if interval is None:
        return None
    try:
        low, high = (float(bound) for bound in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"guidance_interval must be None or two noise levels (low, high), got "
            f"{interval!r}"
        ) from None
    if not (math.isfinite(high) and 0 <= low < high):
        raise ValueError(
            f"guidance_interval must have 0 <= low < high, both finite, got {interval!r}"
        )
    return low, high


def _check_sampler(sampler, eta, guidance) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    if sampler == "ddpm" and eta != 0.0:
        raise ValueError("eta applies to sampler='ddim'; DDPM's noise is fixed")
    if not math.isfinite(float(guidance)):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")


def _in_range(values, low: int, high: int, message: str) -> tf.Tensor:
    """Integer `values` (a scalar or a vector) if every one is in [low, high].

    Eagerly a ValueError; in a graph an assertion with the same words.
    """
    values = tf.convert_to_tensor(values)
    if tf.executing_eagerly():
        array = values.numpy()
        if ((array < low) | (array > high)).any():
            raise ValueError(f"{message}, got {array.tolist()}")
        return values
    checks = [
        tf.debugging.assert_greater_equal(
            values, tf.cast(low, values.dtype), message=message
        ),
        tf.debugging.assert_less_equal(
            values, tf.cast(high, values.dtype), message=message
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(values)
