"""Train a preset's recipe and write the result as a preset folder.

The recipe is the preset's card: model class and config, dataset and split,
epochs, batch size, seed and the compile config (optimizers). The whole training
state is checkpointed, atomically, beside the output folder; re-running the same
command after a crash continues from the last checkpoint. Every random draw of a
run (data order, binarization, latent noise) is a function of the seed and the
step, so a resumed run takes exactly the steps the uninterrupted one would have.
"""

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_gen import _files, data, evaluation, features, zoo
from keras_gen import images as images_module
from keras_gen._choices import EVAL_SAMPLES, LEARNING_RATE_DECAYS, STRATEGIES
from keras_gen._version import __version__
from keras_gen.models import base

SAMPLE_SEED = 0
CURVE_FIGURE = "training_curve.png"
# What a training curve plots, by the first capability the model declares: a pattern
# of the metric's name in `evaluation.evaluate`'s report, and the feature extractor
# that measures it ("none" skips feature metrics that the curve does not plot).
CURVE_METRICS = (
    (base.LIKELIHOOD, r"test negative log-likelihood, nats \(", "none"),
    (base.SAMPLES, r"FID \([^()]*\)$", "auto"),
    (base.TRANSLATION, r"FID \([^()]*\)$", "auto"),
    (base.CLASSIFY, r"test \w*accuracy$", "none"),
)


class TrainingError(RuntimeError):
    """Training cannot go on: it diverged, or another run holds the output."""


class TrainingDiverged(TrainingError):
    """A loss, metric or weight became NaN or infinite; the last good checkpoint is kept."""


class OutputLocked(TrainingError):
    """Another live process is training into the same output."""


class CheckpointMismatch(ValueError):
    """The checkpoint beside the output belongs to a run with other settings."""


class _TrainingState(keras.callbacks.Callback):
    """Checkpoints the whole training state and stops at the first non-finite value.

    The weights file holds the networks and every optimizer's state, including its
    iteration count, which is the run's step: data order and noise follow from it.
    Each write goes to a temporary file renamed into place, so a crash mid-write
    leaves the previous checkpoint intact; weights that are not all finite are never
    written, so the checkpoint kept after a divergence is a good one. `run.json`
    holds the run's identity: a checkpoint is resumed only by the same run.
    """

    WEIGHTS = "state.weights.h5"
    RUN = "run.json"

    def __init__(self, folder: Path, every_steps: int, write: bool, identity: dict):
        super().__init__()
        self.folder, self.every_steps, self.write = folder, every_steps, write
        self.identity = identity
        self.saved_step = self.reached = None
        self.previous_wall_time = 0.0
        self.start = time.monotonic()
        self.diverged = None

    @property
    def wall_time_s(self) -> float:
        return self.previous_wall_time + time.monotonic() - self.start

    def restore(self, model: keras.Model) -> int:
        """Load this run's last checkpoint into `model`, if there is one; return its step."""
        if not self._check_identity():
            return step(model)
        progress = self.folder / "progress.json"  # written just after the weights
        if progress.is_file():
            self.previous_wall_time = json.loads(progress.read_text())["wall_time_s"]
        model.load_weights(self.folder / self.WEIGHTS)
        self.saved_step = step(model)
        return self.saved_step

    def _check_identity(self) -> bool:
        """Whether a checkpoint of this run exists; refuse one of another run."""
        if not self.folder.exists() and not self.folder.is_symlink():
            return False
        _files.claim_folder(self.folder)
        run = self.folder / self.RUN
        if not run.is_file():
            raise CheckpointMismatch(
                f"{self.folder} holds a checkpoint without {self.RUN} (an older "
                "keras_gen's, or another run's); delete that folder to start afresh, "
                "or choose another --output"
            )
        stored = json.loads(run.read_text())
        if details := _differences(stored, self.identity, ("checkpoint", "now")):
            raise CheckpointMismatch(
                f"{self.folder} holds the checkpoint of another run ({details}). "
                "Run the same command as that run to resume it, choose another "
                "--output, or delete that folder to start afresh."
            )
        return (self.folder / self.WEIGHTS).is_file()

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not np.isfinite(float(value)):
                self._stop(name, float(value))
                return
        # Under steps_per_execution k, a call runs k steps: save on crossing a multiple.
        reached, self.reached = self.reached, step(self.model)
        if reached // self.every_steps < self.reached // self.every_steps:
            self.save()

    def on_train_begin(self, logs=None):
        self.reached = step(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is None:
            self.save()

    def _stop(self, name, value):
        self.diverged = (step(self.model), name, value)
        self.model.stop_training = True

    def save(self):
        if not self.write:
            return
        bad = _non_finite_variable(self.model)
        if bad is not None:
            self._stop(*bad)
            return
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            _files.mark(self.folder)
            _files.write_text(
                self.folder / self.RUN, json.dumps(self.identity, indent=1)
            )
        with _files.atomic_path(self.folder / self.WEIGHTS) as temporary:
            self.model.save_weights(temporary)
        self.saved_step = step(self.model)
        progress = {"step": self.saved_step, "wall_time_s": self.wall_time_s}
        _files.write_text(self.folder / "progress.json", json.dumps(progress))


def _non_finite_variable(model: keras.Model) -> tuple[str, float] | None:
    """(name, a bad value) of the first weight or optimizer variable that is not finite."""
    variables = [*model.weights]
    for optimizer in optimizers(model).values():
        variables += optimizer.variables
    for variable in variables:
        values = keras.ops.convert_to_numpy(variable)
        if not np.all(np.isfinite(values)):
            bad = values[~np.isfinite(values)].flat[0]
            return f"the variable {variable.path}", float(bad)
    return None


class _TrainingCurve(keras.callbacks.Callback):
    """Measures the model every `eval_every` epochs: the points of its training curve.

    `measure(model)` gives (metric name, value). Each point is written into the
    training state folder just after the checkpoint of its step (this callback comes
    after `_TrainingState`), so a resumed run keeps every point taken before a crash,
    and a point lost between the two writes is measured on resuming from that
    checkpoint, which holds the same weights.
    """

    FILE = "curve.json"

    def __init__(self, state: _TrainingState, measure, settings: dict):
        super().__init__()
        self.state, self.measure = state, measure
        self.every_epochs = settings["eval_every"]
        self.samples = settings["eval_samples"]
        self.steps_per_epoch = settings["steps_per_epoch"]
        self.metric, self.points = None, []

    def resume(self, model: keras.Model) -> None:
        """Take the stored points up to the restored step; measure one due there."""
        file = self.state.folder / self.FILE
        if file.is_file():
            stored, restored = json.loads(file.read_text()), step(model)
            self.metric = stored["metric"]
            self.points = [p for p in stored["points"] if p["step"] <= restored]
        self._measure_if_due(model)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.diverged is None:
            self._measure_if_due(self.model)

    def _measure_if_due(self, model):
        at = step(model)
        every_steps = self.every_epochs * self.steps_per_epoch
        if at == 0 or at % every_steps or any(p["step"] == at for p in self.points):
            return
        self.metric, value = self.measure(model)
        epoch = at // self.steps_per_epoch
        self.points.append({"epoch": epoch, "step": at, "value": value})
        print(f"training curve: epoch {epoch} (step {at}), {self.metric} {value:.6g}")
        stored = json.dumps({"metric": self.metric, "points": self.points})
        _files.write_text(self.state.folder / self.FILE, stored)

    def add_to(self, trained_card: dict, figures: dict, command: str) -> None:
        """Put the curve in a trained card, with its figure."""
        add_training_curve(
            trained_card,
            figures,
            command,
            self.metric,
            self.samples,
            self.points,
            self.every_epochs,
        )


class EpochCurve(keras.callbacks.Callback):
    """`measure(model)`, giving (metric name, value), every `every` epochs: the
    training curve of a tool that makes presets outside `keras-gen train` (whose
    own curve also survives a crash and resume). It only measures, so the fit is
    the same with it or without."""

    def __init__(self, every: int, measure, samples: int, command: str):
        super().__init__()
        self.every, self.measure, self.samples = every, measure, samples
        self.command, self.metric, self.points = command, None, []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        self.metric, value = self.measure(self.model)
        point = {"epoch": epoch + 1, "step": step(self.model), "value": value}
        self.points.append(point)
        print(f"training curve: epoch {epoch + 1}, {self.metric} {value:.6g}")

    def add_to(self, card: dict, figures: dict) -> None:
        """Put the curve in a card, and its figure among the `figures` to write."""
        add_training_curve(
            card,
            figures,
            self.command,
            self.metric,
            self.samples,
            self.points,
            self.every,
        )


def add_training_curve(
    card: dict,
    figures: dict,
    command: str,
    metric: str,
    samples: int,
    points: list[dict],
    every_epochs: int,
) -> None:
    """Put a training curve (`points`: epoch, step, value) in a card, with its
    figure's entry, and the figure (a line plot) among the `figures` to write."""
    card["training_curve"] = {
        "command": command,
        "metric": metric,
        "samples": samples,
        "points": points,
    }
    every = "epoch" if every_epochs == 1 else f"{every_epochs} epochs"
    measured_on = zoo.curve_measured_on(metric)
    entry = {
        "file": CURVE_FIGURE,
        "caption": (
            f"The training curve: {metric}, measured every {every} on "
            f"{samples} {measured_on}."
        ),
        "command": command,
    }
    card["figures"] = [*card.get("figures", []), entry]
    epochs = [point["epoch"] for point in points]
    values = [point["value"] for point in points]
    plot = images_module.line_plot(epochs, values, "epoch", metric)
    figures[CURVE_FIGURE] = (plot[None], 1)


class _SpreadTestImages(data.Splits):
    """A run's splits with the test split cut to `count` images spread evenly over
    it: a curve point measures test images as few as the samples it draws. Not the
    first `count`, since a split may be stored in order (faces64's is sorted by age).
    The other splits, the FID's reference among them, stay whole."""

    def __init__(self, splits: data.Splits, count: int):
        super().__init__(splits.dataset, splits.source)
        self.whole, self.count = splits, count

    def images(self, split: str) -> np.ndarray:
        return self._spread(split, self.whole.images(split))

    def labels(self, split: str) -> np.ndarray | None:
        return self._spread(split, self.whole.labels(split))

    def _spread(self, split, values):
        if split != "test" or values is None or len(values) <= self.count:
            return values
        return values[np.linspace(0, len(values) - 1, self.count).round().astype(int)]


@contextlib.contextmanager
def exclusive(output: Path):
    """Hold an exclusive lock on training into `output`, released even if the process dies.

    The lock is `flock` on `OUTPUT.lock`, which holds the owner's process id: a
    second run is refused at once, naming that process; the lock of a dead process
    is free again.
    """
    path = output.with_name(output.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    _files.claim_file(path, lambda head: head.strip().isdigit() or not head)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise OutputLocked(
                f"{output} is being trained by process {holder} (it holds {path}); "
                "wait for it to finish, or choose another --output"
            ) from None
        # Another run may have removed the file between our open and our lock.
        if path.exists() and os.stat(path).st_ino == os.fstat(descriptor).st_ino:
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


class TensorBoard(keras.callbacks.Callback):
    """TensorBoard logs a GAN or VAE needs, which keras.callbacks.TensorBoard misses.

    Every tracked metric per step (`step/...`) and per epoch (`epoch/...`), the
    learning rate of every optimizer (a GAN has two), what the model's `preview`
    shows after every epoch (a sample grid drawn with the same seed; for VAEs the
    reconstructions of a fixed batch), and the run's hyperparameters (HParams
    plugin). Steps are optimizer iterations, so a resumed run continues its curves.
    """

    def __init__(self, logdir: str | os.PathLike, hparams: dict, reference_images=None):
        super().__init__()
        self.logdir = str(logdir)
        self.hparams = hparams
        self.reference_images = reference_images
        self.writer = None

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hparams_api

        if self.writer is None:  # one event file, however many fit calls
            self.writer = tf.summary.create_file_writer(self.logdir)
            with self.writer.as_default():
                hparams_api.hparams(self.hparams)

    def on_train_batch_end(self, batch, logs=None):
        with self.writer.as_default(step=self._step()):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"step/{name}", value)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=self._step()):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"epoch/{name}", value)
            for name, optimizer in optimizers(self.model).items():
                tf.summary.scalar(f"learning_rate/{name}", optimizer.learning_rate)
            if self.model.can(base.PREVIEW):
                self._preview()
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()

    def _preview(self):
        """What the model shows of itself: samples, reconstructions of a fixed batch."""
        reference = self.reference_images
        images, labels = (
            reference if isinstance(reference, tuple) else (reference, None)
        )
        for name, (shown, columns) in self.model.preview(images, labels).items():
            tf.summary.image(name, _grid_batch(shown, columns))

    def _step(self):
        return step(self.model)


def step(model: keras.Model) -> int:
    """The training step a model has reached: the fewest iterations of its optimizers.

    Most models update every optimizer once per step; a WGAN-GP critic updates
    num_critic_steps times, so its generator's count is the step.
    """
    return min(
        int(keras.ops.convert_to_numpy(optimizer.iterations))
        for optimizer in optimizers(model).values()
    )


def optimizers(model: keras.Model) -> dict:
    """Every optimizer a model trains with, by attribute name."""
    found = {
        name: value
        for name, value in vars(model).items()
        if isinstance(value, keras.optimizers.Optimizer)
    }
    if getattr(model, "optimizer", None) is not None:
        found.setdefault("optimizer", model.optimizer)
    return found


def _grid_batch(images, columns=None):
    return images_module.grid(np.asarray(images), columns)[None]


def strategy(
    name: str = "auto", cpu_replicas: int | None = None
) -> tf.distribute.Strategy:
    """The tf.distribute strategy to train under.

    "auto": MirroredStrategy over all visible GPUs when there are two or more, else
    OneDeviceStrategy. "multi_worker": MultiWorkerMirroredStrategy,
    configured from TF_CONFIG. TPUs: build a TPUStrategy yourself and create the
    model in its scope; nothing else changes. `cpu_replicas` splits the CPU into that
    many logical devices and mirrors over them, to exercise multi-replica training
    without GPUs; it must be set before TensorFlow has run any op.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        )
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
        except RuntimeError as error:
            raise ValueError(
                "cpu_replicas must be set before TensorFlow runs anything; "
                "start a fresh process (keras-gen train --cpu-replicas N)"
            ) from error
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        # Reduce through one device: CPU collectives can key the replicas' reductions
        # in different orders and abort (seen with TF 2.21 and synchronized batch norm).
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "multi_worker":  # before anything else starts TensorFlow's runtime
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    # A real strategy even for one device. Under any strategy Keras reads one batch
    # to build the model and then starts a fresh pass, so a pipeline that reshuffles
    # on every pass trains on its second order; with a strategy always in place,
    # every replica count sees the same order.
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def train(
    preset: str | os.PathLike,
    output: str | os.PathLike,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    data_source: str | os.PathLike | None = None,
    seed: int | None = None,
    distribution: tf.distribute.Strategy | None = None,
    logdir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    mixed_precision: bool = False,
    command: str | None = None,
    verbose: int | str | None = None,
    overwrite: bool = False,
    eval_every: int | None = None,
    eval_samples: int | None = None,
    init_from: str | os.PathLike | None = None,
    learning_rate_decay: str | None = None,
) -> Path:
    """Train `preset`'s recipe (overrides as given) and write a preset folder at `output`.

    `batch_size` is the global batch: under a strategy each replica takes its share.
    `output` may be replaced only if keras_gen wrote it (or with `overwrite`); its
    checkpoint beside it is resumed only by a run with the same settings, and one
    run at a time may train into it. `eval_every` N measures the model's headline
    number (test NLL, else FID) every N epochs on `eval_samples` samples (default
    500): the card's training curve, drawn in training_curve.png. `init_from` (a
    preset of the same network) fine-tunes from its verified weights, which the card
    records; `learning_rate_decay` "cosine" anneals each optimizer's constant rate to
    zero over the run, while the recipe (and so a run from scratch) keeps its own.
    """
    recipe = zoo.card(preset)
    _check_trainable(recipe)
    parent = None if init_from is None else _parent(init_from, recipe)
    epochs, batch_size, seed = _or_recipe(recipe, epochs, batch_size, seed)
    distribution = distribution or strategy()
    _check_settings(epochs, steps_per_epoch, batch_size, seed, checkpoint_every)
    eval_samples = check_curve(eval_every, eval_samples, epochs)
    _check_replicas(batch_size, distribution)
    _check_decay(learning_rate_decay, recipe)
    output = _files.claim_folder(output, overwrite)
    counts = {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "seed": seed,
    }
    curve = {"eval_every": eval_every, "eval_samples": eval_samples}
    fine_tuning = {"init_from": init_from, "learning_rate_decay": learning_rate_decay}
    command = command or _command(
        preset, output, **counts, data=data_source, **curve, **fine_tuning
    )
    precision = {"mixed_precision": _mixed_precision(mixed_precision)}
    chosen = {**counts, **curve, **precision, **fine_tuning, "init_from": parent}
    run = _plan(preset, recipe, data_source, distribution, command, **chosen)
    with exclusive(output) if is_chief(distribution) else contextlib.nullcontext():
        return _train_into(output, run, checkpoint_every, logdir, verbose, overwrite)


@dataclasses.dataclass(frozen=True)
class _Run:
    """One training run, its settings checked: what its steps share."""

    recipe: dict
    settings: dict  # the run's identity: a checkpoint is resumed only by the same
    splits: data.Splits
    images: np.ndarray
    labels: np.ndarray | None
    distribution: tf.distribute.Strategy
    command: str


def _plan(preset, recipe, data_source, distribution, command, **chosen) -> _Run:
    """The run's recipe (seeded), its training data, and its settings: the `chosen`
    counts and options, with the steps of an epoch counted if not given."""
    recipe = _run_recipe(recipe, chosen["seed"])
    splits = data.Splits(recipe["data"]["dataset"], data_source)
    images, labels = _training_data(recipe["data"], splits)
    settings = _settings(preset, recipe, images, labels, distribution)
    settings.update(chosen)
    settings["steps_per_epoch"] = _steps_per_epoch(
        chosen["steps_per_epoch"], chosen["batch_size"], images, recipe
    )
    return _Run(recipe, settings, splits, images, labels, distribution, command)


def _train_into(
    output, run: _Run, checkpoint_every, logdir, verbose, overwrite
) -> Path:
    """Fit the run, checkpointed beside `output`; then the chief alone measures
    the model and writes the preset (and the curve and TensorBoard are its own)."""
    chief = is_chief(run.distribution)
    settings = run.settings
    model = _build(
        run.recipe, settings["seed"], run.distribution, settings["mixed_precision"]
    )
    if settings["learning_rate_decay"] is not None:
        _anneal(model, settings["epochs"] * settings["steps_per_epoch"])
    folder = output.with_name(output.name + ".train-state")
    state = _TrainingState(folder, checkpoint_every, chief, identity=settings)
    measures = chief and settings["eval_every"] is not None
    curve = _training_curve(run, state) if measures else None
    callbacks = [state] if curve is None else [state, curve]  # in this order
    if logdir is not None and chief:
        callbacks.append(_tensorboard(logdir, run))
    _resume(model, state, curve, settings)
    if settings["init_from"] is not None and step(model) == 0:
        _start_from(model, settings["init_from"])
    _fit(model, state, run, callbacks, verbose)
    if not chief:
        return output
    trained = _measure_and_write(model, run, state, output, overwrite, curve)
    shutil.rmtree(state.folder, ignore_errors=True)
    return trained


def _parent(init_from, recipe) -> dict:
    """The preset a fine-tuning run starts from, checked: the recipe's network and
    trained weights that match its card. What the run's card records of it."""
    folder = zoo.path(init_from)
    parent_card = zoo.card(folder)
    if _network(parent_card) != _network(recipe):
        raise ValueError(
            f"--init-from {init_from}: its network differs from the recipe's ("
            f"{_differences(_network(parent_card), _network(recipe), ('its', 'recipe'))}"
            "); fine-tuning starts from a preset of the same model class and config"
        )
    zoo.weights_file(folder, parent_card)  # refuses missing or altered weights
    trained = parent_card.get("trained", {})
    before = trained.get("init_from", {})
    return {
        "preset": _preset_argument(folder),
        "weights_sha256": parent_card["weights"][zoo.WEIGHTS]["sha256"],
        **{
            total: trained[total] + before.get(total, 0)
            for total in ("steps", "wall_time_s")
            if total in trained
        },
    }


def _network(card: dict) -> dict:
    """A card's model class and config, but the seed (a run sets its own)."""
    config = {k: v for k, v in card["model"]["config"].items() if k != "seed"}
    return {"class": card["model"]["class"], **config}


def _differences(first: dict, second: dict, names: tuple[str, str]) -> str:
    """The keys whose values differ, each with both values under its `names`."""
    return "; ".join(
        f"{key}: {names[0]} {first.get(key)!r}, {names[1]} {second.get(key)!r}"
        for key in sorted({*first, *second})
        if first.get(key) != second.get(key)
    )


def _start_from(model: keras.Model, parent: dict) -> None:
    """Put the parent preset's weights (verified again as they load) into `model`."""
    model.set_weights(zoo.load(parent["preset"]).get_weights())
    print(f"starting from the weights of {parent['preset']}")


def _check_decay(decay: str | None, recipe: dict) -> None:
    """Refuse an unknown decay, or one over a recipe whose rate is already a schedule."""
    if decay is None:
        return
    if decay not in LEARNING_RATE_DECAYS:
        raise ValueError(
            f"learning_rate_decay (--learning-rate-decay) must be one of "
            f"{', '.join(LEARNING_RATE_DECAYS)}, got {decay!r}"
        )
    if scheduled := _scheduled_optimizers(recipe["training"]["compile"]):
        raise ValueError(
            f"--learning-rate-decay {decay}: the recipe's learning rate of "
            f"{', '.join(scheduled)} is already a schedule; the decay anneals a "
            "constant rate. Train without it, or from a recipe with a constant rate."
        )


def _scheduled_optimizers(compile_config: dict) -> list[str]:
    """The compile config's optimizers whose learning rate is a schedule."""
    return [
        name
        for name, value in compile_config.items()
        if isinstance(value, dict)
        and isinstance(value.get("config", {}).get("learning_rate"), dict)
    ]


def _anneal(model: keras.Model, steps: int) -> None:
    """Decay each optimizer's rate to zero by a half cosine over the updates in which
    its network trains (the whole run, unless the family's `decay_windows` says
    otherwise). A schedule reads the optimizer's iterations, so a resumed run goes
    on from where its checkpoint left the rate."""
    windows = model.decay_windows(steps) if hasattr(model, "decay_windows") else {}
    for name, optimizer in optimizers(model).items():
        start = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        first, count = windows.get(name, (0, steps))
        optimizer.learning_rate = _half_cosine(start, first, count)


def _half_cosine(start: float, first: int, count: int):
    """`start` until update `first`, then down to zero over `count` updates."""
    if first == 0:
        return keras.optimizers.schedules.CosineDecay(start, decay_steps=count)
    # CosineDecay's warm-up from `start` to `start` holds the rate until `first`.
    return keras.optimizers.schedules.CosineDecay(
        start, decay_steps=count, warmup_target=start, warmup_steps=first
    )


def _check_trainable(recipe: dict) -> None:
    """Refuse a preset that a tool makes: its family's presets all are (they start
    from another model's networks), or its card names the tool."""
    made_by = recipe["training"].get("made_by")
    if made_by is not None:
        raise ValueError(
            f"{recipe.get('name', 'this preset')} is not trained by keras-gen train: "
            f"make it with {made_by}"
        )
    made_by = zoo.model_class(recipe).made_by
    if made_by is not None:
        raise ValueError(
            f"{recipe['model']['class']} presets are not trained from scratch by "
            f"keras-gen train: make one with {made_by}"
        )


def _or_recipe(recipe, epochs, batch_size, seed):
    """Each setting as given, or the recipe's where it was not (None)."""
    plan = recipe["training"]
    return (
        plan["epochs"] if epochs is None else epochs,
        plan["batch_size"] if batch_size is None else batch_size,
        plan["seed"] if seed is None else seed,
    )


def _training_data(spec, splits):
    """The split the recipe trains on: images, and labels if the card asks for them."""
    images = splits.images(spec["split"])
    labels = splits.labels(spec["split"]) if spec.get("labels") else None
    if spec.get("labels") and labels is None:
        raise data.DataSourceError(
            f"the recipe trains on labels, and {spec['dataset']}'s source has none"
        )
    return images, labels


def _steps_per_epoch(steps_per_epoch, batch_size, images, recipe):
    """Steps in an epoch: given, or one pass over the images in whole calls of the
    recipe's `steps_per_execution` (Keras runs whole calls, past an epoch's end)."""
    dataset = recipe["data"]["dataset"]
    per_call = recipe["training"]["compile"].get("steps_per_execution") or 1
    if steps_per_epoch is not None and steps_per_epoch % per_call:
        raise ValueError(
            f"steps_per_epoch (--steps-per-epoch) {steps_per_epoch} is not a multiple "
            f"of the recipe's steps_per_execution {per_call}; Keras would run past "
            "the end of each epoch. Choose a multiple of it."
        )
    steps = steps_per_epoch or len(images) // batch_size // per_call * per_call
    if steps < 1:
        calls = f" in calls of {per_call} steps" if per_call > 1 else ""
        raise ValueError(
            f"batch size {batch_size} is larger than the {len(images)} training "
            f"images of {dataset}{calls}; use a smaller batch"
        )
    return steps


def _settings(preset, recipe, images, labels, distribution):
    """What identifies a run besides its counts: a checkpoint resumes only the same."""
    return {
        "preset": str(preset),
        "model": recipe["model"],
        "compile": recipe["training"]["compile"],
        "data": _data_identity(recipe["data"], images, labels),
        "binarize": recipe["data"].get("binarize", False),
        "replicas": distribution.num_replicas_in_sync,
    }


def _check_settings(epochs, steps_per_epoch, batch_size, seed, checkpoint_every):
    """Refuse settings that cannot describe a run, naming the flag."""
    for name, value in (
        ("epochs", epochs),
        ("steps_per_epoch", steps_per_epoch),
        ("batch_size", batch_size),
        ("checkpoint_every", checkpoint_every),
    ):
        if value is not None and (not _is_int(value) or value < 1):
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{name} ({flag}) must be a positive integer, got {value!r}"
            )
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(
            f"seed (--seed) must be an integer from 0 to 2**32 - 1, got {seed!r}"
        )


def check_curve(eval_every, eval_samples, epochs: int) -> int | None:
    """Refuse curve settings that give no curve, naming the flag; the samples per
    point (default EVAL_SAMPLES), or None without a curve."""
    if eval_every is None:
        if eval_samples is not None:
            raise ValueError(
                "eval_samples (--eval-samples) sets the samples of the training "
                "curve; give eval_every (--eval-every) too"
            )
        return None
    if not _is_int(eval_every) or eval_every < 1:
        raise ValueError(
            f"eval_every (--eval-every) must be a positive integer, got {eval_every!r}"
        )
    if eval_every > epochs:
        raise ValueError(
            f"eval_every (--eval-every) {eval_every} is more than the {epochs} "
            f"epochs, so the curve would have no point; use at most {epochs}"
        )
    eval_samples = EVAL_SAMPLES if eval_samples is None else eval_samples
    if not _is_int(eval_samples) or eval_samples < 2:
        raise ValueError(
            "eval_samples (--eval-samples) must be an integer of at least 2, "
            f"got {eval_samples!r}"
        )
    return eval_samples


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_replicas(batch_size, distribution):
    replicas = distribution.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"batch size {batch_size} does not split across {replicas} replicas; "
            f"use a multiple of {replicas}"
        )


def _run_recipe(recipe, seed):
    """The card a run starts from: its recipe, no earlier results, and the run's seed
    in the model's config if the model takes one (a config is constructor arguments)."""
    config = dict(recipe["model"]["config"])
    if "seed" in inspect.signature(zoo.model_class(recipe)).parameters:
        config["seed"] = seed
    return {
        **{
            k: v
            for k, v in recipe.items()
            if k not in ("metrics", "figures", "training_curve")
        },
        "model": {**recipe["model"], "config": config},
    }


def _data_identity(spec, images, labels):
    """What a checkpoint's data was: dataset, split, size and a hash of the arrays."""
    digest = hashlib.sha256(np.ascontiguousarray(images).data)
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).data)
    return {
        "dataset": spec["dataset"],
        "split": spec["split"],
        "count": len(images),
        "sha256": digest.hexdigest(),
    }


def mixed_precision_policy() -> str:
    """float16 with loss scaling on GPUs; bfloat16 on CPUs, whose bfloat16
    instructions (AVX512-BF16, AMX) run it, where float16 would be emulated."""
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16"


# CPU feature flags of bfloat16 arithmetic: x86's AVX512-BF16 and AMX, Arm's BF16.
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_runs_bfloat16() -> bool | None:
    """Whether this CPU has bfloat16 instructions (Linux's cpuinfo says); None when
    unknown. Without them bfloat16 is emulated and slower than float32, as
    tools/benchmark.py's mixed-precision column shows on such a CPU."""
    flags = evaluation.cpuinfo("flags", "Features")
    if not flags:
        return None
    return any(BFLOAT16_FLAGS & set(line.split()) for line in flags)


def _mixed_precision(requested: bool) -> str | bool:
    """The policy of --mixed-precision, or False without it; says that the policy
    slows training down on a CPU without bfloat16 instructions."""
    policy = requested and mixed_precision_policy()
    if policy == "mixed_bfloat16" and cpu_runs_bfloat16() is False:
        print(
            "keras-gen: this CPU has no bfloat16 instructions (AVX512-BF16, AMX or Arm "
            "BF16), so mixed precision is emulated and several times slower than "
            "float32 here; train without --mixed-precision on this machine",
            file=sys.stderr,
        )
    return policy


def _build(recipe, seed, distribution, mixed_precision: str | bool):
    """The recipe's compiled model, created in the strategy's scope, computing in
    the `mixed_precision` policy if given (variables and losses stay float32)."""
    keras.utils.set_random_seed(seed)
    policy = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision)
    try:
        with distribution.scope():
            model = zoo.build(recipe)
            model.compile_from_config(copy.deepcopy(recipe["training"]["compile"]))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return model


def _tensorboard(logdir, run: _Run):
    settings = run.settings
    hparams = {
        **{
            k: settings[k]
            for k in ("preset", "epochs", "batch_size", "seed", "replicas")
        },
        **{
            f"model.{k}": v
            for k, v in settings["model"]["config"].items()
            if isinstance(v, (int, float, str, bool))
        },
    }
    reference = next(
        iter(
            data.pipeline(
                run.images[:8],
                batch_size=8,
                shuffle=False,
                labels=None if run.labels is None else run.labels[:8],
                pairs=data.input_kind(settings["data"]["dataset"]),
            )
        )
    )
    return TensorBoard(logdir, hparams, reference_images=reference)


def _training_curve(run: _Run, state: _TrainingState) -> _TrainingCurve:
    """The callback measuring the curve's points on a one-device copy of the model.

    A model or data that cannot give a point is refused here, before training.
    """
    measured = _one_device_copy(run.recipe)
    _curve_metric(measured, run.recipe["data"]["dataset"])
    try:
        run.splits.images("test")
    except (data.DataSourceError, data.DataError) as error:
        raise type(error)(
            f"eval_every (--eval-every) measures on the test split: {error}"
        ) from None

    def measure(model):
        measured.set_weights(model.get_weights())
        return curve_point(
            measured,
            run.recipe["data"],
            run.splits,
            run.command,
            seed=run.settings["seed"],
            samples=run.settings["eval_samples"],
            settings=run.recipe["training"].get("evaluation"),
        )

    return _TrainingCurve(state, measure, run.settings)


def curve_point(
    model: keras.Model,
    data_spec: dict,
    splits: data.Splits,
    command: str,
    *,
    seed: int,
    samples: int,
    settings: dict | None = None,
) -> tuple[str, float]:
    """(name, value) of `evaluate`'s headline number (test NLL or accuracy, FID) for
    `model`, on `samples` samples and as many test images spread over the split.

    `settings`: the recipe's end-of-training `evaluate` arguments; the count and the
    parts measured (only those that hold the headline number) are the curve's own.
    """
    pattern, extractor = _curve_metric(model, data_spec["dataset"])
    sizes = {**(settings or {}), "num_samples": samples, "measure": ("test", "samples")}
    report = evaluation.evaluate(
        model,
        data_spec,
        command,
        seed=seed,
        feature_extractor=extractor,
        splits=_SpreadTestImages(splits, samples),
        **sizes,
    )
    return _headline(report, pattern)


def _one_device_copy(recipe: dict) -> keras.Model:
    """A fresh compiled model outside any strategy, to measure trained weights in."""
    model = zoo.build(recipe)
    model.compile_from_config(copy.deepcopy(recipe["training"]["compile"]))
    return model


def _curve_metric(model, dataset) -> tuple[str, str]:
    """(pattern of the metric's name, feature extractor) of `model`'s training curve."""
    for capability, pattern, extractor in CURVE_METRICS:
        if not model.can(capability):
            continue
        if extractor == "auto":
            # A paired dataset's images are those of the dataset it is made from.
            source = data.REGISTRY[dataset].made_from or dataset
            try:
                features.extractor(extractor, source)
            except ValueError as error:
                raise ValueError(
                    f"eval_every (--eval-every) plots the FID by {source}'s "
                    f"classifier preset, which is missing: {error}"
                ) from None
        return pattern, extractor
    raise ValueError(
        f"a {type(model).__name__} reports no test NLL, FID or accuracy to plot; "
        "train it without eval_every (--eval-every)"
    )


def _headline(report: dict, pattern: str) -> tuple[str, float]:
    """(name, value) of the report's first metric whose name matches `pattern`."""
    for metric in report["metrics"]:
        if re.match(pattern, metric["name"]):
            return metric["name"], metric["value"]
    names = ", ".join(metric["name"] for metric in report["metrics"])
    raise TrainingError(
        f"evaluate reported no metric matching {pattern!r} for the training curve; "
        f"it reported: {names or 'nothing'}"
    )


def _resume(model, state, curve, settings):
    """Load the run's checkpoint, if any, and the curve's points up to its step."""
    done = state.restore(model)
    if done:
        total_steps = settings["epochs"] * settings["steps_per_epoch"]
        print(f"resuming at step {done} of {total_steps} from {state.folder}")
    if curve is not None:
        curve.resume(model)


def _fit(model, state, run: _Run, callbacks, verbose):
    """Fit from the step the model has reached until the last step."""
    settings = run.settings
    steps_per_epoch = settings["steps_per_epoch"]
    total_steps = settings["epochs"] * steps_per_epoch
    done = step(model)
    if verbose is None:  # a progress bar in a terminal, one line per epoch in a log
        verbose = 1 if sys.stdout.isatty() else 2
    # A run interrupted mid-epoch first finishes that epoch, then runs the rest.
    while done < total_steps and state.diverged is None:
        epoch, into_epoch = divmod(done, steps_per_epoch)
        model.fit(
            data.training_pipeline(
                run.images,
                batch_size=settings["batch_size"],
                seed=settings["seed"],
                start_step=done,
                binarize=settings["binarize"],
                labels=run.labels,
                pairs=data.input_kind(settings["data"]["dataset"]),
            ),
            initial_epoch=epoch,
            epochs=epoch + 1 if into_epoch else settings["epochs"],
            steps_per_epoch=steps_per_epoch - into_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
        done = step(model)
    # Every worker prints this; equal lines prove the replicas ended in sync.
    digest = hashlib.sha256(
        b"".join(np.asarray(w).tobytes() for w in model.get_weights())
    )
    print(f"final weights sha256 {digest.hexdigest()}")
    if state.diverged is not None:
        raise TrainingDiverged(_divergence_message(state))


def _divergence_message(state):
    at, name, value = state.diverged
    if state.saved_step is None:
        kept = (
            "No checkpoint was written before it; lower the learning rate or "
            "change the seed and train again."
        )
    else:
        kept = (
            f"The last good checkpoint (step {state.saved_step}) is kept in "
            f"{state.folder}; lower the learning rate or change the seed, then run "
            "the same command to continue from it."
        )
    return f"training diverged at step {at}: {name} is {value}. {kept}"


def _measure_and_write(model, run: _Run, state, output, overwrite, curve):
    """Measure a one-device copy of the trained model and write the preset folder.

    A one-device copy's numbers do not depend on the strategy that trained it, and
    no uneven last batch is split across replicas.
    """
    history = model.history.history if getattr(model, "history", None) else {}
    final = {name: float(values[-1]) for name, values in history.items() if values}
    metrics = [
        {"name": f"train {name} (last epoch)", "value": value, "command": run.command}
        for name, value in final.items()
    ]
    trained = _one_device_copy(run.recipe)
    trained.set_weights(model.get_weights())
    metrics += evaluation.evaluate(
        trained,
        run.recipe["data"],
        run.command,
        seed=run.settings["seed"],
        splits=run.splits,
        **run.recipe["training"].get("evaluation", {}),
    )["metrics"]
    generative = trained.can(base.SAMPLES)
    trained_card = {
        **run.recipe,
        "trained": _trained_record(run, state, output, generative),
        "metrics": metrics,
    }
    spec = run.recipe["data"]
    entries, figures = _figures(trained, spec, run.splits, output, metrics)
    if entries:
        trained_card["figures"] = entries
    if curve is not None:
        curve.add_to(trained_card, figures, run.command)
    samples = trained.generate(64, seed=SAMPLE_SEED) if generative else None
    return zoo.write(output, trained, trained_card, samples, overwrite, figures)


def _trained_record(run: _Run, state, output, generative: bool) -> dict:
    """The card's record of how the preset was trained, with what, and how long."""
    settings = run.settings
    samples_command = (
        f"keras-gen sample {_preset_argument(output)} -n 64 --seed {SAMPLE_SEED} "
        "-o samples.png"
    )
    return {
        "command": run.command,
        **({"samples_command": samples_command} if generative else {}),
        "epochs": settings["epochs"],
        "steps": settings["epochs"] * settings["steps_per_epoch"],
        **{
            k: settings[k]
            for k in ("batch_size", "seed", "replicas", "mixed_precision")
        },
        **_if_set(settings, "init_from"),
        **_if_set(settings, "learning_rate_decay"),
        "wall_time_s": round(state.wall_time_s, 1),
        "hardware": evaluation.hardware(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_gen": __version__,
        "keras_gen_commit": source_revision(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _if_set(settings: dict, name: str) -> dict:
    """{name: its setting}, or nothing when the run did not set it."""
    return {} if settings[name] is None else {name: settings[name]}


def _figures(model, spec, splits, output, metrics) -> tuple[list, dict]:
    """The figures a trained preset ships besides samples.png, each with the command
    that redraws it: ([card entries], {file: (images, columns)}). `metrics` are the
    card's, which a diffusion model's steps figure is drawn from."""
    entries, figures = _translation_figure(model, spec, splits, output)
    per_class, shown = evaluation.per_class_figures(model, _preset_argument(output))
    entries, figures = entries + per_class, {**figures, **shown}
    if drawn := zoo.steps_tradeoff_figure({"metrics": metrics}):
        entries.append(drawn[0])
        figures[drawn[0]["file"]] = drawn[1]
    return entries, figures


def _translation_figure(model, spec, splits, output) -> tuple[list, dict]:
    """An image-to-image model's input / output / target figure of test images:
    ([card entry], {file: (images, columns)}); nothing for others."""
    if not model.can(base.TRANSLATION):
        return [], {}
    try:
        targets = splits.images("test")
    except data.DataSourceError:  # evaluate has said that there is no test split
        return [], {}
    kind = data.input_kind(spec["dataset"])
    entry = evaluation.figure_entry(_preset_argument(output), kind, splits.source)
    shown = evaluation.translation_figure(model, targets, kind)
    return [entry], {entry["file"]: shown}


def _preset_argument(output: Path) -> str:
    """How `keras-gen sample` names a preset folder: bare in the zoo, else its path."""
    if output.resolve().parent == zoo.root().resolve():
        return output.name
    return (
        str(output)
        if output.is_absolute() or str(output).startswith(".")
        else f"./{output}"
    )


def is_chief(distribution: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs and the preset (one per cluster)."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
    )


def source_revision() -> str | None:
    """The git commit of the keras_gen that trained, "+dirty" if edited; None if unknown."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / ".git").exists():
        return None
    try:

        def git(*words):
            return subprocess.run(
                ["git", "-C", str(checkout), *words],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()

        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + (
            "+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _command(preset, output, **flags) -> str:
    """The `keras-gen train` command of a run: every flag that is set, in order."""
    words = ["keras-gen", "train", str(preset)]
    for name, value in flags.items():
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    return shlex.join(words + ["--output", str(output)])
