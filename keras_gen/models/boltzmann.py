"""Restricted Boltzmann machines (Smolensky 1986; Hinton 2002) and deep belief networks
(Hinton, Osindero and Teh 2006) of binary images.

`RBMLayer` holds one Bernoulli-Bernoulli RBM and its math: free energy, Gibbs
sampling, and persistent contrastive divergence (PCD, Tieleman 2008). The `RBM`
family trains one; the `DBN` family stacks several and trains them greedily, one
layer after another. Both run the same layer code.

Persistent chains under tf.distribute: each replica advances its own rows of the
chains with its own rows of the noise one device would draw, and the advanced rows
are all-gathered, so every replica stores all chains and 1 or N replicas take the
same steps.
"""

import functools
import hashlib
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, inputs, noise

# Annealed importance sampling (Salakhutdinov and Murray 2008): their 100 runs of
# 14,500 temperatures take about a minute for 784 x 500 on two CPU cores.
AIS_RUNS = 100
AIS_TEMPERATURES = 14500
# Pseudo-count of the chains' visible means that make AIS's base model: no pixel
# of the base is ever certainly on or off.
BASE_PSEUDO_COUNT = 0.5


class RBMLayer(keras.layers.Layer):
    """One Bernoulli-Bernoulli RBM: weights, biases and persistent chains.

    p(v, h) is proportional to exp(v.b + h.c + v W h) for binary v and h, so
    p(h_j = 1 | v) = sigmoid(v W_j + c_j) and p(v_i = 1 | h) = sigmoid(W_i h + b_i).
    The persistent chains (persistent_chains, visible_units) are weights that do not
    train: checkpoints hold them, so a resumed run continues the same chains.

    Every variable aggregates ONLY_FIRST_REPLICA: the only values assigned to them
    in a replica context (all-gathered chains, a DBN's frozen layers put back) are
    the same on every replica.

    Args:
        visible_units: size of v.
        hidden_units: size of h.
        persistent_chains: fantasy particles of PCD; they split evenly across replicas.
        seed: fixes the chains' random binary start.
    """

    def __init__(
        self,
        visible_units: int,
        hidden_units: int,
        persistent_chains: int,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.visible_units = visible_units
        self.hidden_units = hidden_units
        self.persistent_chains = persistent_chains
        self.seed = seed
        self.kernel = self._variable(
            (visible_units, hidden_units),
            keras.initializers.RandomNormal(stddev=0.01),  # Hinton's practical guide
            "kernel",
        )
        self.visible_bias = self._variable((visible_units,), "zeros", "visible_bias")
        self.hidden_bias = self._variable((hidden_units,), "zeros", "hidden_bias")
        self.chains = self._variable(
            (persistent_chains, visible_units),
            functools.partial(_random_binary, seed=(seed, 1)),
            "chains",
            trainable=False,
        )
        self.built = True

    def _variable(self, shape, initializer, name, trainable=True):
        return self.add_weight(
            shape=shape,
            initializer=initializer,
            name=name,
            trainable=trainable,
            aggregation="only_first_replica",
        )

    def hidden_probabilities(self, visible) -> tf.Tensor:
        """p(h_j = 1 | v) for rows of visible units."""
        return tf.sigmoid(tf.matmul(visible, self.kernel) + self.hidden_bias)

    def visible_probabilities(self, hidden) -> tf.Tensor:
        """p(v_i = 1 | h) for rows of hidden units."""
        return tf.sigmoid(
            tf.matmul(hidden, self.kernel, transpose_b=True) + self.visible_bias
        )

    def free_energy(self, visible) -> tf.Tensor:
        """F(v) = -v.b - sum_j softplus(v W_j + c_j), so that p(v) = exp(-F(v)) / Z."""
        hidden_inputs = tf.matmul(visible, self.kernel) + self.hidden_bias
        return -tf.linalg.matvec(visible, self.visible_bias) - tf.reduce_sum(
            tf.nn.softplus(hidden_inputs), axis=-1
        )

    def gibbs_step(self, visible, hidden_noise, visible_noise) -> tuple:
        """v -> h ~ p(h|v) -> v' ~ p(v'|h): (v' binary, p(v'|h)); a unit is on
        where its uniform noise is below its probability."""
        hidden = _bernoulli(self.hidden_probabilities(visible), hidden_noise)
        probabilities = self.visible_probabilities(hidden)
        return _bernoulli(probabilities, visible_noise), probabilities

    def sample_chain(self, visible, steps, seed) -> tuple:
        """`steps` Gibbs steps from `visible`: (the last v binary, its probabilities).

        Step s draws from the stateless seeds noise.step_seed(seed, s, 0 and 1), so
        the chain is a pure function of (visible, steps, seed).
        """
        shape = tf.shape(visible)

        def step(index, visible, probabilities):
            hidden_noise = tf.random.stateless_uniform(
                [shape[0], self.hidden_units], seed=noise.step_seed(seed, index, 0)
            )
            visible_noise = tf.random.stateless_uniform(
                shape, seed=noise.step_seed(seed, index, 1)
            )
            return index + 1, *self.gibbs_step(visible, hidden_noise, visible_noise)

        _, visible, probabilities = tf.while_loop(
            lambda index, *_: index < steps,
            step,
            (tf.constant(0), visible, tf.zeros_like(visible)),
        )
        return visible, probabilities

    def statistics(self, visible, chains) -> dict:
        """Per-row numbers to log: the batch's and the chains' free energies, and the
        reconstruction error of each row.

        The reconstruction error is the mean squared difference between v and the
        mean-field reconstruction p(v | h = p(h|v)): the classic monitor of RBM
        training, not its objective (a model can reconstruct well and sample badly).
        """
        reconstruction = self.visible_probabilities(self.hidden_probabilities(visible))
        return {
            "data_energy": self.free_energy(visible),
            "chain_energy": self.free_energy(chains),
            "reconstruction_error": tf.reduce_mean(
                tf.square(visible - reconstruction), axis=-1
            ),
        }

    def replica_chains(self) -> tf.Tensor:
        """This replica's rows of the chains: all of them on one device."""
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        if self.persistent_chains % replicas:
            raise ValueError(
                f"persistent_chains ({self.persistent_chains}) must split evenly "
                f"across the {replicas} replicas; use a multiple of {replicas}"
            )
        rows = self.persistent_chains // replicas
        replica = context.replica_id_in_sync_group if context else 0
        start = tf.cast(replica, tf.int32) * rows
        return self.chains[start : start + rows]

    def persistent_contrastive_divergence(
        self, visible, seed, step, gibbs_steps: int, scale_loss=None
    ) -> tuple:
        """One PCD-k update's ingredients, from this replica's rows of batch and chains.

        Returns (gradients of the trainable variables, this replica's chains advanced
        `gibbs_steps` Gibbs steps, statistics). The loss is mean F(batch) - mean
        F(chains) with both means over the global batch and all chains, so the
        replicas' summed gradients are one device's. Its gradient is PCD's: the
        data's statistics minus those of the model's samples.
        """
        chains = self.replica_chains()
        rows = self.persistent_chains // _replicas()
        hidden_noise = noise.replica_uniform(
            rows, [gibbs_steps, self.hidden_units], noise.step_seed(seed, step, 0)
        )
        visible_noise = noise.replica_uniform(
            rows, [gibbs_steps, self.visible_units], noise.step_seed(seed, step, 1)
        )
        for k in range(gibbs_steps):
            chains, _ = self.gibbs_step(chains, hidden_noise[:, k], visible_noise[:, k])
        negatives = tf.stop_gradient(chains)
        with tf.GradientTape() as tape:
            loss = losses.average_over_global_batch(
                self.free_energy(visible)
            ) - losses.average_over_global_batch(self.free_energy(negatives))
            if scale_loss is not None:
                loss = scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_variables)
        return gradients, chains, self.statistics(visible, negatives)

    def store_chains(self, rows) -> None:
        """Keep every replica's advanced rows, in replica order, as the chains."""
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            rows = context.all_gather(rows, axis=0)
        self.chains.assign(rows)


def _replicas() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context else 1


def _random_binary(shape, dtype=None, seed=(0, 0)):
    """Binary values, each on with probability 1/2, from a stateless seed."""
    uniform = tf.random.stateless_uniform(shape, seed=seed)
    return tf.cast(uniform < 0.5, dtype or "float32")


def _bernoulli(probabilities, uniform):
    """Binary units, each on where its uniform noise is below its probability."""
    return tf.cast(uniform < probabilities, probabilities.dtype)


def _mean_over_replicas(values) -> tf.Tensor:
    """The mean of `values` over every replica's rows (a scalar, equal everywhere)."""
    total = tf.reduce_sum(values)
    count = tf.cast(tf.size(values), values.dtype)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    return total / count


def _log_weight_increment(visible, hidden_inputs, bias_change, previous, beta):
    """log f_beta(v) - log f_previous(v) per row, in float64: 14,500 of them add up,
    and float32's rounding of each difference would add up with them."""
    visible = tf.cast(visible, tf.float64)
    hidden_inputs = tf.cast(hidden_inputs, tf.float64)
    return (beta - previous) * tf.linalg.matvec(visible, bias_change) + tf.reduce_sum(
        tf.nn.softplus(beta * hidden_inputs) - tf.nn.softplus(previous * hidden_inputs),
        axis=-1,
    )


class _BoltzmannFamily(base.Family):
    """What the RBM and DBN share: flat binary images in, Gibbs samples out, logs.

    A subclass keeps `image_shape` and writes `_sample_visible(num_samples, seed)`:
    visible probabilities (num_samples, pixels) from a Gibbs chain.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({base.SAMPLES, base.PREVIEW})

    @property
    def pixels(self) -> int:
        return int(np.prod(self.image_shape))

    def _flat(self, images) -> tf.Tensor:
        """Images (batch, *image_shape) as rows of visible units."""
        return tf.reshape(tf.cast(images, tf.float32), [-1, self.pixels])

    def _checked_flat(self, images) -> tf.Tensor:
        return self._flat(inputs.checked_images(images, self.image_shape))

    def _track_statistics(self, statistics: dict, **others) -> dict:
        """Log free_energy_gap = mean F(batch) - mean F(chains) and the reconstruction error.

        The gap is the loss whose gradient PCD follows, not a likelihood, and it has
        no target value; strongly negative, it says the data sit in low-energy
        regions the chains do not visit (they mix too slowly for the learning rate).
        """
        chain_energy = _mean_over_replicas(statistics["chain_energy"])
        return self._track(
            free_energy_gap=statistics["data_energy"] - chain_energy,
            reconstruction_error=statistics["reconstruction_error"],
            **others,
        )

    def _sample(self, num_samples, seed, labels) -> tf.Tensor:
        if seed is None:
            seed = tf.random.uniform([], maxval=2**62, dtype=tf.int64)
        return self._gibbs_samples(num_samples, seed)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def _gibbs_samples(self, num_samples, seed) -> tf.Tensor:
        """Images in [0, 1] from a chain started at random binary visible units.

        One traced function, so `generate` and the exported `sample` run the same
        graph and draw the same images.
        """
        visible = self._sample_visible(num_samples, seed)
        return tf.reshape(visible, [-1, *self.image_shape])

    def _sample_visible(self, num_samples, seed) -> tf.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no _sample_visible")

    @staticmethod
    def _random_start(num_samples, units, seed) -> tf.Tensor:
        """Random binary visible units where `generate`'s chains start."""
        return _random_binary([num_samples, units], seed=noise.step_seed(seed, -1, 0))


@base.family
class RBM(_BoltzmannFamily):
    """Bernoulli-Bernoulli restricted Boltzmann machine of binary images, trained by PCD.

    Training is persistent contrastive divergence (Tieleman 2008): the positive
    phase from the batch, the negative phase from `persistent_chains` fantasy
    particles advanced `gibbs_steps` Gibbs steps per update and kept between
    updates. The compiled optimizer follows the gradient of mean F(batch) -
    mean F(chains), logged as `free_energy_gap`; `reconstruction_error` is logged as
    the classic monitor, not the objective. `negative_log_likelihood` is F(x) + log Z
    with log Z estimated by annealed importance sampling.

    Args:
        image_shape: (height, width, channels); every pixel is one visible unit.
        hidden_units: number of binary hidden units.
        gibbs_steps: k of PCD-k, Gibbs steps per update.
        persistent_chains: fantasy particles; a multiple of the number of replicas.
        sampling_steps: Gibbs steps `generate` runs from a random binary start.
        ais_runs: AIS runs of `log_partition`'s default (what evaluate reports).
        ais_temperatures: AIS intermediate distributions, spaced as Salakhutdinov
            and Murray (2008) spaced their 14,500.
        seed: fixes the chains' start and the training noise: step t draws the same
            noise on any number of replicas.

    Example:
        model = keras_gen.RBM(hidden_units=500)
        model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5))
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=10)
        log_z = model.log_partition()  # AIS, once per set of weights
        nats = model.negative_log_likelihood(images)  # F(x) + log Z, per image
    """

    capabilities: ClassVar[frozenset[str]] = _BoltzmannFamily.capabilities | {
        base.LIKELIHOOD
    }
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape",)

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        hidden_units: int = 500,
        gibbs_steps: int = 1,
        persistent_chains: int = 100,
        sampling_steps: int = 1000,
        ais_runs: int = AIS_RUNS,
        ais_temperatures: int = AIS_TEMPERATURES,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_at_least(
            1,
            hidden_units=hidden_units,
            gibbs_steps=gibbs_steps,
            persistent_chains=persistent_chains,
            sampling_steps=sampling_steps,
            ais_runs=ais_runs,
        )
        _check_at_least(4, ais_temperatures=ais_temperatures)
        self.image_shape = tuple(image_shape)
        self.hidden_units = hidden_units
        self.gibbs_steps = gibbs_steps
        self.persistent_chains = persistent_chains
        self.sampling_steps = sampling_steps
        self.ais_runs = ais_runs
        self.ais_temperatures = ais_temperatures
        self.seed = seed
        self.rbm = RBMLayer(
            self.pixels, hidden_units, persistent_chains, seed=seed, name="rbm"
        )
        self.trackers = base.mean_trackers("free_energy_gap", "reconstruction_error")
        self._log_partition_cache = None
        self.build()

    @property
    def likelihood_bound(self) -> str:
        """How negative_log_likelihood's log Z is estimated, for metric names."""
        return f"AIS, {self.ais_runs} runs x {self.ais_temperatures} temperatures"

    def free_energy(self, images) -> tf.Tensor:
        """F(x) per image in nats: -log p(x) up to the constant log Z."""
        return self.rbm.free_energy(self._checked_flat(images))

    def log_partition(
        self,
        num_runs: int | None = None,
        num_temperatures: int | None = None,
        seed: int = 0,
    ) -> float:
        """log Z estimated by annealed importance sampling (Salakhutdinov and Murray 2008).

        Anneals from a base model with no weights, whose visible biases are the
        log-odds of the persistent chains' visible means (the model's own fantasy
        marginals, smoothed; Salakhutdinov and Murray used the data's), to this RBM.
        The estimate of Z is unbiased, so log Z tends to come out low and
        -log p(x) optimistic. Defaults: ais_runs and ais_temperatures. The result is
        kept for these weights and settings: calling again is free until they change.
        """
        runs = int(num_runs or self.ais_runs)
        temperatures = int(num_temperatures or self.ais_temperatures)
        _check_at_least(1, num_runs=runs)
        _check_at_least(4, num_temperatures=temperatures)
        key = (self._parameters_digest(), runs, temperatures, int(seed))
        if self._log_partition_cache is None or self._log_partition_cache[0] != key:
            value = self._annealed_log_partition(runs, temperatures, int(seed))
            self._log_partition_cache = (key, value)
        return self._log_partition_cache[1]

    def negative_log_likelihood(
        self,
        images,
        num_runs: int | None = None,
        num_temperatures: int | None = None,
        seed: int = 0,
    ) -> tf.Tensor:
        """-log p(x) = F(x) + log Z per image in nats, log Z from `log_partition`.

        Every image shares the one AIS estimate of log Z: its error shifts them all
        alike. For binary images; for others F(x) + log Z is not a likelihood.
        """
        free_energy = self.free_energy(images)
        return free_energy + self.log_partition(num_runs, num_temperatures, seed)

    def _parameters_digest(self) -> str:
        """sha256 of every value AIS reads: the weights, biases and chains."""
        digest = hashlib.sha256()
        for variable in self.rbm.weights:
            digest.update(np.asarray(variable).tobytes())
        return digest.hexdigest()

    def _annealed_log_partition(self, runs, temperatures, seed) -> float:
        chain_means = tf.reduce_mean(self.rbm.chains, axis=0)
        count = float(self.persistent_chains)
        base_rates = (chain_means * count + BASE_PSEUDO_COUNT) / (
            count + 2 * BASE_PSEUDO_COUNT
        )
        base_bias = tf.math.log(base_rates) - tf.math.log1p(-base_rates)
        betas = tf.constant(annealing_schedule(temperatures), tf.float64)
        log_weights = self._ais_log_weights(
            betas, base_bias, tf.constant(runs), tf.constant(seed, tf.int64)
        ).numpy()
        # log Z of the base model: its hidden units, unconnected, each count 2.
        base_log_partition = self.hidden_units * np.log(2.0) + float(
            tf.reduce_sum(tf.nn.softplus(base_bias))
        )
        log_mean_weight = np.logaddexp.reduce(log_weights) - np.log(runs)
        return float(base_log_partition + log_mean_weight)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float64),
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int64),
        ]
    )
    def _ais_log_weights(self, betas, base_bias, runs, seed) -> tf.Tensor:
        """log w of each AIS run: sum_k log f_k(v_k) - log f_{k-1}(v_k), in float64.

        f_beta(v) = exp((1 - beta) v.a + beta v.b) prod_j (1 + exp(beta (v W_j + c_j)))
        moves from the base model (a: base_bias; f_0 is its p* times 2^hidden) to
        exp(-F(v)) at beta = 1. v_1 is drawn from the base; v_{k+1} from v_k by one
        Gibbs step that leaves f_beta_k invariant.
        """
        rbm = self.rbm
        uniform = tf.random.stateless_uniform(
            [runs, rbm.visible_units], seed=noise.step_seed(seed, -1, 0)
        )
        visible = _bernoulli(tf.sigmoid(base_bias) + tf.zeros_like(uniform), uniform)
        bias_change = tf.cast(rbm.visible_bias - base_bias, tf.float64)

        def anneal(k, visible, log_weights):
            hidden_inputs = tf.matmul(visible, rbm.kernel) + rbm.hidden_bias
            log_weights += _log_weight_increment(
                visible, hidden_inputs, bias_change, betas[k - 1], betas[k]
            )
            beta = tf.cast(betas[k], tf.float32)
            visible = self._tempered_gibbs_step(hidden_inputs, beta, base_bias, seed, k)
            return k + 1, visible, log_weights

        _, _, log_weights = tf.while_loop(
            lambda k, *_: k < tf.shape(betas)[0],
            anneal,
            (tf.constant(1), visible, tf.zeros([runs], tf.float64)),
        )
        return log_weights

    def _tempered_gibbs_step(self, hidden_inputs, beta, base_bias, seed, k):
        """A new v from one Gibbs step that leaves f_beta invariant, given v W + c."""
        rbm = self.rbm
        hidden_noise = tf.random.stateless_uniform(
            tf.shape(hidden_inputs), seed=noise.step_seed(seed, k, 0)
        )
        hidden = _bernoulli(tf.sigmoid(beta * hidden_inputs), hidden_noise)
        visible_inputs = (1.0 - beta) * base_bias + beta * (
            tf.matmul(hidden, rbm.kernel, transpose_b=True) + rbm.visible_bias
        )
        visible_noise = tf.random.stateless_uniform(
            tf.shape(visible_inputs), seed=noise.step_seed(seed, k, 1)
        )
        return _bernoulli(tf.sigmoid(visible_inputs), visible_noise)

    def _sample_visible(self, num_samples, seed) -> tf.Tensor:
        start = self._random_start(num_samples, self.pixels, seed)
        _, probabilities = self.rbm.sample_chain(start, self.sampling_steps, seed)
        return probabilities

    def train_step(self, data):
        visible = self._flat(inputs.images(data))
        # 1. Positive phase from the batch; negative phase from this replica's rows
        # of the persistent chains, advanced gibbs_steps; the gradient of the gap.
        gradients, chains, statistics = self.rbm.persistent_contrastive_divergence(
            visible,
            self.seed,
            self.optimizer.iterations,
            self.gibbs_steps,
            scale_loss=self.optimizer.scale_loss,
        )
        # 2. Every replica's advanced rows become the chains, on every replica.
        self.rbm.store_chains(chains)
        # 3. One update of the weights and biases.
        weights = self.rbm.trainable_variables
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self._track_statistics(statistics)

    def test_step(self, data):
        visible = self._flat(inputs.images(data))
        return self._track_statistics(
            self.rbm.statistics(visible, self.rbm.replica_chains())
        )

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "free_energy" (also `serving_default`) gives F(x) per image: -log p(x) up to
        log Z, which a server can add once (see `log_partition`).
        """

        def free_energy(images, labels):
            return {"free_energy": self.free_energy(images)}

        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {
            "free_energy": self._endpoint(free_energy, images),
            "sample": self._sample_endpoint(),
        }


@base.family
class DBN(base.NetworkOptimizers, _BoltzmannFamily):
    """Deep belief network: RBMs stacked and trained greedily, one layer after another.

    Layer 1 models the images, layer 2 models layer 1's hidden units, and so on
    (Hinton, Osindero and Teh 2006). Each layer trains by PCD, as an `RBM` does, for
    `steps_per_layer` steps while the layers below it stay frozen; the top layer
    trains for every step left. The layer is chosen from the step counter inside
    the graph, so a plain `fit` (or `keras-gen train`, with its epochs) drives the
    whole schedule and a resumed run continues in the right layer. A layer trains
    on binary samples of the hidden units of the layers below given the images,
    drawn afresh every step: the data the greedy bound asks it to model. Samples
    come from a Gibbs chain in the top RBM, then one pass down through the lower
    layers' generative weights (sampling each layer, probabilities at the image).

    Each layer has its own optimizer (`rbm_1_optimizer`, ...). Every optimizer steps
    at every step, frozen layers with zero gradients, so that each counts the run's
    steps; a frozen layer is then put back as it was, since momentum or weight
    decay would move it. Adam's bias correction therefore counts from step 0 for
    every layer: a later layer's first Adam steps are larger than a fresh Adam's.
    SGD with momentum, as in the papers, has no such effect.

    The likelihood of a DBN is intractable (AIS gives only a bound through the top
    layer), so it declares none.

    Args:
        image_shape: (height, width, channels); every pixel is one visible unit.
        hidden_units: hidden units of each layer, bottom first.
        steps_per_layer: training steps of each layer but the top one.
        gibbs_steps: k of PCD-k, Gibbs steps per update.
        persistent_chains: fantasy particles of each layer; a multiple of the
            number of replicas.
        sampling_steps: Gibbs steps `generate` runs in the top layer.
        seed: fixes the chains' start and the training noise.

    Example:
        model = keras_gen.DBN(hidden_units=(500, 500), steps_per_layer=6000)
        model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5))
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=20)
        images = model.generate(16, seed=0)
    """

    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape", "hidden_units")

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        hidden_units: tuple[int, ...] = (500, 500),
        steps_per_layer: int = 6000,
        gibbs_steps: int = 1,
        persistent_chains: int = 100,
        sampling_steps: int = 1000,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not hidden_units:
            raise ValueError(
                "hidden_units must name at least one layer, e.g. (500, 500)"
            )
        _check_at_least(
            1,
            **{f"hidden_units[{i}]": units for i, units in enumerate(hidden_units)},
            steps_per_layer=steps_per_layer,
            gibbs_steps=gibbs_steps,
            persistent_chains=persistent_chains,
            sampling_steps=sampling_steps,
        )
        self.image_shape = tuple(image_shape)
        self.hidden_units = tuple(hidden_units)
        self.steps_per_layer = steps_per_layer
        self.gibbs_steps = gibbs_steps
        self.persistent_chains = persistent_chains
        self.sampling_steps = sampling_steps
        self.seed = seed
        sizes = (self.pixels, *self.hidden_units)
        self.network_optimizers = {}
        for number in range(1, len(sizes)):
            name = f"rbm_{number}"
            layer = RBMLayer(
                sizes[number - 1], sizes[number], persistent_chains, seed, name=name
            )
            setattr(self, name, layer)
            self.network_optimizers[f"{name}_optimizer"] = name
            setattr(self, f"{name}_optimizer", None)  # set by compile
        self.trackers = base.mean_trackers(
            "free_energy_gap", "reconstruction_error", "layer"
        )
        self.build()

    @property
    def rbms(self) -> list:
        """The layers, bottom first."""
        return [getattr(self, network) for network in self.network_optimizers.values()]

    def compile(
        self,
        optimizer: keras.optimizers.Optimizer | str | None = None,
        **kwargs,
    ):
        """Set one optimizer per layer: rbm_1_optimizer=..., rbm_2_optimizer=..., ...

        A layer not named gets a fresh copy of `optimizer` (default: SGD(0.02,
        momentum=0.5)). The DBN computes in float32 whatever the dtype policy, so
        its optimizers need no loss scaling.
        """
        chosen = {name: kwargs.pop(name, None) for name in self.network_optimizers}
        super().compile(optimizer=None, **kwargs)  # Keras would add an unused RMSprop
        for name, network in self.network_optimizers.items():
            layer_optimizer = (
                keras.optimizers.get(chosen[name])
                if chosen[name] is not None
                else _fresh_optimizer(optimizer)
            )
            layer_optimizer.build(getattr(self, network).trainable_variables)
            setattr(self, name, layer_optimizer)

    def decay_windows(self, steps: int) -> dict[str, tuple[int, int]]:
        """Each layer's optimizer counts every step, but its layer trains only in
        its own window: steps_per_layer steps in turn, the top layer the rest."""
        windows = {}
        top = len(self.rbms) - 1
        for index, name in enumerate(self.network_optimizers):
            first = index * self.steps_per_layer
            end = steps if index == top else (index + 1) * self.steps_per_layer
            windows[name] = (first, max(1, min(end, steps) - first))
        return windows

    def train_step(self, data):
        images = self._flat(inputs.images(data))
        # Every layer's optimizer steps at every step: any one counts the run's steps.
        step = self.rbm_1_optimizer.iterations
        active = self._active_layer(step)
        # 1. PCD of the active layer only, on samples of the frozen layers below it.
        # A switch computes one layer; nothing inside it synchronises replicas.
        branches = [
            functools.partial(self._layer_update, index, images, step)
            for index in range(len(self.rbms))
        ]
        gradients, chains, statistics = tf.switch_case(active, branches)
        # 2. Every replica's rows of every layer's chains (the active layer's moved).
        for rbm, rows in zip(self.rbms, chains):
            rbm.store_chains(rows)
        # 3. Every optimizer steps; the frozen layers are put back as they were.
        for index, rbm in enumerate(self.rbms):
            optimizer = getattr(self, f"rbm_{index + 1}_optimizer")
            _step_unless_frozen(optimizer, rbm, gradients[index], active != index)
        return self._track_statistics(statistics, layer=self._layer_number(active))

    def test_step(self, data):
        """The top layer's statistics, on samples of the layers below: the model that
        generates, whatever layer is training. The optimizers' step cannot choose it:
        a loaded model's fresh optimizers are at step 0, which would name layer 1."""
        images = self._flat(inputs.images(data))
        top = len(self.rbms) - 1
        statistics = self._layer_statistics(top, images)
        return self._track_statistics(statistics, layer=self._layer_number(top))

    def _active_layer(self, step) -> tf.Tensor:
        """The index of the layer that trains at `step`: each in turn, then the top."""
        index = tf.cast(step // self.steps_per_layer, tf.int32)
        return tf.minimum(index, len(self.rbms) - 1)

    @staticmethod
    def _layer_number(active):
        return tf.cast(active + 1, tf.float32)

    def _layer_update(self, index, images, step) -> tuple:
        """(gradients, chain rows, statistics) when layer `index` trains: zero
        gradients and unchanged chain rows for every other layer."""
        rbm = self.rbms[index]
        visible = self._upward(images, index, step)
        gradients, chains, statistics = rbm.persistent_contrastive_divergence(
            visible, self.seed, step, self.gibbs_steps
        )
        all_gradients = [
            gradients
            if other is rbm
            else [tf.zeros(v.shape, v.dtype) for v in other.trainable_variables]
            for other in self.rbms
        ]
        all_chains = [
            chains if other is rbm else other.replica_chains() for other in self.rbms
        ]
        return all_gradients, all_chains, statistics

    def _layer_statistics(self, index, images) -> dict:
        rbm = self.rbms[index]
        visible = self._upward(images, index, step=-1)  # evaluation's fixed noise
        return rbm.statistics(visible, rbm.replica_chains())

    def _upward(self, images, index, step) -> tf.Tensor:
        """Binary samples of layer `index`'s visible units: the images, or the hidden
        units of the layer below given the samples under it."""
        visible = images
        for below, rbm in enumerate(self.rbms[:index]):
            probabilities = rbm.hidden_probabilities(visible)
            uniform = noise.replica_uniform(
                tf.shape(visible)[0],
                [rbm.hidden_units],
                noise.step_seed(self.seed, step, 2 + below),
            )
            visible = _bernoulli(probabilities, uniform)
        return visible

    def _sample_visible(self, num_samples, seed) -> tf.Tensor:
        top = self.rbms[-1]
        start = self._random_start(num_samples, top.visible_units, seed)
        sample, probabilities = top.sample_chain(start, self.sampling_steps, seed)
        # Down through the generative weights: a sample of each layer below the
        # top, and the probabilities of the image at the bottom.
        for index in reversed(range(len(self.rbms) - 1)):
            probabilities = self.rbms[index].visible_probabilities(sample)
            uniform = tf.random.stateless_uniform(
                tf.shape(probabilities), seed=noise.step_seed(seed, -2, index)
            )
            sample = _bernoulli(probabilities, uniform)
        return probabilities

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name."""
        return {"sample": self._sample_endpoint()}


def _fresh_optimizer(template) -> keras.optimizers.Optimizer:
    """A new optimizer like `template` (an optimizer, a name, or None for SGD with momentum)."""
    if template is None:
        return keras.optimizers.SGD(0.02, momentum=0.5)
    if isinstance(template, keras.optimizers.Optimizer):
        return keras.optimizers.deserialize(keras.optimizers.serialize(template))
    return keras.optimizers.get(template)


def _step_unless_frozen(optimizer, rbm, gradients, frozen) -> None:
    """Apply `optimizer` to `rbm`, then put it back as it was if `frozen`.

    Under tf.distribute an optimizer cannot run inside a condition (it synchronises
    replicas), so it always runs and `frozen` undoes its step.
    """
    variables = rbm.trainable_variables
    before = [tf.identity(variable) for variable in variables]
    optimizer.apply_gradients(zip(gradients, variables))
    for variable, value in zip(variables, before):
        variable.assign(tf.where(frozen, value, variable))


def annealing_schedule(temperatures: int) -> np.ndarray:
    """`temperatures` inverse temperatures from 0 to 1, spaced as Salakhutdinov and
    Murray (2008) spaced 14,500: 1/29 of them on [0, 0.5), 8/29 on [0.5, 0.9) and
    20/29 on [0.9, 1], where the distributions change fastest."""
    first = max(1, round(temperatures / 29))
    second = max(1, round(temperatures * 8 / 29))
    last = max(2, temperatures - first - second)
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, first, endpoint=False),
            np.linspace(0.5, 0.9, second, endpoint=False),
            np.linspace(0.9, 1.0, last),
        ]
    )


def _check_at_least(minimum: int, **values) -> None:
    """A ValueError naming each argument that is not an integer >= minimum."""
    for name, value in values.items():
        integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not integer or value < minimum:
            raise ValueError(
                f"{name} must be an integer of at least {minimum}, got {value!r}"
            )
