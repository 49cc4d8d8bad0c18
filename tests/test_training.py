import copy
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from test_zoo import TINY_CARD

from keras_gen import _files, cli, data, evaluation, training, zoo

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path)


def write_recipe(tmp_path):
    """A tiny 28x28 DCGAN recipe and a 12-image MNIST-like source for it."""
    card = copy.deepcopy(TINY_CARD)
    card["model"]["config"]["image_size"] = 28
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / zoo.CARD).write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    source = tmp_path / "mnist.npz"
    np.savez(
        source,
        x_train=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
    )
    return folder, source


def test_train_command_writes_a_loadable_preset(recipe, tmp_path, capsys):
    folder, source = recipe
    output = tmp_path / "out" / "trained"
    argv = [
        "train",
        str(folder),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--seed",
        "3",
        "--data",
        str(source),
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 0
    card = zoo.card(output)
    assert card["trained"]["command"] == "keras-gen " + " ".join(argv)
    assert card["trained"]["steps"] == 4 and card["trained"]["seed"] == 3
    assert card["model"]["config"]["seed"] == 3
    names = {m["name"] for m in card["metrics"]}
    assert (
        "train generator_loss (last epoch)" in names
        and "test discriminator_loss" in names
    )
    model = zoo.load(output)
    assert model.generate(3, seed=0).shape == (3, 28, 28, 1)
    assert not output.with_name("trained.train-state").exists()
    assert sorted(os.listdir(output.parent)) == [
        "trained"
    ]  # nothing half-written beside it

    assert (
        cli.main(
            [
                "sample",
                str(output),
                "-n",
                "5",
                "--seed",
                "1",
                "-o",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    grid = tf.io.decode_png((tmp_path / "s.png").read_bytes())
    assert grid.shape == (2 + 2 * 30, 2 + 3 * 30, 1)

    # The lock a dead process left does not block, and keras_gen's own preset
    # folder is replaced by the same command.
    output.with_name("trained.lock").write_text("999999999\n")
    (output / "model.weights.h5").write_bytes(b"stale")
    assert cli.main(argv) == 0
    assert zoo.load(output).generate(1, seed=0).shape == (1, 28, 28, 1)
    assert sorted(os.listdir(output.parent)) == ["trained"]


def train_argv(folder, source, output, *flags):
    return [
        "train",
        str(folder),
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "4",
        "--data",
        str(source),
        *flags,
        "--output",
        str(output),
    ]


def test_a_conditional_preset_ships_rows_per_class_that_its_command_redraws(
    recipe, tmp_path
):
    folder, source = recipe
    card = json.loads((folder / zoo.CARD).read_text())
    card["model"] = {
        "class": "ConditionalGAN",
        "config": {**card["model"]["config"], "conditions": data.class_names("mnist")},
    }
    card["data"]["labels"] = True
    card["training"]["evaluation"] = {"num_samples": 20}
    (folder / zoo.CARD).write_text(json.dumps(card))
    with np.load(source) as arrays:
        labelled = {**arrays, "y_train": np.arange(12) % 10, "y_test": np.arange(5)}
    np.savez(source, **labelled)
    output = tmp_path / "cgan"
    assert cli.main(train_argv(folder, source, output)) == 0
    (entry,) = zoo.card(output)["figures"]
    assert entry["file"] == "per_class_digit.png"
    command = shlex.split(entry["command"])
    assert command[:2] == ["keras-gen", "sample"] and command[-2:] == [
        "-o",
        entry["file"],
    ]
    redrawn = tmp_path / "redrawn.png"
    assert cli.main([*command[1:-2], "-o", str(redrawn)]) == 0
    assert redrawn.read_bytes() == (output / entry["file"]).read_bytes()


def test_two_cpu_replicas_train_the_same_preset_as_one_device(recipe, tmp_path):
    folder, source = recipe
    card = json.loads((folder / zoo.CARD).read_text())
    # Plain SGD: a loss weighted by the replica count would change the update.
    sgd = keras.optimizers.serialize(keras.optimizers.SGD(0.05))
    card["training"]["compile"] = {
        "generator_optimizer": sgd,
        "discriminator_optimizer": sgd,
    }
    (folder / zoo.CARD).write_text(json.dumps(card))
    outputs = {}
    for replicas in (None, 2):
        output = tmp_path / f"replicas-{replicas}"
        argv = train_argv(folder, source, output, "--eval-every", "1")
        argv += ["--eval-samples", "4"]
        if replicas:
            argv += ["--cpu-replicas", str(replicas)]
        script = (
            "import sys; from keras_gen import cli; sys.exit(cli.main(sys.argv[1:]))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[replicas] = zoo.load(output)
        assert zoo.card(output)["trained"]["replicas"] == (replicas or 1)
    for one, two in zip(outputs[None].get_weights(), outputs[2].get_weights()):
        np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-5)
    one, two = (zoo.card(tmp_path / f"replicas-{r}") for r in (None, 2))
    # The training curve too is measured on one device, whatever trained.
    (first,), (second,) = (card["training_curve"]["points"] for card in (one, two))
    assert first["value"] == pytest.approx(second["value"], rel=1e-4)
    for a, b in zip(one["metrics"], two["metrics"]):
        assert a["name"] == b["name"]
        # The weights' tolerance: a KID's spread over subsets, a difference of
        # large kernel sums, moved by 1.6e-4 of itself between 1 and 2 replicas.
        if a["name"].startswith("seconds"):  # wall time is no function of weights
            continue
        assert a["value"] == pytest.approx(b["value"], rel=1e-4, abs=1e-5), a["name"]


def run_cli(argv, **kwargs):
    """keras-gen in a fresh process, as a user would run it."""
    script = "import sys; from keras_gen import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def vae_recipe(folder):
    card = json.loads((folder / zoo.CARD).read_text())
    card["model"] = {
        "class": "VAE",
        "config": {"image_shape": [28, 28, 1], "latent_dim": 2, "filters": [4]},
    }
    card["training"]["compile"] = {
        "optimizer": keras.optimizers.serialize(keras.optimizers.Adam(1e-3))
    }
    card["data"]["binarize"] = True
    (folder / zoo.CARD).write_text(json.dumps(card))


def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(recipe, tmp_path):
    folder, source = recipe
    vae_recipe(folder)
    argv = [
        "train",
        str(folder),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "300",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "50",
        "--data",
        str(source),
    ]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = run_cli([*argv, "--output", str(killed)])
    progress = killed.with_name("killed.train-state") / "progress.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if progress.exists() and 100 <= json.loads(progress.read_text())["step"] < 300:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpointed = json.loads(progress.read_text())["step"]
    assert 100 <= checkpointed < 300 and not killed.exists()

    resumed = run_cli([*argv, "--output", str(killed)])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    resumed_at = int(re.search(r"resuming at step (\d+) of 600", out).group(1))
    assert resumed_at >= checkpointed and resumed_at % 50 == 0
    assert zoo.card(killed)["trained"]["steps"] == 600

    uninterrupted = run_cli([*argv, "--output", str(straight)])
    _, err = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, err[-3000:]
    # Data order, binarization and noise follow from the step: resuming changes nothing.
    for a, b in zip(zoo.load(killed).get_weights(), zoo.load(straight).get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def set_learning_rate(folder, learning_rate):
    card = json.loads((folder / zoo.CARD).read_text())
    card["training"]["compile"] = {
        "optimizer": keras.optimizers.serialize(keras.optimizers.Adam(learning_rate))
    }
    (folder / zoo.CARD).write_text(json.dumps(card))


def trainable(preset):
    return [np.asarray(w) for w in zoo.load(preset).trainable_weights]


def test_init_from_starts_from_the_presets_weights_and_records_them(recipe, tmp_path):
    folder, source = recipe
    vae_recipe(folder)
    parent, tuned, again = (tmp_path / n for n in ("parent", "tuned", "again"))
    assert cli.main(train_argv(folder, source, parent, "--epochs", "1")) == 0
    initialized = [
        np.asarray(w) for w in zoo.load(parent, weights=False).trainable_weights
    ]
    assert not all(map(np.array_equal, initialized, trainable(parent)))
    # At learning rate 0 a run keeps the weights it starts from.
    set_learning_rate(folder, 0.0)
    tune = train_argv(
        folder, source, tuned, "--epochs", "1", "--init-from", str(parent)
    )
    assert cli.main(tune) == 0
    for a, b in zip(trainable(tuned), trainable(parent), strict=True):
        np.testing.assert_array_equal(a, b)

    parent_card, trained = zoo.card(parent), zoo.card(tuned)["trained"]
    sha256 = parent_card["weights"][zoo.WEIGHTS]["sha256"]
    assert trained["command"] == shlex.join(["keras-gen", *tune])
    assert trained["init_from"] == {
        "preset": str(parent),
        "weights_sha256": sha256,
        "steps": 3,
        "wall_time_s": parent_card["trained"]["wall_time_s"],
    }
    assert (
        f"started from the weights of `{parent}` (sha256 `{sha256}`)"
        in (tuned / "README.md").read_text()
    )
    # A chain counts all the training its start had had.
    assert cli.main(train_argv(folder, source, again, "--init-from", str(tuned))) == 0
    assert zoo.card(again)["trained"]["init_from"]["steps"] == 6


def test_init_from_refuses_another_network_and_altered_weights(
    recipe, tmp_path, capsys
):
    folder, source = recipe
    parent, output = tmp_path / "parent", tmp_path / "tuned"
    assert cli.main(train_argv(folder, source, parent, "--epochs", "1")) == 0
    capsys.readouterr()
    wider = tmp_path / "wider"
    wider.mkdir()
    card = json.loads((folder / zoo.CARD).read_text())
    card["model"]["config"]["latent_dim"] = 5
    (wider / zoo.CARD).write_text(json.dumps(card))
    assert cli.main(train_argv(wider, source, output, "--init-from", str(parent))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latent_dim: its 4, recipe 5" in err

    with open(parent / zoo.WEIGHTS, "ab") as weights:
        weights.write(b"\0")
    assert cli.main(train_argv(folder, source, output, "--init-from", str(parent))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err
    assert not output.exists() and not output.with_name("tuned.train-state").exists()


def test_a_fine_tuning_run_resumes_from_its_checkpoint_not_the_preset(
    recipe, tmp_path, monkeypatch, capsys
):
    folder, source = recipe
    vae_recipe(folder)
    parent, output = tmp_path / "parent", tmp_path / "tuned"
    assert cli.main(train_argv(folder, source, parent, "--epochs", "1")) == 0
    run = {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "data_source": source}
    run["init_from"] = parent
    reached = []

    def crash(model, *args):
        reached.append([np.asarray(w) for w in model.trainable_weights])
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(training, "_measure_and_write", crash)
        with pytest.raises(KeyboardInterrupt):
            training.train(folder, output, **run)
    # The checkpoint is the fine-tuning run's: a run from scratch may not take it.
    with pytest.raises(training.CheckpointMismatch, match="init_from"):
        training.train(folder, output, **{**run, "init_from": None})
    capsys.readouterr()
    training.train(folder, output, **run)
    assert "resuming at step 3 of 3" in capsys.readouterr().out
    for a, b in zip(trainable(output), reached[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(
        np.array_equal(a, b) for a, b in zip(trainable(output), trainable(parent))
    )


def test_a_decayed_run_anneals_to_zero_resumes_only_as_itself_and_keeps_the_recipe(
    recipe, tmp_path, monkeypatch
):
    folder, source = recipe
    output = tmp_path / "annealed"
    run = {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "data_source": source}
    run["learning_rate_decay"] = "cosine"
    rates = {}

    def crash(model, *args):
        rates.update(
            {n: float(o.learning_rate) for n, o in training.optimizers(model).items()}
        )
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(training, "_measure_and_write", crash)
        with pytest.raises(KeyboardInterrupt):
            training.train(folder, output, **run)
    assert rates == {"generator_optimizer": 0.0, "discriminator_optimizer": 0.0}
    with pytest.raises(training.CheckpointMismatch, match="learning_rate_decay"):
        training.train(folder, output, **{**run, "learning_rate_decay": None})
    training.train(folder, output, **run)
    card = zoo.card(output)
    assert card["trained"]["learning_rate_decay"] == "cosine"
    assert "to zero by a half cosine" in (output / "README.md").read_text()
    assert "--learning-rate-decay cosine" in card["trained"]["command"]
    # What a run from scratch of the written preset does: the recipe's own rate.
    assert card["training"]["compile"] == zoo.card(folder)["training"]["compile"]


def test_steps_per_execution_changes_the_calls_not_the_training(
    recipe, tmp_path, capsys
):
    folder, source = recipe
    card = json.loads((folder / zoo.CARD).read_text())
    weights = {}
    for per_call in (1, 4):
        card["training"]["compile"] = {"steps_per_execution": per_call}
        (folder / zoo.CARD).write_text(json.dumps(card))
        output = tmp_path / f"per-call-{per_call}"
        argv = ["train", str(folder), "--epochs", "2", "--steps-per-epoch", "8"]
        argv += ["--batch-size", "4", "--data", str(source), "--output", str(output)]
        assert cli.main(argv) == 0
        assert zoo.card(output)["trained"]["steps"] == 16
        loaded = zoo.load(output)
        assert loaded.steps_per_execution == per_call  # the recipe's, round-tripped
        weights[per_call] = loaded.get_weights()
    # Noise and data follow the step, so calls of 4 steps train the same model.
    for one, four in zip(weights[1], weights[4]):
        np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-6)
    argv[argv.index("8")] = "6"  # Keras would run 8 steps an epoch in calls of 4
    assert cli.main([*argv, "--overwrite"]) == 2
    assert (
        "steps_per_epoch (--steps-per-epoch) 6 is not a multiple of the recipe's "
        "steps_per_execution 4" in capsys.readouterr().err
    )


def test_checkpoints_land_on_the_call_that_crosses_each_multiple(tmp_path):
    from keras_gen import training

    model = tiny.FAMILIES["VAE"].make(seed=0)
    tiny.FAMILIES["VAE"].compile(model, keras.optimizers.Adam)
    state = training._TrainingState(tmp_path / "state", 6, True, identity={})
    state.set_model(model)
    state.on_train_begin()
    saved = []
    for reached in range(4, 25, 4):  # calls of 4 steps, a checkpoint every 6
        model.optimizer.iterations.assign(reached)
        state.on_train_batch_end(reached - 1, {"loss": 1.0})
        saved.append(state.saved_step)
    assert saved == [None, 8, 12, 12, 20, 24]


def test_non_finite_loss_stops_with_step_and_metric_and_keeps_the_checkpoint(
    recipe, tmp_path, capsys
):
    folder, source = recipe
    vae_recipe(folder)
    card = json.loads((folder / zoo.CARD).read_text())
    card["training"]["compile"] = {
        "optimizer": keras.optimizers.serialize(keras.optimizers.SGD(1e9))
    }
    (folder / zoo.CARD).write_text(json.dumps(card))
    output = tmp_path / "diverged"
    argv = [
        "train",
        str(folder),
        "--steps-per-epoch",
        "50",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--data",
        str(source),
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 2
    message = capsys.readouterr().err
    found = re.search(
        r"training diverged at step (\d+): (.+?) is (-?inf|nan)\. The last good "
        r"checkpoint \(step (\d+)\) is kept in (\S+);",
        message,
    )
    at, saved = int(found.group(1)), int(found.group(4))
    assert not output.exists()
    state = output.with_name("diverged.train-state")
    assert found.group(5) == str(state) and state.is_dir()
    assert saved == at - 1
    assert json.loads((state / "progress.json").read_text())["step"] == at - 1
    model = zoo.build(card)
    model.compile_from_config(card["training"]["compile"])
    model.load_weights(state / "state.weights.h5")
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())

    # The checkpoint belongs to that run: other settings are refused, naming them.
    assert cli.main([*argv[:-2], "--seed", "7", "--output", str(output)]) == 2
    message = capsys.readouterr().err
    assert str(state) in message and "seed: checkpoint 0, now 7" in message


@pytest.mark.parametrize("flags", [[], ["--deterministic"]])
def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(
    recipe, tmp_path, flags
):
    folder, source = recipe
    weights = {}
    for name, seed in (("first", 4), ("again", 4), ("other", 5)):
        argv = train_argv(folder, source, tmp_path / name, "--seed", str(seed))
        if flags:  # op determinism is for the whole process: run as a user would
            _, err = (process := run_cli([*argv, *flags])).communicate(timeout=600)
            assert process.returncode == 0, err[-3000:]
        else:
            assert cli.main(argv) == 0
        weights[name] = zoo.load(tmp_path / name).get_weights()
    for a, b in zip(weights["first"], weights["again"]):
        np.testing.assert_array_equal(a, b)
    assert not all(
        np.array_equal(a, b) for a, b in zip(weights["first"], weights["other"])
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_train_in_sync_and_only_the_chief_writes(
    recipe, tmp_path
):
    folder, source = recipe
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    output, logdir = tmp_path / "out", tmp_path / "logs"
    argv = [
        "train",
        str(folder),
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "4",
        "--strategy",
        "multi_worker",
        "--data",
        str(source),
        "--output",
        str(output),
        "--logdir",
        str(logdir),
    ]
    processes = []
    try:
        for index in range(2):
            config = {
                "cluster": {"worker": workers},
                "task": {"type": "worker", "index": index},
            }
            environment = {**os.environ, "TF_CONFIG": json.dumps(config)}
            processes.append(run_cli(argv, env=environment, cwd=tmp_path))
        results = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    digests = [
        re.search(r"final weights sha256 (\w+)", out).group(1) for out, _ in results
    ]
    assert digests[0] == digests[1]
    assert zoo.card(output)["trained"]["replicas"] == 2
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["logs", "out", "recipe", "mnist.npz"]
    )


CPUINFO = {  # /proc/cpuinfo, cut to what cpu_runs_bfloat16 reads
    "AVX2": "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n",
    "AVX512-BF16": "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_tile\n",
    "Arm BF16": "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n",
    "Arm": "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n",
    "no flags": "processor\t: 0\n",
}


@pytest.mark.parametrize(
    "cpu, expected",
    [("AVX2", False), ("AVX512-BF16", True), ("Arm BF16", True), ("Arm", False)]
    + [("no flags", None), ("no file", None)],
)
def test_cpu_runs_bfloat16_reads_the_flags(tmp_path, monkeypatch, cpu, expected):
    cpuinfo = tmp_path / "cpuinfo"
    if cpu in CPUINFO:
        cpuinfo.write_text(CPUINFO[cpu])
    monkeypatch.setattr(evaluation, "CPUINFO", cpuinfo)
    assert training.cpu_runs_bfloat16() is expected


@pytest.mark.parametrize("family, cpu", [("DCGAN", "AVX2"), ("VAE", "AVX512-BF16")])
def test_mixed_precision_trains_in_bfloat16_here_and_stays_finite(
    recipe, tmp_path, monkeypatch, capsys, family, cpu
):
    """...and says that it is slower on a CPU without bfloat16 instructions."""
    folder, source = recipe
    if family == "VAE":
        vae_recipe(folder)
    (tmp_path / "cpuinfo").write_text(CPUINFO[cpu])
    monkeypatch.setattr(evaluation, "CPUINFO", tmp_path / "cpuinfo")
    output = tmp_path / "mixed"
    argv = [
        "train",
        str(folder),
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "4",
        "--mixed-precision",
        "--data",
        str(source),
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 0
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    card = zoo.card(output)
    assert card["trained"]["mixed_precision"] == "mixed_bfloat16"  # no GPU here
    warned = "no bfloat16 instructions" in capsys.readouterr().err
    assert warned == (cpu == "AVX2")
    assert all(np.isfinite(m["value"]) for m in card["metrics"])
    assert all(np.all(np.isfinite(w)) for w in zoo.load(output).get_weights())


def test_mixed_precision_wraps_every_optimizer_in_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gan, vae = tiny.dcgan(), tiny.vae()
        gan.compile()
        vae.compile(optimizer="adam")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for optimizer in (
        gan.generator_optimizer,
        gan.discriminator_optimizer,
        vae.optimizer,
    ):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert gan.generator.layers[-1].compute_dtype == "float32"
    assert gan.discriminator.layers[-2].compute_dtype == "float32"
    images = np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")
    logs = gan.train_step(tf.constant(images))
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_a_failed_run_leaves_no_preset(recipe, tmp_path, capsys):
    folder, _ = recipe
    output = tmp_path / "trained"
    code = cli.main(
        [
            "train",
            str(folder),
            "--data",
            str(tmp_path / "missing.npz"),
            "--output",
            str(output),
        ]
    )
    assert code == 2
    assert "missing.npz does not exist" in capsys.readouterr().err
    assert not output.exists()


def test_atomic_directory_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "preset"
    with _files.atomic_directory(target) as staging:
        (staging / "card.json").write_text("old")
    with pytest.raises(RuntimeError), _files.atomic_directory(target) as staging:
        (staging / "card.json").write_text("new, half done")
        raise RuntimeError("crash")
    assert (target / "card.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["preset"]


def test_evaluate_updates_the_card_with_its_own_command(recipe, tmp_path, capsys):
    folder, source = recipe
    output = tmp_path / "trained"
    cli.main(
        [
            "train",
            str(folder),
            "--steps-per-epoch",
            "1",
            "--data",
            str(source),
            "--output",
            str(output),
        ]
    )
    argv = [
        "evaluate",
        str(output),
        "--num-samples",
        "4",
        "--data",
        str(source),
        "--update-card",
    ]
    assert cli.main(argv) == 0
    shown = capsys.readouterr().out
    assert "pixel diversity, generated / test (4 each)" in shown
    assert "sharpness (mean squared Laplacian), generated / test (4 each)" in shown
    metrics = {m["name"]: m for m in zoo.card(output)["metrics"]}
    assert metrics["pixel diversity, generated / test (4 each)"][
        "command"
    ] == "keras-gen " + " ".join(argv)
    assert metrics["test d_real"]["command"] == "keras-gen " + " ".join(argv)
    assert metrics["train d_real (last epoch)"]["command"].startswith("keras-gen train")
    assert "(4 each)" in (output / "README.md").read_text()
    zoo.load(output)  # weights untouched, still verified


def read_events(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    (events,) = Path(logdir).glob("events.out.tfevents.*")
    accumulator = event_accumulator.EventAccumulator(
        str(events), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize("family", ["DCGAN", "VAE"])
def test_tensorboard_logs_metrics_learning_rates_images_and_hparams(
    recipe, tmp_path, family
):
    folder, source = recipe
    card = json.loads((folder / zoo.CARD).read_text())
    if family == "VAE":
        card["model"] = {
            "class": "VAE",
            "config": {"image_shape": [28, 28, 1], "latent_dim": 2, "filters": [4]},
        }
        card["training"]["compile"] = {
            "optimizer": keras.optimizers.serialize(keras.optimizers.Adam())
        }
    (folder / zoo.CARD).write_text(json.dumps(card))
    logdir = tmp_path / "logs"
    argv = [
        "train",
        str(folder),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "3",
        "--data",
        str(source),
        "--output",
        str(tmp_path / "out"),
        "--logdir",
        str(logdir),
    ]
    assert cli.main(argv) == 0
    events = read_events(logdir)
    tags = set(events.Tags()["tensors"])
    metric = "generator_loss" if family == "DCGAN" else "kl_loss"
    assert {f"step/{metric}", f"epoch/{metric}"} <= tags
    assert [e.step for e in events.Tensors(f"step/{metric}")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Tensors(f"epoch/{metric}")] == [3, 6]
    rates = {
        "DCGAN": ["generator_optimizer", "discriminator_optimizer"],
        "VAE": ["optimizer"],
    }[family]
    for name in rates:
        assert f"learning_rate/{name}" in tags
    samples = events.Tensors("samples")
    assert len(samples) == 2
    width, height = (int(v) for v in samples[-1].tensor_proto.string_val[:2])
    png = tf.io.decode_png(samples[-1].tensor_proto.string_val[2])
    assert (png.shape[1], png.shape[0]) == (width, height) == (2 + 4 * 30, 2 + 4 * 30)
    assert ("reconstructions" in tags) == (family == "VAE")
    plugins = {tag: events.SummaryMetadata(tag).plugin_data.plugin_name for tag in tags}
    assert "hparams" in plugins.values()


def test_cli_list_info_and_unknown_preset(capsys):
    assert cli.main(["list"]) == 0
    assert "dcgan_faces" in capsys.readouterr().out
    assert cli.main(["info", "vae_mnist"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["class"] == "VAE"
    assert cli.main(["sample", "dcgan_face", "-o", "x.png"]) == 2
    assert "Did you mean 'dcgan_faces'?" in capsys.readouterr().err


@pytest.mark.skipif(
    not (SHARED_DATA / "faces64.tar").exists(),
    reason="needs ../shared/data/faces64.tar",
)
def test_real_faces_load_from_the_shared_archive():
    source = SHARED_DATA / "faces64.tar"
    test_images = data.load_images("faces", "test", source=source)
    assert (test_images.shape, test_images.dtype) == ((1148, 64, 64, 3), np.uint8)
    assert 50 < np.mean(test_images) < 200 and np.std(test_images) > 30  # photos
    assert len(data.load_labels("faces", "train", source=source)) == 22170


def real_faces_subset(folder: Path, train: int, test: int, seed: int = 0) -> Path:
    """A faces64.tar of randomly chosen real members of each split, with their labels:
    the real files and format, at a size whose end-of-training evaluation is quick."""
    rows = (SHARED_DATA / "faces64_labels.tsv").read_text().splitlines()
    header, rows = rows[0], rows[1:]
    rng = np.random.default_rng(seed)
    chosen = []
    for split, count in (("train", train), ("test", test)):
        in_split = [row for row in rows if row.split("\t")[-1] == split]
        chosen += [in_split[i] for i in rng.choice(len(in_split), count, replace=False)]
    chosen.sort()
    path = folder / "faces64.tar"
    with (
        tarfile.open(SHARED_DATA / "faces64.tar") as full,
        tarfile.open(path, "w") as subset,
    ):
        for row in chosen:
            member = full.getmember(row.split("\t")[0])
            subset.addfile(member, full.extractfile(member))
    (folder / "faces64_labels.tsv").write_text("\n".join([header, *chosen]) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "faces64.tar").exists(),
    reason="needs ../shared/data/faces64.tar",
)
def test_real_faces_train_a_few_steps(tmp_path):
    output = tmp_path / "dcgan_faces"
    argv = [
        "train",
        "dcgan_faces",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--data",
        str(real_faces_subset(tmp_path, train=160, test=40)),
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 0
    card = zoo.card(output)
    assert card["data"]["dataset"] == "faces"
    assert {m["name"] for m in card["metrics"]} >= {"test d_real", "test d_fake"}
    assert zoo.load(output).generate(2, seed=0).shape == (2, 64, 64, 3)
