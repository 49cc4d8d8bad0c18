"""Train a preset's recipe and write the result as a preset folder.

The recipe is the preset's card: model class and config, dataset and split,
epochs, batch size, seed and the compile config (optimizers). The whole training
state is checkpointed, atomically, beside the output folder; re-running the same
command after a crash continues from the last checkpoint. Every random draw of a
run (data order, binarization, latent noise) is a function of the seed and the
step, so a resumed run takes exactly the steps the uninterrupted one would have.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_gen
from keras_gen import _files, data, evaluation, zoo
from keras_gen import images as images_module

SAMPLE_SEED = 0


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN or infinite; the last good checkpoint is kept."""


class _TrainingState(keras.callbacks.Callback):
    """Checkpoints the whole training state and stops at the first non-finite metric.

    The weights file holds the networks and every optimizer's state, including its
    iteration count, which is the run's step: data order and noise follow from it.
    Each write goes to a temporary file renamed into place, so a crash mid-write
    leaves the previous checkpoint intact.
    """

    WEIGHTS = "state.weights.h5"

    def __init__(self, folder: Path, every_steps: int, write: bool):
        super().__init__()
        self.folder, self.every_steps, self.write = folder, every_steps, write
        progress = folder / "progress.json"
        self.previous_wall_time = (
            json.loads(progress.read_text())["wall_time_s"]
            if progress.exists()
            else 0.0
        )
        self.start = time.monotonic()
        self.diverged = None

    @property
    def wall_time_s(self) -> float:
        return self.previous_wall_time + time.monotonic() - self.start

    def restore(self, model: keras.Model) -> int:
        """Load the last checkpoint into `model`, if there is one; return its step."""
        if (self.folder / self.WEIGHTS).exists():
            model.load_weights(self.folder / self.WEIGHTS)
        return step(model)

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not np.isfinite(float(value)):
                self.diverged = (step(self.model), name, float(value))
                self.model.stop_training = True
                return
        if step(self.model) % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is None:
            self.save()

    def save(self):
        if not self.write:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with _files.atomic_path(self.folder / self.WEIGHTS) as temporary:
            self.model.save_weights(temporary)
        progress = {"step": step(self.model), "wall_time_s": self.wall_time_s}
        _files.write_text(self.folder / "progress.json", json.dumps(progress))


class TensorBoard(keras.callbacks.Callback):
    """TensorBoard logs a GAN or VAE needs, which keras.callbacks.TensorBoard misses.

    Every tracked metric per step (`step/...`) and per epoch (`epoch/...`), the
    learning rate of every optimizer (a GAN has two), a sample grid drawn with the
    same seed every epoch, for VAEs the reconstructions of a fixed batch, and the
    run's hyperparameters (HParams plugin). Steps are optimizer iterations, so a
    resumed run continues its curves.
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
            if hasattr(self.model, "generate"):
                tf.summary.image(
                    "samples", _grid_batch(self.model.generate(16, seed=SAMPLE_SEED))
                )
            if self.reference_images is not None and hasattr(self.model, "reconstruct"):
                images, labels = (
                    self.reference_images
                    if isinstance(self.reference_images, tuple)
                    else (self.reference_images, None)
                )
                extra = {} if labels is None else {"labels": labels}
                pairs = tf.concat([images, self.model.reconstruct(images, **extra)], 0)
                tf.summary.image(
                    "reconstructions", _grid_batch(pairs, columns=len(images))
                )
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()

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


STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


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
) -> Path:
    """Train `preset`'s recipe (overrides as given) and write a preset folder at `output`.

    `batch_size` is the global batch: under a strategy each replica takes its share.
    """
    recipe = zoo.card(preset)
    plan = recipe["training"]
    epochs = epochs or plan["epochs"]
    batch_size = batch_size or plan["batch_size"]
    seed = plan["seed"] if seed is None else seed
    output = Path(output)
    command = command or _command(
        preset, output, epochs, steps_per_epoch, batch_size, data_source, seed
    )

    keras.utils.set_random_seed(seed)
    # What a trained preset adds to its recipe describes that training, not this one.
    recipe = {
        **{k: v for k, v in recipe.items() if k not in ("metrics", "figures")},
        "model": {
            **recipe["model"],
            "config": {**recipe["model"]["config"], "seed": seed},
        },
    }
    distribution = distribution or strategy()
    policy = keras.mixed_precision.global_policy()
    if mixed_precision:  # float16 compute for GPUs; variables and losses stay float32
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with distribution.scope():
            model = zoo.build(recipe)
            model.compile_from_config(plan["compile"])
    finally:
        keras.mixed_precision.set_global_policy(policy)
    spec = recipe["data"]
    train_images = data.load_images(spec["dataset"], spec["split"], source=data_source)
    train_labels = (
        data.load_labels(spec["dataset"], spec["split"], source=data_source)
        if spec.get("labels")
        else None
    )
    steps_per_epoch = steps_per_epoch or len(train_images) // batch_size
    total_steps = epochs * steps_per_epoch
    chief = is_chief(distribution)

    state_dir = output.with_name(output.name + ".train-state")
    state = _TrainingState(state_dir, checkpoint_every, write=chief)
    done = state.restore(model)
    callbacks = [state]
    if logdir is not None and chief:
        hparams = {
            "preset": str(preset),
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "replicas": distribution.num_replicas_in_sync,
            **{
                f"model.{k}": v
                for k, v in recipe["model"]["config"].items()
                if isinstance(v, (int, float, str, bool))
            },
        }
        reference = next(
            iter(
                data.pipeline(
                    train_images[:8],
                    batch_size=8,
                    shuffle=False,
                    labels=None if train_labels is None else train_labels[:8],
                )
            )
        )
        callbacks.append(TensorBoard(logdir, hparams, reference_images=reference))
    if done:
        print(f"resuming at step {done} of {total_steps} from {state_dir}")
    if verbose is None:  # a progress bar in a terminal, one line per epoch in a log
        verbose = 1 if sys.stdout.isatty() else 2
    # A run interrupted mid-epoch first finishes that epoch, then runs the rest.
    while done < total_steps and state.diverged is None:
        epoch, into_epoch = divmod(done, steps_per_epoch)
        model.fit(
            data.training_pipeline(
                train_images,
                batch_size=batch_size,
                seed=seed,
                start_step=done,
                binarize=spec.get("binarize", False),
                labels=train_labels,
            ),
            initial_epoch=epoch,
            epochs=epoch + 1 if into_epoch else epochs,
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
        at, name, value = state.diverged
        raise TrainingDiverged(
            f"training diverged at step {at}: {name} is {value}. The last good "
            f"checkpoint is kept in {state_dir}; lower the learning rate or change "
            "the seed, then run the same command to continue from it."
        )
    if not chief:
        return output  # the chief measures and writes the preset
    history = model.history.history if getattr(model, "history", None) else {}
    final = {name: float(values[-1]) for name, values in history.items() if values}
    metrics = [
        {"name": f"train {name} (last epoch)", "value": value, "command": command}
        for name, value in final.items()
    ]
    # Measure and write a one-device copy: its numbers do not depend on the strategy
    # that trained it, and no uneven last batch is split across replicas.
    trained = zoo.build(recipe)
    trained.compile_from_config(plan["compile"])
    trained.set_weights(model.get_weights())
    metrics += evaluation.evaluate(
        trained, spec, command, seed=seed, data_source=data_source
    )["metrics"]

    generative = hasattr(trained, "generate")
    trained_card = {
        **recipe,
        "trained": {
            "command": command,
            **(
                {
                    "samples_command": f"keras-gen sample {output.name} -n 64 --seed {SAMPLE_SEED} -o samples.png"
                }
                if generative
                else {}
            ),
            "epochs": epochs,
            "steps": total_steps,
            "batch_size": batch_size,
            "seed": seed,
            "replicas": distribution.num_replicas_in_sync,
            "mixed_precision": mixed_precision,
            "wall_time_s": round(state.wall_time_s, 1),
            "hardware": evaluation.hardware(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_gen": keras_gen.__version__,
            "keras_gen_commit": source_revision(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "metrics": metrics,
    }
    samples = trained.generate(64, seed=SAMPLE_SEED) if generative else None
    zoo.write(output, trained, trained_card, samples)
    shutil.rmtree(state_dir, ignore_errors=True)
    return output


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


def _command(preset, output, epochs, steps_per_epoch, batch_size, data_source, seed):
    words = ["keras-gen", "train", str(preset), "--epochs", str(epochs)]
    if steps_per_epoch:
        words += ["--steps-per-epoch", str(steps_per_epoch)]
    words += ["--batch-size", str(batch_size), "--seed", str(seed)]
    if data_source:
        words += ["--data", str(data_source)]
    return shlex.join(words + ["--output", str(output)])
