"""Benchmark every family: training throughput and sampling latency, in one run.

Training (images/s, after warm-up steps): `model.fit` against a hand-written
`tf.function` loop calling the model's own `train_step` (the same networks and math,
without fit's machinery; fit should keep >= 0.95 of it), for DCGAN and VAE also
against a loop of their math written out by hand, `fit` with `jit_compile=True`
(XLA), `fit` in the mixed precision of `keras-gen train --mixed-precision` (bfloat16
on CPUs), and for DCGAN a PyTorch loop of the same algorithm on the same networks
(their outputs checked equal to Keras's on copied weights).

Sampling (ms per image, median, runtimes interleaved so drift hits all alike), at
batch 1 and 256: Keras (`generate`, `decode`, `translate`), the same with XLA, the
SavedModel signature, LiteRT and onnxruntime (the files `keras_gen.export` writes).

Each family runs its preset's architecture and batch size where a preset exists,
else the tiny model of tests/tiny.py; data are random, which does not change speed.
Run it alone: other jobs on the machine skew every number.

    python tools/benchmark.py --json benchmark.json --readme README.md
    python tools/benchmark.py --families DCGAN,VAE --json out.json
    python tools/benchmark.py --quick --json smoke.json      # tiny models, seconds
    python tools/benchmark.py --from-json benchmark.json --readme README.md
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The kernels `keras-gen` runs (keras_gen._startup.FAST_ENVIRONMENT).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# PyTorch's OpenMP threads spin while they wait; on a machine with other work their
# default made a DCGAN step up to 20 times slower here. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras
import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]

import tiny
from model_cards import replace_between

from keras_gen import _files, export, training, zoo
from keras_gen.models import base

BEGIN = "<!-- benchmark table: tools/benchmark.py -->"
END = "<!-- end benchmark table -->"
# The preset whose architecture and batch size stand for each family of tiny.FAMILIES.
PRESETS = {
    "Classifier": "classifier_faces",
    "PixelCNN": "pixelcnn_mnist",
    "DCGAN": "dcgan_faces",
    "VAE": "vae_mnist",
    "VAE (mlp)": "vae_mlp_mnist",
    "VAE (DP-SGD)": "dp_vae_mnist",
    "MLPGAN": "gan_mlp_mnist",
    "WGANGP": "wgan_gp_faces",
    "ConditionalGAN": "cgan_fashion_mnist",
    "ConditionalVAE": "cvae_faces",
    "RBM": "rbm_mnist",
    "DBN": "dbn_mnist",
    "MixturePriorVAE": "vae_mnist_gmm",
    "Pix2Pix": "pix2pix_edges2faces",
    "SuperResolution": "sr4x_faces",
}
THREADS = os.cpu_count() or 1


# What `--skip` can leave out (each needs its own compiler or package).
OPTIONAL = ("xla", "mixed", "torch", "litert", "onnxruntime")
# Slow steps (a WGAN-GP step takes seconds) are still timed over this many.
MIN_TIMED_STEPS = 8
# Below this, fit's fixed cost a call shows; such families are also timed with fit
# running STEPS_PER_CALL steps a call (compile's steps_per_execution).
SHORT_STEP_SECONDS = 0.01
STEPS_PER_CALL = 16
FIT_PER_CALL = f"fit_{STEPS_PER_CALL}_steps_per_call"


class Settings:
    """How long to measure: a full run, or `--quick`'s smoke test of every path."""

    def __init__(self, quick: bool, skip: tuple[str, ...] = ()):
        self.quick, self.skip = quick, set(skip)
        self.train_seconds = 4.0  # per timed loop; quick runs take 2 steps
        self.warmup_steps = 1 if quick else 3
        # fit and the loops alternate this many times on models kept across rounds,
        # each keeping its best: a shared machine's throughput drifts, and drift only
        # ever slows a loop down (the report keeps every round).
        self.rounds = 1 if quick else 8
        self.sample_batches = (1, 4) if quick else (1, 256)
        self.sample_rounds = 1 if quick else 3
        self.sample_seconds = 0.05 if quick else 0.5  # per runtime and round


# --- What each family is -------------------------------------------------------------


def family_setup(name: str, quick: bool) -> dict:
    """The family's model maker, compile, batch size and where they come from."""
    family = tiny.FAMILIES[name]
    preset = None if quick else PRESETS.get(name)
    if preset not in zoo.list():
        return {
            "source": "tiny (tests/tiny.py)",
            "make": lambda: family.make(seed=0),
            "compile": lambda model: family.compile(model, keras.optimizers.Adam),
            "batch_size": 8 if quick else 64,
            "batch": family.batch,
        }
    card = zoo.card(preset)

    def compile_from_card(model, **kwargs):
        model.compile_from_config(json.loads(json.dumps(card["training"]["compile"])))

    return {
        "source": preset,
        "make": lambda: zoo.load(preset, weights=False),
        "compile": compile_from_card,
        "batch_size": card["training"]["batch_size"],
        "batch": family.batch,
    }


def _dataset(setup: dict, model) -> tf.data.Dataset:
    """Four batches of random data of the family's kind, repeated, in memory."""
    arrays = setup["batch"](model, setup["batch_size"] * 4)
    return (
        tf.data.Dataset.from_tensor_slices(arrays)
        .batch(setup["batch_size"], drop_remainder=True)
        .cache()
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )


def _fresh(setup: dict, jit_compile=False, per_call=1, policy: str | None = None):
    """A new compiled model, the same weights every time (seeded), computing in
    the dtype `policy` if given; with XLA or `per_call` steps per fit call,
    recompiled keeping the family's own optimizers."""
    keras.utils.set_random_seed(0)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy or previous)
    try:
        model = setup["make"]()
        setup["compile"](model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if jit_compile or per_call != 1:
        model.compile(
            **{name: getattr(model, name) for name in _optimizer_names(model)},
            jit_compile=jit_compile,
            steps_per_execution=per_call,
        )
    return model


def _optimizer_names(model) -> list[str]:
    return list(getattr(model, "network_optimizers", {}) or {"optimizer": None})


# --- Training ------------------------------------------------------------------------


class _StepClock(keras.callbacks.Callback):
    """Times fit's steps after the warm-up ones (a call may run several steps)."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0
        self.started_after = None

    def on_train_batch_end(self, batch, logs=None):
        if self.start is None:
            if batch + 1 >= self.warmup:
                self.start, self.started_after = time.perf_counter(), batch
        else:
            self.end, self.steps = time.perf_counter(), batch - self.started_after


def _fit_timer(setup, settings, steps, jit_compile=False, per_call=1, policy=None):
    """A function timing `fit` on one model kept across rounds (only the first round
    traces): images/s over `steps` steps after the warm-up ones."""
    model = _fresh(setup, jit_compile, per_call, policy)
    dataset = _dataset(setup, model)
    warmup = max(settings.warmup_steps, per_call)  # at least one whole call

    def images_per_second() -> float:
        clock = _StepClock(warmup)
        model.fit(
            dataset,
            steps_per_epoch=warmup + -(-steps // per_call) * per_call,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[clock],
        )
        return clock.steps * setup["batch_size"] / (clock.end - clock.start)

    return images_per_second


def _loop_timer(setup, settings, steps, make_step):
    """A function timing `make_step(model)` (a tf.function of one batch) over the
    dataset, on one model kept across rounds: images/s after the warm-up steps."""
    model = _fresh(setup)
    step, batches = make_step(model), iter(_dataset(setup, model))

    def images_per_second() -> float:
        for _ in range(settings.warmup_steps):
            _block(step(next(batches)))
        start = time.perf_counter()
        for _ in range(steps):
            result = step(next(batches))
        _block(result)
        return steps * setup["batch_size"] / (time.perf_counter() - start)

    return images_per_second


def _block(result) -> None:
    """Wait for a step's outputs, so the clock stops when the work has."""
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()


def train_step_loop(model):
    """The model's own train_step in a plain tf.function: fit without its machinery."""
    return tf.function(model.train_step, reduce_retracing=True)


def _steps_for(setup, settings) -> tuple[int, float]:
    """Timed steps filling about `train_seconds`, and seconds a step, from one timed
    warm-up loop."""
    rate = _loop_timer(setup, settings, 1, train_step_loop)()
    seconds_a_step = setup["batch_size"] / rate
    if settings.quick:
        return 2, seconds_a_step
    steps = int(settings.train_seconds / seconds_a_step)
    return max(MIN_TIMED_STEPS, min(steps, 400)), seconds_a_step


def measure_training(name: str, setup: dict, settings: Settings) -> dict:
    """images/s of fit, the train_step loop, hand-written math, XLA and PyTorch."""
    steps, seconds_a_step = _steps_for(setup, settings)
    loops = {"fit": _fit_timer(setup, settings, steps)}
    if seconds_a_step < SHORT_STEP_SECONDS:  # what Keras's lever for them gives
        loops[FIT_PER_CALL] = _fit_timer(
            setup, settings, steps, per_call=STEPS_PER_CALL
        )
    loops["train_step_loop"] = _loop_timer(setup, settings, steps, train_step_loop)
    if name in HAND_WRITTEN and setup["source"] in HAND_WRITTEN[name][0]:
        loops["hand_math_loop"] = _loop_timer(
            setup, settings, steps, HAND_WRITTEN[name][1]
        )
    rates, errors, extra = {key: [] for key in loops}, {}, {}
    for round_ in range(settings.rounds):  # alternate, so drift hits all alike
        for key in loops if round_ % 2 == 0 else reversed(loops):
            rates[key].append(loops[key]())
    images_per_second = {key: max(values) for key, values in rates.items()}
    try:
        if "xla" not in settings.skip:
            xla = _fit_timer(setup, settings, steps, jit_compile=True)
            images_per_second["fit_xla"] = max(xla() for _ in range(2))
    except Exception as error:  # noqa: BLE001  (what XLA refuses is a result)
        errors["fit_xla"] = _one_line(error)
    if "mixed" not in settings.skip:  # what keras-gen train --mixed-precision runs
        policy = training.mixed_precision_policy()
        mixed = _fit_timer(setup, settings, steps, policy=policy)
        images_per_second["fit_mixed_precision"] = max(mixed() for _ in range(2))
    if name == "DCGAN" and "torch" not in settings.skip:
        try:
            torch_rate, parity = torch_dcgan_rate(setup, settings, steps)
            images_per_second["torch"] = torch_rate
        except ImportError as error:
            errors["torch"] = _one_line(error)
        else:
            extra["torch_networks_max_abs_difference_from_keras"] = parity
    return {
        "batch_size": setup["batch_size"],
        "timed_steps": steps,
        "images_per_second": images_per_second,
        "images_per_second_by_round": rates,
        **extra,
        **({"not_measured": errors} if errors else {}),
    }


def _one_line(error: Exception) -> str:
    """The error's type and message on one line (TensorFlow's span several)."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


# --- Hand-written math (DCGAN and VAE, as the articles write it) -----------------------


def dcgan_hand_step(model):
    """One non-saturating GAN step as the articles write it, on the model's networks."""
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
        return d_loss

    return step


def vae_hand_step(model):
    """One Bernoulli VAE step (negative ELBO, analytic KL) on the model's networks."""
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
        return loss

    return step


# family -> (the models whose math it is, the step). dcgan_faces' and vae_mnist's
# math is the hand step's; the tiny models' too (quick runs check the path).
HAND_WRITTEN = {
    "DCGAN": (("dcgan_faces", "tiny (tests/tiny.py)"), dcgan_hand_step),
    "VAE": (("vae_mnist", "tiny (tests/tiny.py)"), vae_hand_step),
}


# --- PyTorch DCGAN ---------------------------------------------------------------------


def torch_mirror(network: keras.Sequential):
    """A torch.nn.Sequential computing what a DCGAN-style Keras Sequential does, NCHW,
    with the Keras weights copied in (layer for layer: so the networks are the same)."""
    import torch
    from torch import nn

    layers, shape = [], network.inputs[0].shape[1:]
    for layer in network.layers:
        weights = [np.asarray(w) for w in layer.weights]
        if isinstance(layer, keras.layers.Dense):
            reshaped = _next_reshape(network, layer)
            kernel = weights[0]
            if reshaped is not None:  # outputs in NCHW order for torch's view
                h, w, c = reshaped
                kernel = kernel.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
            module = nn.Linear(kernel.shape[0], layer.units, bias=layer.use_bias)
            module.weight.data = torch.tensor(kernel.reshape(kernel.shape[0], -1).T)
            if layer.use_bias:
                module.bias.data = torch.tensor(weights[1])
        elif isinstance(layer, keras.layers.Reshape):
            module = nn.Unflatten(1, (layer.target_shape[2], *layer.target_shape[:2]))
        elif isinstance(layer, keras.layers.BatchNormalization):
            module = (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(
                shape[-1], eps=layer.epsilon, momentum=1 - layer.momentum
            )
            gamma, beta, mean, variance = (torch.tensor(w) for w in weights)
            module.weight.data, module.bias.data = gamma, beta
            module.running_mean.data, module.running_var.data = mean, variance
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            module = _torch_convolution(layer, weights, shape)
        elif isinstance(layer, keras.layers.ReLU):
            module = nn.ReLU()
        elif isinstance(layer, keras.layers.LeakyReLU):
            module = nn.LeakyReLU(layer.negative_slope)
        elif isinstance(layer, keras.layers.Flatten):
            module = nn.Flatten()
        else:
            raise NotImplementedError(f"no torch mirror for {type(layer).__name__}")
        layers.append(module)
        activation = getattr(layer, "activation", None)
        if activation is not None and activation.__name__ == "tanh":
            layers.append(nn.Tanh())
        shape = layer.compute_output_shape((None, *shape))[1:]
    return nn.Sequential(*layers)


def _next_reshape(network, layer):
    following = network.layers[network.layers.index(layer) + 1 :]
    if following and isinstance(following[0], keras.layers.Reshape):
        return following[0].target_shape
    return None


def _torch_convolution(layer, weights, shape):
    """Conv2d or ConvTranspose2d with Keras's 'same' or 'valid' padding, symmetric."""
    import torch
    from torch import nn

    size, stride = layer.kernel_size[0], layer.strides[0]
    transposed = isinstance(layer, keras.layers.Conv2DTranspose)
    if layer.padding == "valid":
        padding = 0
    elif transposed:  # output s * H: torch crops p each side, TF (k - s) // 2 before
        padding = (size - stride) // 2
    else:
        padding = max((-(-shape[0] // stride) - 1) * stride + size - shape[0], 0) // 2
    if layer.padding == "same" and (size - stride) % 2:
        raise NotImplementedError("asymmetric 'same' padding has no torch mirror here")
    kind = nn.ConvTranspose2d if transposed else nn.Conv2d
    channels = shape[-1]
    module = kind(channels, layer.filters, size, stride, padding, bias=layer.use_bias)
    # Keras (k, k, out, in) transposed / (k, k, in, out) plain -> torch's layouts.
    kernel = weights[0].transpose(3, 2, 0, 1) if transposed else weights[0]
    if not transposed:
        kernel = kernel.transpose(3, 2, 0, 1)
    module.weight.data = torch.tensor(np.ascontiguousarray(kernel))
    if layer.use_bias:
        module.bias.data = torch.tensor(weights[1])
    return module


def _torch_parity(model, generator, discriminator) -> float:
    """max |torch - Keras| of both networks on the same inputs (inference mode)."""
    import torch

    latents = np.random.default_rng(0).standard_normal((2, model.latent_dim))
    latents = latents.astype("float32")
    images = model.generator(latents, training=False)
    logits = model.discriminator(images, training=False)
    generator.eval(), discriminator.eval()
    with torch.no_grad():
        torch_images = generator(torch.tensor(latents))
        torch_logits = discriminator(torch_images)
    generator.train(), discriminator.train()
    return max(
        float(np.abs(torch_images.numpy().transpose(0, 2, 3, 1) - images).max()),
        float(np.abs(torch_logits.numpy() - np.asarray(logits)).max()),
    )


def torch_dcgan_rate(setup, settings, steps) -> tuple[float, float]:
    """images/s of DCGAN's algorithm in PyTorch on the model's networks, and the
    networks' largest output difference from Keras. An ImportError without torch."""
    import torch
    from torch.nn import functional

    torch.set_num_threads(THREADS)
    model = _fresh(setup)
    generator, discriminator = (
        torch_mirror(model.generator),
        torch_mirror(model.discriminator),
    )
    parity = _torch_parity(model, generator, discriminator)
    adam = {"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-7}
    g_opt = torch.optim.Adam(generator.parameters(), **adam)
    d_opt = torch.optim.Adam(discriminator.parameters(), **adam)
    batch = setup["batch_size"]
    pixels = np.asarray(setup["batch"](model, batch)).transpose(0, 3, 1, 2)
    real = torch.tensor(pixels * 2.0 - 1.0, dtype=torch.float32)

    def step():
        # 1. Generate once; 2. update D on real and fake; 3. update G through the
        # same fake images against the updated D (NonSaturatingGAN.train_step).
        fake = generator(torch.randn(batch, model.latent_dim))
        d_loss = (
            functional.softplus(-discriminator(real))
            + functional.softplus(discriminator(fake.detach()))
        ).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        discriminator.requires_grad_(False)
        g_loss = functional.softplus(-discriminator(fake)).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        discriminator.requires_grad_(True)

    for _ in range(settings.warmup_steps):
        step()
    best = 0.0
    for _ in range(settings.rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = max(best, steps * batch / (time.perf_counter() - start))
    return best, parity


# --- Sampling ------------------------------------------------------------------------


def sampling_plan(model) -> dict | None:
    """What `model` samples through: the signature every runtime runs, its inputs,
    and the Keras calls (name -> function of the inputs) that make the same images."""
    endpoints = model.serving_endpoints()
    conditions = {head: 0 for head in getattr(model, "conditions", {}) or {}}
    if isinstance(model, base.LatentFamily):
        name = next(iter(endpoints))  # generate or decode

        def labels(rows):
            return model._labels(conditions, rows) if conditions else None

        keras_calls = {
            "keras_generate": lambda i: model.generate(
                len(i["latents"]), seed=0, **conditions
            ),
            "keras_decode": lambda i: model.decode(i["latents"], **conditions),
            "keras_xla": _xla(
                model._decode, lambda i: (i["latents"], labels(len(i["latents"])))
            ),
        }
    elif model.can(base.TRANSLATION):
        name = "translate"
        keras_calls = {
            "keras_translate": lambda i: model.translate(i["inputs"]),
            "keras_xla": _xla(model._translated, lambda i: (i["inputs"],)),
        }
    elif model.can(base.SAMPLES) and "sample" in endpoints:
        name = "sample"
        keras_calls = {
            "keras_generate": lambda i: model.generate(
                int(i["num_samples"]), seed=0, **conditions
            )
        }
    else:
        return None
    # The Keras call computing what the signature does: the others are compared to it.
    reference = next(
        key for key in keras_calls if key != "keras_generate" or name == "sample"
    )
    return {
        "signature": name,
        "specs": endpoints[name][1],
        "keras": keras_calls,
        "reference": reference,
    }


def _xla(function, arguments):
    """`function(*arguments(inputs))` compiled with XLA, once."""
    compiled = tf.function(function, jit_compile=True, reduce_retracing=True)
    return lambda inputs: compiled(*arguments(inputs))


# Inputs of a `sample` signature that `generate` takes from the model by default:
# input name -> the model's attribute (Diffusion's sampling steps and guidance).
SAMPLE_DEFAULTS = {"steps": "sampling_steps", "guidance": "guidance"}


def _inputs(model, specs, rows: int) -> dict:
    """A request of `rows` for a signature: latents N(0, 1), images U(0, 1), class 0,
    seed 0, and what `generate` uses by default for the other settings."""
    rng, found = np.random.default_rng(0), {}
    for spec in specs:
        shape = [rows if size is None else size for size in spec.shape]
        if spec.name == "num_samples":
            found[spec.name] = np.array(rows, spec.dtype.as_numpy_dtype)
        elif spec.name in SAMPLE_DEFAULTS:
            default = getattr(model, SAMPLE_DEFAULTS[spec.name])
            found[spec.name] = np.array(default, spec.dtype.as_numpy_dtype)
        elif spec.dtype.is_integer:
            found[spec.name] = np.zeros(shape, spec.dtype.as_numpy_dtype)
        elif len(shape) == 4:
            found[spec.name] = rng.random(shape).astype("float32")
        else:
            found[spec.name] = rng.standard_normal(shape).astype("float32")
    return found


def runtimes(model, plan: dict, work: Path, skip=()) -> tuple[dict, dict]:
    """name -> function of a request, for every runtime that can run the signature;
    and why the others were not measured."""
    name, found, missing = plan["signature"], dict(plan["keras"]), {}
    if "xla" in skip:
        found.pop("keras_xla", None)
    loaded = tf.saved_model.load(str(export.saved_model(model, work / "saved_model")))
    signature = loaded.signatures[name]
    found["saved_model"] = lambda i: signature(
        **{k: tf.constant(v) for k, v in i.items()}
    )
    for runtime, start in (("litert", _litert), ("onnxruntime", _onnxruntime)):
        if name in export.NOT_IN_TFLITE:
            missing[runtime] = f"{name} draws noise: no TFLite or ONNX signature"
        elif runtime in skip:
            missing[runtime] = "skipped (--skip)"
        else:
            try:
                found[runtime] = start(model, name, work / runtime)
            except ImportError as error:
                missing[runtime] = _one_line(error)
    return found, missing


def _litert(model, name: str, folder: Path):
    """The signature in LiteRT's interpreter, on the `export.tflite` file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_path=str(export.tflite(model, folder)), num_threads=THREADS
    )
    runner = interpreter.get_signature_runner(name)
    return lambda request: runner(**request)


def _onnxruntime(model, name: str, folder: Path):
    """The signature in onnxruntime, on the `export.onnx` file."""
    import onnxruntime

    export.onnx(model, folder)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = onnxruntime.InferenceSession(
        str(folder / f"{name}.onnx"), options, ["CPUExecutionProvider"]
    )
    return lambda request: session.run(None, request)


def _images(result) -> np.ndarray:
    """The images a runtime returned (a tensor, a dict with "images", or a list)."""
    if isinstance(result, dict):
        result = result["images"]
    elif isinstance(result, list):
        result = result[0]
    return np.asarray(result)


def measure_sampling(model, settings: Settings) -> dict | None:
    """ms per image of every runtime at each batch size, and each one's largest
    difference from the Keras images of the same request."""
    plan = sampling_plan(model)
    if plan is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        calls, missing = runtimes(model, plan, Path(scratch), settings.skip)
        batches, errors = {}, {}
        for rows in settings.sample_batches:
            request = _inputs(model, plan["specs"], rows)
            reference = _images(calls[plan["reference"]](request))
            for key, call in calls.items():
                if key != "keras_generate" or plan["signature"] == "sample":
                    difference = np.abs(_images(call(request)) - reference).max()
                    errors[key] = max(errors.get(key, 0.0), float(difference))
            times = _interleaved(calls, request, settings)
            batches[str(rows)] = {k: 1000 * t / rows for k, t in times.items()}
    return {
        "signature": plan["signature"],
        "threads": THREADS,
        "ms_per_image": batches,
        "max_abs_difference_from_keras": errors,
        **({"not_measured": missing} if missing else {}),
    }


def _interleaved(calls: dict, request: dict, settings: Settings) -> dict:
    """Median seconds per call of each runtime, in rounds that visit every one."""
    samples = {key: [] for key in calls}
    for _ in range(settings.sample_rounds):
        for key, call in calls.items():
            started = time.perf_counter()
            while True:
                begin = time.perf_counter()
                _images(call(request))
                samples[key].append(time.perf_counter() - begin)
                if time.perf_counter() - started >= settings.sample_seconds:
                    break
    return {key: statistics.median(values) for key, values in samples.items()}


# --- The run, its JSON and the README table --------------------------------------------


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in (
        "tensorflow",
        "keras",
        "ai-edge-litert",
        "onnxruntime",
        "tf2onnx",
        "torch",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "packages": versions,
    }


def run(
    families: list[str], settings: Settings, arguments: list[str], log=print
) -> dict:
    """Measure every family in `families`; the report `--json` writes. A family that
    fails is reported with its error, and the others are measured."""
    report = {
        "written_by": "keras_gen",
        "tool": "tools/benchmark.py",
        "command": " ".join(["python", "tools/benchmark.py", *arguments]),
        "date": datetime.date.today().isoformat(),
        "quick": settings.quick,
        "machine": machine(),
        "families": {},
    }
    for name in families:
        setup = family_setup(name, settings.quick)
        entry = report["families"][name] = {"model": setup["source"]}
        try:
            log(f"{name} ({setup['source']}): training")
            entry["training"] = measure_training(name, setup, settings)
            log(f"{name}: sampling")
            sampling = measure_sampling(_fresh(setup), settings)
        except Exception as error:  # noqa: BLE001  (reported; the run goes on)
            entry["error"] = _one_line(error)
            log(f"{name}: failed: {entry['error']}")
        else:
            if sampling is not None:
                entry["sampling"] = sampling
    return report


def _ratio(numerator, denominator) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:.2f}"


def tables(report: dict) -> str:
    """README's tables: ratios only, labelled with the machine, date and command."""
    machine_ = report["machine"]
    lines = [
        f"Measured on {machine_['cpu']} ({machine_['cores']} cores, "
        f"{machine_['system']}), {report['date']}, one run: `{report['command']}`"
        + (" (quick: tiny models, not a measurement)" if report["quick"] else "")
        + ". Raw numbers in its JSON.",
        "",
        (
            "| family (model) | fit / train_step loop | fit / hand-written math "
            "| XLA fit / fit | mixed-precision fit / fit | PyTorch / fit |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in report["families"].items():
        lines.append(
            f"| {name} ({entry['model']}) | "
            + " | ".join(_training_cells(entry))
            + " |"
        )
    lines += _sampling_table(report)
    return "\n".join(lines)


def _training_cells(entry: dict) -> list[str]:
    """fit / loop, fit / hand math, XLA / fit, mixed precision / fit, PyTorch /
    fit; "fails" where XLA refused the family, the error where the family could not
    be measured."""
    if "training" not in entry:
        return [f"failed: {entry.get('error', 'unknown error')}", "", "", "", ""]
    rates = entry["training"]["images_per_second"]
    refused = entry["training"].get("not_measured", {})
    fit = _ratio(rates["fit"], rates["train_step_loop"])
    if FIT_PER_CALL in rates:
        per_call = _ratio(rates[FIT_PER_CALL], rates["train_step_loop"])
        fit += f" ({per_call} at {STEPS_PER_CALL} steps a call)"
    return [
        fit,
        _ratio(rates["fit"], rates.get("hand_math_loop")),
        "fails" if "fit_xla" in refused else _ratio(rates.get("fit_xla"), rates["fit"]),
        _ratio(rates.get("fit_mixed_precision"), rates["fit"]),
        _ratio(rates.get("torch"), rates["fit"]),
    ]


SAMPLING_COLUMNS = (
    "keras_generate",
    "keras_decode",
    "keras_translate",
    "keras_xla",
    "litert",
    "onnxruntime",
)


def _sampling_table(report: dict) -> list[str]:
    sampled = {
        name: entry["sampling"]
        for name, entry in report["families"].items()
        if "sampling" in entry
    }
    if not sampled:
        return []
    lines = [
        "",
        (
            "Sampling time per image relative to the SavedModel signature's, same "
            "request (below 1: faster):"
        ),
        "",
        "| family | signature | batch | " + " | ".join(SAMPLING_COLUMNS) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in SAMPLING_COLUMNS) + " |",
    ]
    failed = {
        name: entry["error"]
        for name, entry in report["families"].items()
        if "training" in entry and "error" in entry
    }
    lines += [
        f"| {name} | failed: {error.replace('|', '/')} |"
        for name, error in failed.items()
    ]
    for name, sampling in sampled.items():
        for rows, times in sampling["ms_per_image"].items():
            cells = [
                _ratio(times.get(key), times["saved_model"]) for key in SAMPLING_COLUMNS
            ]
            lines.append(
                f"| {name} | {sampling['signature']} | {rows} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def write_readme(report: dict, readme: Path) -> None:
    text = replace_between(readme.read_text(), BEGIN, END, tables(report))
    if text is None:
        raise ValueError(f"{readme} lacks the markers {BEGIN} ... {END}")
    _files.write_text(readme, text)


def _families(argument: str | None) -> list[str]:
    if not argument:
        return list(tiny.FAMILIES)
    names = [name.strip() for name in argument.split(",")]
    unknown = [name for name in names if name not in tiny.FAMILIES]
    if unknown:
        raise ValueError(
            f"unknown families {unknown}; known: {', '.join(tiny.FAMILIES)}"
        )
    return names


def _skipped(argument: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in argument.split(",") if name.strip())
    unknown = [name for name in names if name not in OPTIONAL]
    if unknown:
        raise ValueError(f"cannot skip {unknown}; --skip takes {', '.join(OPTIONAL)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated, as in tests/tiny.py")
    parser.add_argument("--quick", action="store_true", help="tiny models, seconds")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated, of {', '.join(OPTIONAL)}"
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--readme", type=Path, help="rewrite its benchmark tables")
    parser.add_argument("--from-json", type=Path, help="tables from this report")
    args = parser.parse_args(argv)
    try:
        if args.from_json:
            report = json.loads(args.from_json.read_text())
        else:
            settings = Settings(args.quick, _skipped(args.skip))
            arguments = sys.argv[1:] if argv is None else argv
            report = run(_families(args.families), settings, arguments)
        if args.json:
            _files.write_text(
                args.json, json.dumps(report, indent=2) + "\n", _files.json_signed
            )
        if args.readme:
            write_readme(report, args.readme)
    except ValueError as error:  # a bad argument, a file keras_gen did not write
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
    print(tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
