"""Convolutional variational autoencoder (Kingma and Welling, 2014) with TFP distributions."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_gen import losses
from keras_gen.models import base

tfd = tfp.distributions

LIKELIHOODS = ("bernoulli", "gaussian")


def build_encoder(image_shape, filters, latent_dim: int) -> keras.Sequential:
    """Images -> 2 * latent_dim numbers: the posterior's mean and raw scale."""
    layers = [keras.Input(image_shape)]
    for width in filters:
        layers.append(
            keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")
        )
    # float32 outputs under a mixed-precision policy: they parameterise distributions.
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(2 * latent_dim, dtype="float32"),
    ]
    return keras.Sequential(layers, name="encoder")


def build_decoder(image_shape, filters, latent_dim: int) -> keras.Sequential:
    """Latents -> per-pixel parameters (Bernoulli logits or Gaussian means)."""
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    if height % scale or width % scale:
        raise ValueError(
            f"image_shape {tuple(image_shape)} must be divisible by 2**len(filters) = {scale}"
        )
    layers = [
        keras.Input((latent_dim,)),
        keras.layers.Dense(
            height // scale * width // scale * filters[-1], activation="relu"
        ),
        keras.layers.Reshape((height // scale, width // scale, filters[-1])),
    ]
    for width_ in reversed(filters):
        layers.append(
            keras.layers.Conv2DTranspose(
                width_, 3, strides=2, padding="same", activation="relu"
            )
        )
    layers.append(keras.layers.Conv2D(channels, 3, padding="same", dtype="float32"))
    return keras.Sequential(layers, name="decoder")


@keras.saving.register_keras_serializable(package="keras_gen")
class VAE(base.TupleConfig, keras.Model):
    """Variational autoencoder whose posterior, prior and likelihood are TFP distributions.

    The loss is the negative ELBO in nats per image,
    E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z)), with the KL from
    `tfd.kl_divergence`. Trains on images in [0, 1].

    Args:
        image_shape: (height, width, channels); height and width divisible by
            2 ** len(filters).
        latent_dim: size of z.
        filters: widths of the encoder's stride-2 convolutions (the decoder mirrors them).
        likelihood: "bernoulli" for binarized images, "gaussian" for continuous
            ones (the pixel scale is learned).
        beta: weight of the KL term; beta > 1 is a beta-VAE (Higgins et al. 2017).
        seed: fixes the training noise: step t draws the same noise on any number
            of replicas; evaluation always uses the same noise.

    Example:
        model = keras_gen.VAE(latent_dim=16)
        model.compile(optimizer="adam")
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=10)
        nats = model.score(images)  # per-example negative ELBO
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        latent_dim: int = 16,
        filters: tuple[int, ...] = (32, 64),
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}"
            )
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.filters = tuple(filters)
        self.likelihood = likelihood
        self.beta = beta
        self.seed = seed
        self.encoder, self.decoder = self._build_networks()
        if likelihood == "gaussian":
            self.log_scale = self.add_weight(
                shape=(), initializer="zeros", name="log_scale"
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.build()

    def build(self, input_shape=None):
        # encoder and decoder are built on creation; fit never calls the model itself.
        self.built = True

    def _build_networks(self):
        """The encoder and decoder; a conditional subclass widens their inputs."""
        return (
            build_encoder(self.image_shape, self.filters, self.latent_dim),
            build_decoder(self.image_shape, self.filters, self.latent_dim),
        )

    def _encoder_inputs(self, images, labels):
        """What the encoder reads; a conditional subclass adds its labels."""
        self._refuse_labels(labels)
        return images

    def _decoder_inputs(self, latents, labels):
        """What the decoder reads; a conditional subclass adds its labels."""
        self._refuse_labels(labels)
        return latents

    def _batch(self, data):
        """(images, labels) of a training batch; this model ignores labels it carries."""
        return base.images(data), None

    def _refuse_labels(self, labels):
        if labels is not None:
            raise ValueError(
                f"{type(self).__name__} is unconditional and takes no labels; "
                "ConditionalVAE is the VAE that does"
            )

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "filters": self.filters,
            "likelihood": self.likelihood,
            "beta": self.beta,
            "seed": self.seed,
        }

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    @property
    def prior(self) -> tfd.Distribution:
        return tfd.Independent(
            tfd.Normal(tf.zeros(self.latent_dim), tf.ones(self.latent_dim)),
            reinterpreted_batch_ndims=1,
        )

    def encode(self, images, training=False, *, labels=None) -> tfd.Distribution:
        """The approximate posterior q(z|x): a diagonal Gaussian per image in [0, 1]."""
        return self._posterior(
            self._checked_pixels(images), training=training, labels=labels
        )

    def _posterior(self, images, training=False, labels=None) -> tfd.Distribution:
        """q(z|x) without `encode`'s value checks: training steps stay free of
        assertions, and callers that checked the images do not check twice."""
        images = self._check_images(images)
        inputs = self._encoder_inputs(images, labels)
        mean, raw_scale = tf.split(self.encoder(inputs, training=training), 2, axis=-1)
        return tfd.Independent(
            tfd.Normal(mean, tf.nn.softplus(raw_scale) + 1e-5),
            reinterpreted_batch_ndims=1,
        )

    def likelihood_distribution(
        self, latents, training=False, *, labels=None
    ) -> tfd.Distribution:
        """p(x|z), one distribution over whole images per latent."""
        outputs = self.decoder(self._decoder_inputs(latents, labels), training=training)
        if self.likelihood == "bernoulli":
            pixels = tfd.Bernoulli(logits=outputs, dtype=tf.float32)
        else:
            pixels = tfd.Normal(tf.sigmoid(outputs), tf.exp(self.log_scale))
        return tfd.Independent(pixels, reinterpreted_batch_ndims=3)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        The first is also `serving_default`.
        """
        latents = tf.TensorSpec([None, self.latent_dim], tf.float32, name="latents")
        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")

        def encode(images):
            posterior = self.encode(images)
            return {"mean": posterior.mean(), "stddev": posterior.stddev()}

        return {
            "decode": (lambda latents: {"images": self.decode(latents)}, [latents]),
            "encode": (encode, [images]),
            "reconstruct": (
                lambda images: {"images": self.reconstruct(images)},
                [images],
            ),
            "score": (lambda images: {"negative_elbo": self.score(images)}, [images]),
            "sample": base.sample_endpoint(self.latent_dim, self.decode),
        }

    def decode(self, latents, *, labels=None) -> tf.Tensor:
        """Mean images in [0, 1] for the given latents."""
        latents = base.checked_latents(latents, self.latent_dim)
        likelihood = self.likelihood_distribution(latents, labels=labels)
        return tf.clip_by_value(likelihood.mean(), 0.0, 1.0)

    def reconstruct(self, images, *, labels=None) -> tf.Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encode(images, labels=labels).mean(), labels=labels)

    def call(self, images, training=False):
        return self.reconstruct(images)

    def generate(self, num_samples: int, seed: int | None = None) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1] decoded from prior samples."""
        latents = base.standard_normal(num_samples, self.latent_dim, seed)
        return base.in_batches(self.decode, latents)

    def score(self, images, seed: int | None = None, *, labels=None) -> tf.Tensor:
        """Per-example negative ELBO in nats (one posterior sample, analytic KL).

        With seed=None it uses the evaluation noise, so the mean over a batch is
        exactly what `evaluate` reports for that batch.
        """
        images = self._checked_pixels(images)
        seed = self._evaluation_seed() if seed is None else base.step_seed(seed, -1, 0)
        reconstruction, kl = self._negative_elbo_terms(
            images, seed, training=False, labels=labels
        )
        return reconstruction + self.beta * kl

    def negative_log_likelihood(
        self, images, num_samples: int = 100, seed: int = 0, *, labels=None
    ) -> tf.Tensor:
        """Per-example -log p(x) in nats, importance-weighted with K posterior samples.

        The IWAE bound (Burda et al. 2016): it tightens towards -log p(x) as K grows,
        and K = 1 is the ELBO.
        """
        images = self._checked_pixels(images)
        noise = tf.random.stateless_normal(
            [num_samples, tf.shape(images)[0], self.latent_dim], seed=(seed, 1)
        )
        log_weights = self._importance_log_weights(images, noise, labels=labels)
        return -(
            tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(float(num_samples))
        )

    def _importance_log_weights(self, images, noise, labels=None):
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k = mu + sigma * noise[k]."""
        posterior = self._posterior(images, labels=labels)
        latents = (
            posterior.mean() + posterior.stddev() * noise
        )  # (K, batch, latent_dim)
        samples, batch = tf.shape(noise)[0], tf.shape(noise)[1]
        flat = tf.reshape(latents, [-1, self.latent_dim])
        repeated_labels = None if labels is None else tf.tile(labels, [samples, 1])
        likelihood = self.likelihood_distribution(flat, labels=repeated_labels)
        repeated = tf.tile(images, [samples, 1, 1, 1])
        log_likelihood = tf.reshape(likelihood.log_prob(repeated), [samples, batch])
        return (
            log_likelihood + self.prior.log_prob(latents) - posterior.log_prob(latents)
        )

    def _evaluation_seed(self):
        return base.step_seed(self.seed, -1, 0)

    def _negative_elbo_terms(self, images, seed, training, labels=None):
        posterior = self._posterior(images, training=training, labels=labels)
        noise = base.replica_normal(tf.shape(images)[0], [self.latent_dim], seed)
        # Reparameterised sample, drawn from noise shared out across replicas.
        latents = posterior.mean() + posterior.stddev() * noise
        reconstruction = -self.likelihood_distribution(
            latents, training=training, labels=labels
        ).log_prob(images)
        kl = tfd.kl_divergence(posterior, self.prior)
        return reconstruction, kl

    def train_step(self, data):
        images, labels = self._batch(data)
        # Negative ELBO with one reparameterised posterior sample; one update.
        with tf.GradientTape() as tape:
            seed = base.step_seed(self.seed, self.optimizer.iterations, 0)
            reconstruction, kl = self._negative_elbo_terms(
                images, seed, training=True, labels=labels
            )
            loss = losses.average_over_global_batch(reconstruction + self.beta * kl)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track(reconstruction, kl)

    def test_step(self, data):
        images, labels = self._batch(data)
        reconstruction, kl = self._negative_elbo_terms(
            images, self._evaluation_seed(), training=False, labels=labels
        )
        return self._track(reconstruction, kl)

    def _track(self, reconstruction, kl):
        self.loss_tracker.update_state(reconstruction + self.beta * kl)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return base.logs(self.metrics)

    def _check_images(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(images.shape)}"
            )
        return images

    def _checked_pixels(self, images):
        """What users pass: the right shape, a row at least, pixels in [0, 1]."""
        return base.checked_pixels(self._check_images(images))
