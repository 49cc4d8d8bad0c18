"""A VAE whose prior is a Gaussian mixture fitted to its latents after training:
ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic
Autoencoders")."""

from typing import ClassVar

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_gen.models import base, gaussian_mixture, inputs, noise, vae

tfd = tfp.distributions


@base.family
class MixturePriorVAE(gaussian_mixture.MaximizesEachEpoch, vae.VAE):
    """A trained VAE with a Gaussian mixture prior fitted by EM to its posterior means.

    A VAE's posteriors rarely fill its N(0, I) prior, so decoding prior draws
    lands in the holes between them; a mixture fitted to where the encoder puts
    the training images samples from there instead. Training is that ex-post stage
    only: the encoder and decoder stay frozen (`from_vae` copies them from a
    trained VAE), and each epoch is one EM iteration of the prior over the batch's
    posterior means (the `gaussian_mixture.Mixture` that GaussianMixture fits, with
    its first epoch initialising). Until then its components are all N(0, I): the
    VAE's own prior.

    Generation decodes latents drawn from the mixture. `negative_log_likelihood`
    is the VAE's IWAE bound with log p(z) from the mixture. The KL of the ELBO has
    no closed form for a mixture: it is estimated by log q(z|x) - log p(z) at the
    reparameterised latent, so `score` and the losses are single-sample estimates
    of the negative ELBO, not exact in the KL as the VAE's are.

    Args:
        prior_components: K, the mixture's components.
        prior_covariance: "full" or "diagonal" covariances.
        **kwargs: the VAE's arguments (image_shape, latent_dim, filters, ...).

    Example:
        model = keras_gen.MixturePriorVAE.from_vae(keras_gen.zoo.load("vae_mnist"))
        model.compile(optimizer="adam")  # EM applies no gradients: it counts steps
        model.fit(training_images, batch_size=500, epochs=21)
        digits = model.generate(16, seed=0)
    """

    made_by: ClassVar[str | None] = (
        "python tools/latent_mixture.py VAE_PRESET --output FOLDER, which fits the "
        "prior over the trained VAE's networks"
    )

    def __init__(
        self, prior_components: int = 10, prior_covariance: str = "full", **kwargs
    ):
        if prior_covariance not in gaussian_mixture.COVARIANCES:
            raise ValueError(
                f"prior_covariance must be one of {gaussian_mixture.COVARIANCES}, "
                f"got {prior_covariance!r}"
            )
        # Set before VAE.__init__, which creates the prior in _build_networks.
        self.prior_components = prior_components
        self.prior_covariance = prior_covariance
        super().__init__(**kwargs)
        self.encoder.trainable = self.decoder.trainable = False
        if self.likelihood == "gaussian":
            self.log_scale.trainable = False
        # The VAE's losses, and EM's objective: -log p(posterior mean) under the prior.
        self.trackers = {**self.trackers, self.prior_tracker.name: self.prior_tracker}

    def _build_networks(self) -> tuple:
        """The VAE's networks; with them the prior's mixture and tracker, as all
        state must exist before VAE.__init__ builds the model."""
        self.mixture = gaussian_mixture.Mixture(
            self.prior_components,
            self.latent_dim,
            self.prior_covariance,
            seed=self.seed,
            name="prior_mixture",
        )
        self.prior_tracker = keras.metrics.Mean(name="prior_negative_log_likelihood")
        return super()._build_networks()

    @classmethod
    def from_vae(
        cls,
        trained: vae.VAE,
        prior_components: int = 10,
        prior_covariance: str = "full",
    ) -> "MixturePriorVAE":
        """A MixturePriorVAE with `trained`'s config and networks, its prior unfitted."""
        if trained.can(base.CONDITIONS):
            raise ValueError(
                f"{type(trained).__name__} is conditional; MixturePriorVAE fits one "
                "prior for an unconditional VAE"
            )
        config = trained.get_config()
        model = cls(
            prior_components=prior_components,
            prior_covariance=prior_covariance,
            **{name: config[name] for name in vae.VAE.arguments()},
        )
        model.encoder.set_weights(trained.encoder.get_weights())
        model.decoder.set_weights(trained.decoder.get_weights())
        if trained.likelihood == "gaussian":
            model.log_scale.assign(trained.log_scale)
        return model

    @property
    def prior(self) -> tfd.Distribution:
        return self.mixture.density()

    def _sample(self, num_samples, seed, labels) -> tf.Tensor:
        latents = self._mixture_draws(num_samples, seed)
        return inputs.in_batches(self._compiled("_decode"), latents, labels)

    def _kl(self, posterior, latents):
        return posterior.log_prob(latents) - self.prior.log_prob(latents)

    def train_step(self, data):
        images, labels = self._batch(data)
        # 1. E-step of the prior on the posterior means (the M-step is the epoch
        # end's); the networks are not trained.
        means = self._posterior(images, labels=labels).mean()
        prior_log_likelihood = self.mixture.observe(means)
        # 2. The negative ELBO under the prior so far, for the logs only.
        seed = noise.step_seed(self.seed, self.optimizer.iterations, 0)
        reconstruction, kl = self._negative_elbo_terms(images, seed, False, labels)
        gaussian_mixture.count_step(self.optimizer, self.trainable_variables)
        return self._track_all(reconstruction, kl, prior_log_likelihood)

    def test_step(self, data):
        images, labels = self._batch(data)
        means = self._posterior(images, labels=labels).mean()
        reconstruction, kl = self._negative_elbo_terms(
            images, self._evaluation_seed(), False, labels
        )
        return self._track_all(reconstruction, kl, self.prior.log_prob(means))

    def _track_all(self, reconstruction, kl, prior_log_likelihood):
        self.prior_tracker.update_state(-prior_log_likelihood)
        return self._track_terms(reconstruction, kl)
