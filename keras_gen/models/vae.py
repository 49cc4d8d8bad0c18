"""Convolutional variational autoencoder (Kingma and Welling, 2014) with TFP distributions."""

from typing import ClassVar

import tensorflow as tf
import tensorflow_probability as tfp

from keras_gen import losses, privacy
from keras_gen.models import base, inputs, networks, noise

tfd = tfp.distributions

LIKELIHOODS = ("bernoulli", "gaussian", "discretized_gaussian")
# The smallest pixel scale of the discretized Gaussian, in [0, 1] units (a quarter
# of a level): a pixel's mass can near 1 on its level, never a point mass.
MIN_PIXEL_SCALE = 1e-3
# The top level of an 8-bit pixel: levels 0 to 255, stored in [0, 1] as level / 255.
TOP_LEVEL = 255.0
# network -> (encoder builder, decoder builder), each (image_shape, widths, latent_dim).
NETWORKS = {
    "convolutional": (networks.build_encoder, networks.build_decoder),
    "mlp": (networks.build_mlp_encoder, networks.build_mlp_decoder),
    "residual": (networks.build_residual_encoder, networks.build_residual_decoder),
}
# Importance samples K of negative_log_likelihood's default: what evaluate reports.
IMPORTANCE_SAMPLES = 100
# Images negative_log_likelihood decodes at once (importance samples x rows):
# its memory bound.
DECODED_AT_ONCE = 1000
# Metropolis-within-Gibbs sweeps of `inpaint`.
INPAINTING_ITERATIONS = 100


@base.family
class VAE(base.LatentFamily):
    """Variational autoencoder whose posterior, prior and likelihood are TFP distributions.

    The loss is E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z)) in nats per image,
    with the KL from `tfd.kl_divergence`: the negative ELBO when beta is 1.
    `score` is the negative ELBO whatever beta trained the model, since only it
    bounds -log p(x). Trains on images in [0, 1]. A conditional variant
    changes the hooks `_build_networks`, `_encoder_inputs` and `_decoder_inputs`.

    Args:
        image_shape: (height, width, channels); for the convolutional network,
            height and width divisible by 2 ** len(filters).
        latent_dim: size of z.
        filters: widths of the encoder's hidden layers (the decoder mirrors them):
            stride-2 convolutions, or Dense layers with network="mlp".
        likelihood: "bernoulli" for binarized images; "discretized_gaussian" for
            8-bit ones (each level gets the mass a Gaussian puts on its bin, its
            mean and scale decoded per pixel, so -log p(x) is a code length,
            comparable in bits/dim with discrete models'); "gaussian" for
            continuous ones, a density with one learned pixel scale (trained on
            that density; `negative_log_likelihood` bins it to 8-bit levels).
        beta: weight of the KL term; beta > 1 is a beta-VAE (Higgins et al. 2017).
        network: "convolutional"; "residual", the same with a residual block of
            two 3x3 convolutions at each resolution (a deeper decoder, for
            likelihood); or "mlp" for fully connected layers with LeakyReLU (the
            articles' VAE).
        dp_clip: train by DP-SGD (`keras_gen.privacy`): each example's gradient
            clipped to this norm. None trains as usual.
        dp_noise: DP-SGD's noise multiplier: Gaussian noise of standard deviation
            dp_noise * dp_clip added to the summed clipped gradients.
        training_samples: K posterior samples per image in training. K = 1 trains
            the ELBO; K > 1 the importance-weighted bound (IWAE, Burda et al.
            2016), tighter and closer to the reported likelihood, at K decoder
            passes per image. Its loss is that bound, and test_step's too.
        seed: fixes the training noise: step t draws the same noise on any number
            of replicas; evaluation always uses the same noise.

    Example:
        model = keras_gen.VAE(latent_dim=16)
        model.compile(optimizer="adam")
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=10)
        nats = model.score(images)  # per-example negative ELBO
    """

    capabilities: ClassVar[frozenset[str]] = base.LatentFamily.capabilities | {
        base.LIKELIHOOD,
        base.RECONSTRUCTION,
        base.INPAINTING,
    }
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape", "filters")

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        latent_dim: int = 16,
        filters: tuple[int, ...] = (32, 64),
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        seed: int = 0,
        network: str = "convolutional",
        dp_clip: float | None = None,
        dp_noise: float = 0.0,
        training_samples: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_privacy(dp_clip, dp_noise)
        _check_training_samples(training_samples, dp_clip)
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}"
            )
        if network not in NETWORKS:
            raise ValueError(
                f"network must be one of {tuple(NETWORKS)}, got {network!r}"
            )
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.filters = tuple(filters)
        self.likelihood = likelihood
        self.beta = beta
        self.seed = seed
        self.network = network
        self.dp_clip = dp_clip
        self.dp_noise = dp_noise
        self.training_samples = training_samples
        self.encoder, self.decoder = self._build_networks()
        if likelihood == "gaussian":
            self.log_scale = self.add_weight(
                shape=(), initializer="zeros", name="log_scale"
            )
        self.trackers = base.mean_trackers("loss", "reconstruction_loss", "kl_loss")
        self.build()

    def _build_networks(self) -> tuple:
        """The encoder and decoder; a conditional subclass widens their inputs."""
        build_encoder, build_decoder = NETWORKS[self.network]
        return (
            build_encoder(self.image_shape, self.filters, self.latent_dim),
            build_decoder(self._decoded_shape, self.filters, self.latent_dim),
        )

    @property
    def _decoded_shape(self) -> tuple[int, int, int]:
        """The decoder's output: a parameter per pixel, two (mean and scale) for
        the discretized Gaussian."""
        height, width, channels = self.image_shape
        per_pixel = 2 if self.likelihood == "discretized_gaussian" else 1
        return height, width, channels * per_pixel

    def _encoder_inputs(self, images, labels):
        """What the encoder reads; a conditional subclass adds its labels."""
        return images

    def _decoder_inputs(self, latents, labels):
        """What the decoder reads; a conditional subclass adds its labels."""
        return latents

    @property
    def likelihood_bound(self) -> str:
        """How negative_log_likelihood bounds -log p(x), for metric names."""
        bound = f"IWAE K={IMPORTANCE_SAMPLES}"
        binned = ", Gaussian pixels binned to 8-bit levels"
        return bound + (binned if self.likelihood == "gaussian" else "")

    @property
    def prior(self) -> tfd.Distribution:
        return tfd.Independent(
            tfd.Normal(tf.zeros(self.latent_dim), tf.ones(self.latent_dim)),
            reinterpreted_batch_ndims=1,
        )

    def encode(self, images, **conditions) -> tfd.Distribution:
        """The approximate posterior q(z|x): a diagonal Gaussian per image in [0, 1]."""
        images = self._checked_images(images)
        return self._posterior(images, labels=self._labels(conditions, len(images)))

    def reconstruct(self, images, **conditions) -> tf.Tensor:
        """Decode the posterior mean of each image in [0, 1]."""
        images = self._checked_images(images)
        return self._reconstruct(images, self._labels(conditions, len(images)))

    def score(self, images, seed: int | None = None, **conditions) -> tf.Tensor:
        """Per-example negative ELBO in nats (one posterior sample, analytic KL).

        With seed=None it uses the evaluation noise, so for training_samples=1 the
        mean over a batch is exactly `evaluate`'s reconstruction_loss + kl_loss
        (its loss too when beta is 1; a beta-VAE's loss weights the KL by beta).
        """
        images = self._checked_images(images)
        return self._score(images, self._labels(conditions, len(images)), seed)

    def negative_log_likelihood(
        self,
        images,
        num_samples: int = IMPORTANCE_SAMPLES,
        seed: int = 0,
        **conditions,
    ) -> tf.Tensor:
        """Per-example -log p(x) in nats, importance-weighted with K posterior samples.

        The IWAE bound (Burda et al. 2016): it tightens towards -log p(x) as K grows,
        and K = 1 is the ELBO. A conditional model needs every head per image.
        A Gaussian likelihood scores the images' 8-bit levels, each given the mass
        its Normal puts on the level's bin: a code length, comparable in bits/dim
        with discrete models', where the density's nats could fall below zero.
        """
        images = self._checked_images(images)
        labels = self._labels(conditions, len(images))
        draws = tf.random.stateless_normal(
            [num_samples, tf.shape(images)[0], self.latent_dim], seed=(seed, 1)
        )

        def nats(images, labels, draws):  # draws (rows, K, latent_dim)
            draws = tf.transpose(draws, [1, 0, 2])
            log_weights = self._importance_log_weights(images, draws, labels)
            return -(
                tf.reduce_logsumexp(log_weights, axis=0)
                - tf.math.log(float(num_samples))
            )

        # A few images at a time: all 100 draws of 100 cvae_faces images at once
        # peaked at 20.8 GB of memory, 1,000 decoded images at a time at 2.3 GB.
        rows = max(1, DECODED_AT_ONCE // num_samples)
        return inputs.in_batches(
            nats, images, labels, tf.transpose(draws, [1, 0, 2]), batch_size=rows
        )

    def inpaint(
        self,
        images,
        missing,
        seed: int = 0,
        iterations: int = INPAINTING_ITERATIONS,
        **conditions,
    ) -> tf.Tensor:
        """`images` with their `missing` pixels (1 = missing) filled in, in [0, 1].

        Metropolis-within-Gibbs (Mattei and Frellsen 2018): alternately a latent
        from q(z|x) accepted or refused by the importance ratio, which makes the
        chain target p(z, x_missing | x_observed) exactly, and the missing pixels
        drawn from p(x|z). Filled pixels are p(x|z)'s mean at the last latent.
        """
        images = self._checked_images(images)
        missing = inputs.shaped_images(tf.cast(missing, tf.float32), self.image_shape)
        missing = tf.cast(missing > 0, tf.float32)
        labels = self._labels(conditions, len(images))
        latents = self.prior.sample(len(images), seed=(seed, 2))
        current = images * (1 - missing) + self._decode(latents, labels) * missing
        for step in range(iterations):
            latents, current = self._inpainting_step(
                images, missing, current, latents, labels, tf.constant([seed, step])
            )
        return images * (1 - missing) + self._decode(latents, labels) * missing

    @tf.function
    def _inpainting_step(self, images, missing, current, latents, labels, seed):
        """One Metropolis-within-Gibbs sweep: a latent, then the missing pixels."""
        posterior = self._posterior(current, labels=labels)
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 3)
        proposal = posterior.sample(seed=seeds[0])

        def log_weight(z):
            likelihood = self._likelihood_distribution(z, labels).log_prob(current)
            return likelihood + self.prior.log_prob(z) - posterior.log_prob(z)

        log_ratio = log_weight(proposal) - log_weight(latents)
        uniform = tf.random.stateless_uniform(tf.shape(log_ratio), seeds[1])
        accept = tf.math.log(uniform)
        latents = tf.where((accept < log_ratio)[:, None], proposal, latents)
        drawn = self._likelihood_distribution(latents, labels).sample(seed=seeds[2])
        return latents, images * (1 - missing) + drawn * missing

    def preview(self, images=None, labels=None) -> dict:
        """The samples, and the reconstructions of `images` beside them, one pair a column."""
        shown = super().preview()
        if images is not None:
            images = self._checked_images(images)
            labels = self._checked_labels(labels, len(images))
            pairs = tf.concat([images, self._reconstruct(images, labels)], 0)
            shown["reconstructions"] = (pairs, len(images))
        return shown

    def call(self, inputs, training=False):
        """Reconstructions of images (a conditional VAE: of (images, labels))."""
        images, labels = self._call_inputs(inputs)
        images = self._checked_images(images)
        return self._reconstruct(images, labels)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        A conditional model's take labels int32 (batch, heads) beside their images
        or latents, but "sample", whose `labels` (heads,) is one combination for
        every sample. The first is also `serving_default`.
        """
        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")

        def encode(images, labels):
            posterior = self._posterior(self._checked_images(images), labels=labels)
            return {"mean": posterior.mean(), "stddev": posterior.stddev()}

        def reconstruct(images, labels):
            return {"images": self._reconstruct(self._checked_images(images), labels)}

        def score(images, labels):
            return {"negative_elbo": self._score(self._checked_images(images), labels)}

        return {
            "decode": self._decode_endpoint(),
            "encode": self._endpoint(encode, images),
            "reconstruct": self._endpoint(reconstruct, images),
            "score": self._endpoint(score, images),
            "sample": self._sample_endpoint(),
        }

    def _checked_images(self, images):
        """What users pass: the right shape, a row at least, pixels in [0, 1]."""
        return inputs.checked_images(images, self.image_shape)

    def _posterior(self, images, training=False, labels=None) -> tfd.Distribution:
        """q(z|x) without `encode`'s value checks: training steps stay free of
        assertions, and callers that checked the images do not check twice."""
        images = inputs.shaped_images(images, self.image_shape)
        encoder_inputs = self._encoder_inputs(images, labels)
        outputs = self.encoder(encoder_inputs, training=training)
        mean, raw_scale = tf.split(outputs, 2, axis=-1)
        return tfd.Independent(
            tfd.Normal(mean, tf.nn.softplus(raw_scale) + 1e-5),
            reinterpreted_batch_ndims=1,
        )

    def _likelihood_distribution(self, latents, labels, training=False, levels=False):
        """p(x|z), one distribution over whole images per latent. With `levels`, a
        Gaussian likelihood gives the mass its Normal puts on each 8-bit level's
        bin instead of its density (the other likelihoods are discrete already)."""
        outputs = self.decoder(self._decoder_inputs(latents, labels), training=training)
        if self.likelihood == "bernoulli":
            pixels = tfd.Bernoulli(logits=outputs, dtype=tf.float32)
        elif self.likelihood == "discretized_gaussian":
            means, raw_scales = tf.split(outputs, 2, axis=-1)
            scales = tf.nn.softplus(raw_scales) + MIN_PIXEL_SCALE
            return EightBitImages(tf.sigmoid(means), scales)
        elif levels:
            return EightBitImages(tf.sigmoid(outputs), tf.exp(self.log_scale))
        else:
            pixels = tfd.Normal(tf.sigmoid(outputs), tf.exp(self.log_scale))
        return tfd.Independent(pixels, reinterpreted_batch_ndims=3)

    def _decode(self, latents, labels) -> tf.Tensor:
        """Images in [0, 1]: p(x|z)'s mean, or an 8-bit likelihood's likeliest levels."""
        likelihood = self._likelihood_distribution(latents, labels)
        if isinstance(likelihood, EightBitImages):
            return likelihood.mode()
        return tf.clip_by_value(likelihood.mean(), 0.0, 1.0)

    def _reconstruct(self, images, labels) -> tf.Tensor:
        return self._decode(self._posterior(images, labels=labels).mean(), labels)

    def _score(self, images, labels, seed=None) -> tf.Tensor:
        seed = self._evaluation_seed() if seed is None else noise.step_seed(seed, -1, 0)
        reconstruction, kl = self._negative_elbo_terms(images, seed, False, labels)
        return reconstruction + kl

    def _importance_log_weights(self, images, draws, labels=None):
        """log P(x|z_k) + log p(z_k) - log q(z_k|x) for z_k = mu + sigma * noise[k],
        x's 8-bit levels scored by a Gaussian likelihood's mass on their bins."""
        log_likelihood, log_ratio, _ = self._importance_terms(
            images, draws, labels, levels=True
        )
        return log_likelihood + log_ratio

    def _importance_terms(
        self, images, draws, labels=None, training=False, levels=False
    ):
        """log p(x|z_k), log p(z_k) - log q(z_k|x), each (K, batch), and KL(q || p)
        per example, for z_k = mu + sigma * draws[k] (`levels`: as
        _likelihood_distribution's)."""
        posterior = self._posterior(images, training=training, labels=labels)
        # (K, batch, latent_dim)
        latents = posterior.mean() + posterior.stddev() * draws
        samples, batch = tf.shape(draws)[0], tf.shape(draws)[1]
        flat = tf.reshape(latents, [-1, self.latent_dim])
        repeated_labels = None if labels is None else tf.tile(labels, [samples, 1])
        likelihood = self._likelihood_distribution(
            flat, repeated_labels, training, levels
        )
        repeated = tf.tile(images, [samples, 1, 1, 1])
        log_likelihood = tf.reshape(likelihood.log_prob(repeated), [samples, batch])
        log_ratio = self.prior.log_prob(latents) - posterior.log_prob(latents)
        return log_likelihood, log_ratio, self._kl(posterior, latents[0])

    def _importance_weighted_terms(self, images, seed, training, labels=None):
        """The IWAE bound with K = training_samples, and the mean -log p(x|z_k) and
        the KL it is tracked with, per example."""
        draws = noise.replica_normal(
            tf.shape(images)[0], [self.training_samples, self.latent_dim], seed
        )
        log_likelihood, log_ratio, kl = self._importance_terms(
            images, tf.transpose(draws, [1, 0, 2]), labels, training
        )
        log_weights = log_likelihood + self.beta * log_ratio
        bound = -(
            tf.reduce_logsumexp(log_weights, axis=0)
            - tf.math.log(float(self.training_samples))
        )
        return bound, -tf.reduce_mean(log_likelihood, axis=0), kl

    def _evaluation_seed(self):
        return noise.step_seed(self.seed, -1, 0)

    def _negative_elbo_terms(self, images, seed, training, labels=None):
        # Reparameterised sample, drawn from noise shared out across replicas.
        epsilon = noise.replica_normal(tf.shape(images)[0], [self.latent_dim], seed)
        return self._negative_elbo_terms_at(images, epsilon, training, labels)

    def _negative_elbo_terms_at(self, images, epsilon, training, labels=None):
        """(reconstruction, KL) per example, the latents drawn with noise `epsilon`."""
        posterior = self._posterior(images, training=training, labels=labels)
        latents = posterior.mean() + posterior.stddev() * epsilon
        reconstruction = -self._likelihood_distribution(
            latents, labels, training=training
        ).log_prob(images)
        return reconstruction, self._kl(posterior, latents)

    def _kl(self, posterior, latents):
        """KL(q(z|x) || p(z)) per example, analytic; a prior with no closed-form KL
        (MixturePriorVAE's mixture) estimates it at the reparameterised `latents`."""
        return tfd.kl_divergence(posterior, self.prior)

    def train_step(self, data):
        images, labels = self._batch(data)
        step = self.optimizer.iterations
        if self.training_samples > 1:
            return self._importance_weighted_step(images, labels, step)
        # Negative ELBO with one reparameterised posterior sample; one update.
        epsilon = noise.replica_normal(
            tf.shape(images)[0], [self.latent_dim], noise.step_seed(self.seed, step, 0)
        )
        if self.dp_clip is not None:
            return self._private_step(images, epsilon, labels, step)
        with tf.GradientTape() as tape:
            reconstruction, kl = self._negative_elbo_terms_at(
                images, epsilon, training=True, labels=labels
            )
            loss = losses.average_over_global_batch(reconstruction + self.beta * kl)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track_terms(reconstruction, kl)

    def _importance_weighted_step(self, images, labels, step):
        """One update on the IWAE bound (Burda et al. 2016)."""
        seed = noise.step_seed(self.seed, step, 0)
        with tf.GradientTape() as tape:
            bound, reconstruction, kl = self._importance_weighted_terms(
                images, seed, True, labels
            )
            loss = losses.average_over_global_batch(bound)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track(loss=bound, reconstruction_loss=reconstruction, kl_loss=kl)

    def _private_step(self, images, epsilon, labels, step):
        """A DP-SGD update: each example's gradient clipped, then noised (privacy.py)."""

        def example_loss(example):
            image, noise_row, *label = (row[None] for row in example)
            terms = self._negative_elbo_terms_at(
                image, noise_row, True, label[0] if label else None
            )
            return (terms[0] + self.beta * terms[1])[0]

        examples = (images, epsilon) + (() if labels is None else (labels,))
        weights = self.trainable_variables
        gradients = privacy.private_gradients(
            example_loss,
            examples,
            weights,
            self.dp_clip,
            self.dp_noise,
            noise.step_seed(self.seed, step, 1),
        )
        self.optimizer.apply_gradients(zip(gradients, weights))
        reconstruction, kl = self._negative_elbo_terms_at(
            images, epsilon, False, labels
        )
        return self._track_terms(reconstruction, kl)

    def test_step(self, data):
        images, labels = self._batch(data)
        if self.training_samples > 1:
            bound, reconstruction, kl = self._importance_weighted_terms(
                images, self._evaluation_seed(), False, labels
            )
            return self._track(
                loss=bound, reconstruction_loss=reconstruction, kl_loss=kl
            )
        reconstruction, kl = self._negative_elbo_terms(
            images, self._evaluation_seed(), training=False, labels=labels
        )
        return self._track_terms(reconstruction, kl)

    def _track_terms(self, reconstruction, kl):
        return self._track(
            loss=reconstruction + self.beta * kl,
            reconstruction_loss=reconstruction,
            kl_loss=kl,
        )


class EightBitImages:
    """p(x|z) over 8-bit images: each pixel's level gets the mass that its
    Normal(mean, scale) puts on the level's bin of width 1 / 255 (the edge bins
    take the tails), so log_prob is a log-probability, not a density.

    Images are in [0, 1] as level / 255; log_prob scores the nearest levels.
    """

    def __init__(self, means, scales):
        # Level k is ceil(X) for X ~ Normal(255 * mean - 0.5, 255 * scale): the
        # mass of Normal(mean, scale) on [(k - 0.5) / 255, (k + 0.5) / 255].
        levels = tfd.QuantizedDistribution(
            tfd.Normal(TOP_LEVEL * means - 0.5, TOP_LEVEL * scales),
            low=0.0,
            high=TOP_LEVEL,
        )
        self._levels = tfd.Independent(levels, reinterpreted_batch_ndims=3)
        self._means = means

    def log_prob(self, images) -> tf.Tensor:
        """log p(x) in nats per image."""
        return self._levels.log_prob(tf.round(images * TOP_LEVEL))

    def sample(self, seed=None) -> tf.Tensor:
        return self._levels.sample(seed=seed) / TOP_LEVEL

    def mode(self) -> tf.Tensor:
        """The likeliest image: each pixel the level nearest its mean (in (0, 1))."""
        return tf.round(self._means * TOP_LEVEL) / TOP_LEVEL


def _check_training_samples(training_samples, dp_clip) -> None:
    """K posterior samples: a positive integer, and 1 under DP-SGD (whose
    per-example gradients are those of the ELBO)."""
    if not isinstance(training_samples, int) or training_samples < 1:
        raise ValueError(
            f"training_samples must be a positive integer, got {training_samples!r}"
        )
    if training_samples > 1 and dp_clip is not None:
        raise ValueError(
            "training_samples > 1 (the IWAE bound) cannot train by DP-SGD: "
            "use training_samples=1 with dp_clip"
        )


def _check_privacy(dp_clip, dp_noise) -> None:
    """DP-SGD's settings: a positive clip norm, and noise only with clipping."""
    if dp_clip is not None and not dp_clip > 0:
        raise ValueError(f"dp_clip must be a positive gradient norm, got {dp_clip!r}")
    if not dp_noise >= 0:
        raise ValueError(f"dp_noise must be at least 0, got {dp_noise!r}")
    if dp_noise and dp_clip is None:
        raise ValueError(
            "dp_noise needs dp_clip: DP-SGD's noise is scaled to the clip norm"
        )
