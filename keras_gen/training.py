"""Train a preset's recipe and write the result as a preset folder.

The recipe is the preset's card: model class and config, dataset and split,
epochs, batch size, seed and the compile config (optimizers). Training state is
checkpointed after every epoch beside the output folder, so re-running the same
command after a crash continues where it stopped.
"""

import json
import os
import platform
import shlex
import shutil
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


class _Progress(keras.callbacks.Callback):
    """Keeps the training wall time across restarts, in the state folder."""

    def __init__(self, state_dir: Path):
        super().__init__()
        self.file = state_dir / "progress.json"
        self.previous = (
            json.loads(self.file.read_text())["wall_time_s"]
            if self.file.exists()
            else 0.0
        )
        self.start = time.monotonic()

    @property
    def wall_time_s(self):
        return self.previous + time.monotonic() - self.start

    def on_epoch_end(self, epoch, logs=None):
        _files.write_text(
            self.file, json.dumps({"wall_time_s": self.wall_time_s, "epoch": epoch + 1})
        )


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
            tf.summary.image(
                "samples", _grid_batch(self.model.generate(16, seed=SAMPLE_SEED))
            )
            if self.reference_images is not None and hasattr(self.model, "reconstruct"):
                pairs = tf.concat(
                    [
                        self.reference_images,
                        self.model.reconstruct(self.reference_images),
                    ],
                    0,
                )
                tf.summary.image(
                    "reconstructions",
                    _grid_batch(pairs, columns=len(self.reference_images)),
                )
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()

    def _step(self):
        return max(
            int(optimizer.iterations) for optimizer in optimizers(self.model).values()
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
    gpus = tf.config.list_logical_devices("GPU")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
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
    recipe = {
        **recipe,
        "model": {
            **recipe["model"],
            "config": {**recipe["model"]["config"], "seed": seed},
        },
    }
    distribution = distribution or strategy()
    with distribution.scope():
        model = zoo.build(recipe)
        model.compile_from_config(plan["compile"])
    spec = recipe["data"]
    train_images = data.load_images(spec["dataset"], spec["split"], source=data_source)
    train_data = data.pipeline(
        train_images,
        batch_size=batch_size,
        seed=seed,
        binarize="dynamic" if spec.get("binarize") else None,
        drop_remainder=True,
    )
    steps_per_epoch = steps_per_epoch or int(train_data.cardinality())

    state_dir = output.with_name(output.name + ".train-state")
    state_dir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(state_dir)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(state_dir), delete_checkpoint=False),
        progress,
    ]
    if logdir is not None:
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
            iter(data.pipeline(train_images[:8], batch_size=8, shuffle=False))
        )
        callbacks.append(TensorBoard(logdir, hparams, reference_images=reference))
    model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the pipeline shuffles
        callbacks=callbacks,
        verbose=verbose if verbose is not None else (1 if sys.stdout.isatty() else 2),
    )
    final = (
        {name: float(value[-1]) for name, value in model.history.history.items()}
        if model.history.history
        else {}
    )
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
    )

    trained_card = {
        **recipe,
        "trained": {
            "command": command,
            "samples_command": f"keras-gen sample {output.name} -n 64 --seed {SAMPLE_SEED} -o samples.png",
            "epochs": epochs,
            "steps": epochs * steps_per_epoch,
            "batch_size": batch_size,
            "seed": seed,
            "replicas": distribution.num_replicas_in_sync,
            "wall_time_s": round(progress.wall_time_s, 1),
            "hardware": hardware(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_gen": keras_gen.__version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "metrics": metrics,
    }
    zoo.write(output, trained, trained_card, trained.generate(64, seed=SAMPLE_SEED))
    shutil.rmtree(state_dir)
    return output


def hardware() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    accelerators = f"{len(gpus)} GPU" if gpus else "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {accelerators}"


def _command(preset, output, epochs, steps_per_epoch, batch_size, data_source, seed):
    words = ["keras-gen", "train", str(preset), "--epochs", str(epochs)]
    if steps_per_epoch:
        words += ["--steps-per-epoch", str(steps_per_epoch)]
    words += ["--batch-size", str(batch_size), "--seed", str(seed)]
    if data_source:
        words += ["--data", str(data_source)]
    return shlex.join(words + ["--output", str(output)])
