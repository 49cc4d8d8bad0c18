"""Gaussian mixtures: pure E- and M-step functions, a layer holding a mixture and its
epoch's EM statistics, and the GaussianMixture family over flattened images.

EM here sums every batch's E-step statistics over the epoch (across replicas too)
and runs the M-step once, when the epoch ends: an epoch is one iteration of batch
EM, as sklearn.mixture.GaussianMixture runs it, whatever the batch size or the
number of replicas. MixturePriorVAE fits its prior with the same `Mixture` layer.
"""

from typing import ClassVar, NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_gen import losses
from keras_gen.models import base, inputs

tfd = tfp.distributions

COVARIANCES = ("full", "diagonal")
FIT_METHODS = ("em", "gradient")
# The statistics are summed and the M-step computed in float64: it subtracts
# mean mean^T from E[x x^T], and in float32 that cancellation leaves errors larger
# than a 1e-6 regularization, enough to break the Cholesky of 784 x 784 covariances.
STATISTICS_DTYPE = tf.float64


class Statistics(NamedTuple):
    """Sufficient statistics of points under a mixture, each summed over the points."""

    counts: tf.Tensor  # (K,): responsibilities
    sums: tf.Tensor  # (K, D): responsibility-weighted x
    squares: tf.Tensor  # (K, D, D): weighted x x^T (full), or (K, D): weighted x^2
    log_likelihood: tf.Tensor  # (): log p(x), what EM raises (the M-step needs none)


def mixture_density(logits, means, scales, covariance: str) -> tfd.MixtureSameFamily:
    """The density sum_k softmax(logits)_k N(x; means_k, S_k S_k^T) of vectors x.

    `scales` are the lower-triangular factors S_k (K, D, D) of full covariances
    (their upper triangles are ignored), or the standard deviations (K, D) of
    diagonal ones.
    """
    if covariance == "full":
        components = tfd.MultivariateNormalTriL(
            loc=means, scale_tril=tf.linalg.band_part(scales, -1, 0)
        )
    else:
        components = tfd.MultivariateNormalDiag(loc=means, scale_diag=scales)
    return tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)


def responsibilities(density: tfd.MixtureSameFamily, points) -> tuple:
    """The E-step: p(component k | x) (N, K) and log p(x) (N,) of points (N, D)."""
    joint = density.components_distribution.log_prob(
        points[:, None, :]
    ) + tf.nn.log_softmax(density.mixture_distribution.logits_parameter())
    log_likelihood = tf.reduce_logsumexp(joint, axis=1)
    return tf.exp(joint - log_likelihood[:, None]), log_likelihood


def sufficient_statistics(
    points, weights, log_likelihood, covariance: str
) -> Statistics:
    """The Statistics of points (N, D) given their responsibilities `weights` (N, K).

    Sums, so that those of every batch and replica add up to the epoch's.
    """
    x = tf.cast(points, STATISTICS_DTYPE)
    weights = tf.cast(weights, STATISTICS_DTYPE)
    weighted = weights[:, :, None] * x[:, None, :]  # (N, K, D)
    if covariance == "full":
        squares = tf.einsum("nkd,ne->kde", weighted, x)
    else:
        squares = tf.einsum("nkd,nd->kd", weighted, x)
    return Statistics(
        counts=tf.reduce_sum(weights, axis=0),
        sums=tf.reduce_sum(weighted, axis=0),
        squares=squares,
        log_likelihood=tf.reduce_sum(tf.cast(log_likelihood, STATISTICS_DTYPE)),
    )


def maximization(
    statistics: Statistics, covariance: str, regularization: float
) -> tuple:
    """The M-step: (logits, means, scales) maximising the expected log-likelihood.

    As sklearn's: weights N_k / N, weighted means, weighted covariances with
    `regularization` added to their diagonals (reg_covar), and 10 machine epsilons
    added to each N_k so that an empty component stays finite. Scales are the
    Cholesky factors (full) or standard deviations (diagonal) `mixture_density` takes.
    """
    counts = statistics.counts + 10 * np.finfo(np.float64).eps
    logits = tf.math.log(counts / tf.reduce_sum(counts))
    means = statistics.sums / counts[:, None]
    if covariance == "diagonal":
        variances = statistics.squares / counts[:, None] - tf.square(means)
        return logits, means, tf.sqrt(tf.maximum(variances, 0.0) + regularization)
    second = statistics.squares / counts[:, None, None]
    covariances = second - means[:, :, None] * means[:, None, :]
    covariances = 0.5 * (covariances + tf.linalg.matrix_transpose(covariances))
    identity = tf.eye(tf.shape(means)[1], dtype=means.dtype)
    return logits, means, tf.linalg.cholesky(covariances + regularization * identity)


def spread_means(means, scales, covariance: str, seed: int) -> tf.Tensor:
    """Each mean moved by one draw from its own Gaussian, deterministically for `seed`.

    The initialisation: after a first M-step with equal responsibilities every
    component is the one Gaussian fitted to all the data; drawing each mean from
    it breaks the symmetry at the data's own location and scale.
    """
    noise = tf.random.stateless_normal(tf.shape(means), (seed, 0), dtype=means.dtype)
    if covariance == "diagonal":
        return means + scales * noise
    return means + tf.einsum("kde,ke->kd", scales, noise)


def count_step(optimizer: keras.optimizers.Optimizer, variables: list) -> None:
    """Count a training step that applied no gradients (an EM step), as
    apply_gradients counts one.

    keras_gen counts steps in optimizer iterations (`training.step`): checkpoints
    resume and noise is keyed by them, so an EM model is compiled with an optimizer
    that only counts. It is built for `variables` on the first step, as
    apply_gradients builds it, so a saved model's optimizer reloads like any other.
    """
    if not optimizer.built:
        optimizer.build(variables)
    optimizer.iterations.assign_add(1)


class Mixture(keras.layers.Layer):
    """A Gaussian mixture's parameters, and the EM statistics of the epoch so far, as weights.

    The parameters are trainable, so gradient descent can fit them too: logits,
    means, and the covariances' Cholesky factors S_k as the logs of their diagonals
    (`log_scales`: standard deviations if diagonal) and, if full, their lower
    triangles (`scale_off_diagonal`, its diagonal unused). In log space no step
    makes a diagonal cross zero: a pixel that never varies has 1e-3 there.

    The statistics are mirrored variables with aggregation "sum": each replica's
    assign_add adds its share to every copy, so all hold the sums over the global
    batches; as weights they are checkpointed, so a run resumed mid-epoch keeps
    its epoch's statistics.

    Until the first M-step, all K components are N(0, I) and `observe` counts every
    point 1/K towards each, so that M-step fits one Gaussian to all the data;
    `spread_means` then draws the K means from it.
    """

    def __init__(
        self,
        components: int,
        dimension: int,
        covariance: str = "full",
        regularization: float = 1e-6,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.components, self.dimension = components, dimension
        self.covariance, self.regularization = covariance, regularization
        self.seed = seed
        self.logits = self.add_weight((components,), "zeros", name="logits")
        self.means = self.add_weight((components, dimension), "zeros", name="means")
        self.log_scales = self.add_weight(
            (components, dimension), "zeros", name="log_scales"
        )
        if covariance == "full":
            self.scale_off_diagonal = self.add_weight(
                (components, dimension, dimension), "zeros", name="scale_off_diagonal"
            )
        # 1 once the first M-step (or set_parameters) has set the parameters.
        self.initialized = self.add_weight(
            (), "zeros", dtype="int32", trainable=False, name="initialized"
        )
        self.epoch_statistics = Statistics(
            *(
                self.add_weight(
                    shape,
                    "zeros",
                    dtype=STATISTICS_DTYPE,
                    trainable=False,
                    aggregation="sum",
                    autocast=False,
                    name=f"epoch_{name}",
                )
                for name, shape in zip(Statistics._fields, self._statistics_shapes())
            )
        )
        self.built = True

    def _statistics_shapes(self) -> tuple:
        k, d = self.components, self.dimension
        squares = (k, d, d) if self.covariance == "full" else (k, d)
        return (k,), (k, d), squares, ()

    def get_config(self):
        return {
            **super().get_config(),
            "components": self.components,
            "dimension": self.dimension,
            "covariance": self.covariance,
            "regularization": self.regularization,
            "seed": self.seed,
        }

    def density(self) -> tfd.MixtureSameFamily:
        """The mixture with the current parameters, a TFP distribution over (D,) vectors."""
        return mixture_density(self.logits, self.means, self.scales(), self.covariance)

    def scales(self) -> tf.Tensor:
        """Cholesky factors (K, D, D) of full covariances, or standard deviations (K, D)."""
        if self.covariance == "diagonal":
            return tf.exp(self.log_scales)
        lower = tf.linalg.band_part(self.scale_off_diagonal, -1, 0)
        return tf.linalg.set_diag(lower, tf.exp(self.log_scales))

    def is_initialized(self) -> tf.Tensor:
        """Whether the parameters have been set (by a first M-step or set_parameters)."""
        return self.initialized > 0

    def observe(self, points, until_initialized: bool = False) -> tf.Tensor:
        """The E-step of a batch (N, D): log p(x) per point; its statistics are added
        to the epoch's. With `until_initialized` (gradient descent, which needs
        them only for the initialisation) they are added only before it."""
        posterior, log_likelihood = responsibilities(self.density(), points)

        def gathered():
            weights = tf.where(self.is_initialized(), posterior, 1.0 / self.components)
            return sufficient_statistics(
                points, weights, log_likelihood, self.covariance
            )

        if until_initialized:
            statistics = tf.cond(self.is_initialized(), self._no_statistics, gathered)
        else:
            statistics = gathered()
        for total, value in zip(self.epoch_statistics, statistics):
            # Keras 3's Variable.assign_add is assign(total + value), under which
            # aggregation "sum" would add up every replica's copy of the total
            # too (on 2 replicas it doubles each step); tf.Variable's own
            # assign_add sums only the values.
            total.value.assign_add(value)
        return log_likelihood

    def _no_statistics(self) -> Statistics:
        return Statistics(
            *(tf.zeros(s, STATISTICS_DTYPE) for s in self._statistics_shapes())
        )

    def maximize(self) -> None:
        """The M-step from the epoch's statistics, which are then zeroed; eager only.

        Nothing happens if the epoch gathered nothing (gradient descent after the
        initialisation). The first M-step initialises (see the class docstring).
        """
        totals = Statistics(*(tf.convert_to_tensor(v) for v in self.epoch_statistics))
        if not float(tf.reduce_sum(totals.counts)) > 0:
            return
        try:
            logits, means, scales = maximization(
                totals, self.covariance, self.regularization
            )
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(
                "the M-step's covariances are not positive definite "
                f"({error.message.splitlines()[0]}); raise the regularization "
                f"(now {self.regularization}) or use fewer components"
            ) from None
        if not bool(self.is_initialized()):
            means = spread_means(means, scales, self.covariance, self.seed)
        self._assign(logits, means, scales)

    def set_parameters(self, weights, means, covariances) -> None:
        """Start from given parameters: weights (K,), means (K, D), and covariances
        (K, D, D), or variances (K, D) if diagonal (sklearn's weights_, means_,
        covariances_). The epoch's statistics are zeroed."""
        weights = tf.convert_to_tensor(weights, STATISTICS_DTYPE)
        covariances = tf.convert_to_tensor(covariances, STATISTICS_DTYPE)
        if self.covariance == "full":
            scales = tf.linalg.cholesky(covariances)
        else:
            scales = tf.sqrt(covariances)
        self._assign(tf.math.log(weights), means, scales)

    def _assign(self, logits, means, scales) -> None:
        self.logits.assign(tf.cast(logits, self.logits.dtype))
        self.means.assign(tf.cast(means, self.means.dtype))
        scales = tf.cast(scales, self.log_scales.dtype)
        if self.covariance == "full":
            self.scale_off_diagonal.assign(scales)
            scales = tf.linalg.diag_part(scales)
        self.log_scales.assign(tf.math.log(scales))
        self.initialized.assign(1)
        for total in self.epoch_statistics:
            total.assign(tf.zeros_like(total))

    def sample(self, num_samples, seed) -> tf.Tensor:
        """(num_samples, D) draws: reproducible for a seed, fresh for None.

        TFP takes a pair of int32 as a stateless seed: the pair is drawn from the
        int64 `seed` (a tensor in the exported signature) rather than cast from it,
        so large seeds do not wrap onto small ones.
        """
        if seed is not None:
            seed = tf.random.stateless_uniform(
                [2], (seed, 0), minval=None, maxval=None, dtype=tf.int32
            )
        return self.density().sample(num_samples, seed=seed)


class EpochMaximization(keras.callbacks.Callback):
    """Runs a Mixture's M-step when fit ends an epoch.

    At the end of the epoch's last batch when fit knows how many there are, so that
    a callback after it that checkpoints at that step (keras-gen train's) saves the
    new parameters and zeroed statistics; at the end of the epoch otherwise. An
    epoch stopped early keeps its statistics for the run that resumes it.
    """

    def __init__(self, mixture: Mixture):
        super().__init__()
        self.mixture = mixture

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if steps is not None and batch + 1 >= steps:
            self.mixture.maximize()

    def on_epoch_end(self, epoch, logs=None):
        if self.params.get("steps") is None:
            self.mixture.maximize()


class MaximizesEachEpoch:
    """A mixin for a model that keeps its `mixture`: fit runs the M-step as each
    epoch ends (`EpochMaximization` first, before any callback that checkpoints),
    and draws come from one compiled function."""

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        **kwargs,
    ):
        """keras.Model.fit, with the mixture's M-step at the end of every epoch."""
        callbacks = [EpochMaximization(self.mixture), *(callbacks or [])]
        return super().fit(x, y, batch_size, epochs, verbose, callbacks, **kwargs)

    def _mixture_draws(self, num_samples, seed) -> tf.Tensor:
        """The mixture's (num_samples, D) draws. Eagerly, TFP builds the mixture and
        its sampler op by op on every call: 300 ms for the 16-pixel mixture of the
        tests, against 2 ms for its compiled function (one trace per model)."""
        count = tf.convert_to_tensor(num_samples, tf.int32)
        seed = None if seed is None else tf.convert_to_tensor(seed, tf.int64)
        return self._compiled("_draw")(count, seed)

    def _draw(self, count, seed) -> tf.Tensor:
        return self.mixture.sample(count, seed)


@base.family
class GaussianMixture(MaximizesEachEpoch, base.Family):
    """A mixture of Gaussians over flattened images: the classical density baseline.

    p(x) = sum_k pi_k N(x; mu_k, Sigma_k), x the image's H*W*C pixels as a vector.
    Its log-likelihood is exact, but of a continuous density: its nats are not
    comparable with those of a model of discrete pixels (PixelCNN, a Bernoulli VAE).

    fit_method="em" runs expectation-maximisation: each batch adds its E-step
    statistics, and the M-step runs when the epoch ends (fit adds the callback),
    so an epoch is one iteration of batch EM whatever the batch size or replicas.
    The compiled optimizer only counts steps. fit_method="gradient" minimises the
    mean negative log-likelihood with the compiled optimizer instead. Its steps
    must not exceed the smallest standard deviation (a pixel that never varies
    has sqrt(regularization) = 1e-3): with Adam, a learning rate of 1e-3 for
    diagonal covariances and 1e-4 for full ones (1e-3 diverges there).

    The first epoch of a fresh model initialises it, whichever the method: every
    image counts equally towards every component, the M-step fits one Gaussian to
    the data, and each mean is then drawn from it with `seed` (gradient descent
    steps nothing in that epoch). `initialize` sets given parameters instead.

    Args:
        image_shape: (height, width, channels) of the images.
        components: K, the number of Gaussians.
        covariance: "full" (each a D x D covariance) or "diagonal".
        fit_method: "em" or "gradient".
        regularization: added to every covariance's diagonal (sklearn's reg_covar).
        seed: fixes the initialisation.

    Example:
        model = keras_gen.GaussianMixture(image_shape=(8, 8, 1), components=10)
        model.compile(optimizer="adam")  # EM applies no gradients: it counts steps
        model.fit(images, batch_size=256, epochs=21)  # 1 initialisation + 20 EM
        nats = model.negative_log_likelihood(images)
    """

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {base.SAMPLES, base.LIKELIHOOD, base.PREVIEW}
    )
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape",)
    likelihood_bound: ClassVar[str] = "exact, continuous density"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        components: int = 10,
        covariance: str = "full",
        fit_method: str = "em",
        regularization: float = 1e-6,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_choice("covariance", covariance, COVARIANCES)
        _check_choice("fit_method", fit_method, FIT_METHODS)
        if components < 1 or regularization < 0:
            raise ValueError(
                "components must be at least 1 and regularization at least 0, got "
                f"{components} and {regularization}"
            )
        self.image_shape = tuple(image_shape)
        self.components, self.covariance = components, covariance
        self.fit_method, self.regularization = fit_method, regularization
        self.seed = seed
        dimension = int(np.prod(self.image_shape))
        self.mixture = Mixture(
            components, dimension, covariance, regularization, seed, name="mixture"
        )
        self.trackers = base.mean_trackers("negative_log_likelihood")
        self.build()

    def initialize(self, weights, means, covariances) -> None:
        """Start from given parameters (see `Mixture.set_parameters`), e.g. to
        compare with sklearn from the same initialisation."""
        self.mixture.set_parameters(weights, means, covariances)

    def negative_log_likelihood(self, images) -> tf.Tensor:
        """Per-image -log p(x) in nats, x the flattened pixels in [0, 1]."""
        images = inputs.checked_images(images, self.image_shape)
        return inputs.in_batches(self._compiled("_negative_log_likelihood"), images)

    def serving_endpoints(self) -> dict:
        """`score` (images -> negative_log_likelihood per image) and `sample`.

        The first is also `serving_default`.
        """

        def score(images, labels):
            images = inputs.checked_images(images, self.image_shape)
            return {"negative_log_likelihood": self._negative_log_likelihood(images)}

        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {
            "score": self._endpoint(score, images),
            "sample": self._sample_endpoint(),
        }

    def _sample(self, num_samples, seed, labels) -> tf.Tensor:
        points = self._mixture_draws(num_samples, seed)
        # A Gaussian puts mass outside [0, 1], where no pixel is: clipping makes
        # the draws images (what the density scores is the unclipped draw).
        images = tf.reshape(points, [-1, *self.image_shape])
        return tf.clip_by_value(images, 0.0, 1.0)

    def _points(self, images) -> tf.Tensor:
        """Images as the vectors (batch, H*W*C) the mixture models."""
        images = inputs.shaped_images(images, self.image_shape)
        return tf.reshape(images, [tf.shape(images)[0], self.mixture.dimension])

    def _negative_log_likelihood(self, images) -> tf.Tensor:
        return -self.mixture.density().log_prob(self._points(images))

    def train_step(self, data):
        points = self._points(inputs.images(data))
        if self.fit_method == "em":
            # The E-step: the batch's statistics join the epoch's, whose M-step
            # comes when it ends.
            log_likelihood = self.mixture.observe(points)
            count_step(self.optimizer, self.trainable_variables)
        else:
            log_likelihood = self._gradient_step(points)
        return self._track(negative_log_likelihood=-log_likelihood)

    def _gradient_step(self, points) -> tf.Tensor:
        """One optimizer step on the mean NLL of the global batch; log p(x) per point.

        Before the initialisation (the first epoch) its gradients are zero.
        """
        with tf.GradientTape() as tape:
            log_likelihood = self.mixture.observe(points, until_initialized=True)
            loss = losses.average_over_global_batch(-log_likelihood)
            loss = tf.where(self.mixture.is_initialized(), loss, 0.0)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return log_likelihood

    def test_step(self, data):
        points = self._points(inputs.images(data))
        log_likelihood = self.mixture.density().log_prob(points)
        return self._track(negative_log_likelihood=-log_likelihood)


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
