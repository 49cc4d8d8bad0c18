"""keras-gen train --eval-every: the training curve in the card, its figure, and
its points across a crash and resume (#16)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from test_training import train_argv, vae_recipe, write_recipe

from keras_gen import cli, data, evaluation, images, training, zoo


class Crash(Exception):
    """Stands for the process dying: nothing catches it."""


def curve_of(output):
    return zoo.card(output)["training_curve"]


def test_one_point_every_n_epochs_each_what_evaluate_reports(tmp_path, capsys):
    folder, source = write_recipe(tmp_path)
    output = tmp_path / "trained"
    flags = ["--epochs", "4", "--eval-every", "2", "--eval-samples", "4"]
    argv = train_argv(folder, source, output, *flags)
    assert cli.main(argv) == 0
    assert "training curve: epoch 2 (step 6), FID (classifier_mnist)" in (
        capsys.readouterr().out
    )
    card = zoo.card(output)
    curve = card["training_curve"]
    assert curve["command"] == "keras-gen " + " ".join(argv)
    assert curve["metric"] == "FID (classifier_mnist)" and curve["samples"] == 4
    assert [(p["epoch"], p["step"]) for p in curve["points"]] == [(2, 6), (4, 12)]
    caption = next(
        f["caption"] for f in card["figures"] if f["file"] == training.CURVE_FIGURE
    )
    assert caption.endswith("measured every 2 epochs on 4 samples.")

    # The last point is the number evaluate gives the final weights, with the same
    # seed and samples, on whole splits (the curve's are cut to 4 test images).
    direct = evaluation.evaluate(
        zoo.load(output),
        card["data"],
        "direct",
        num_samples=4,
        seed=card["trained"]["seed"],
        splits=data.Splits("mnist", source),
    )
    found = {m["name"]: m["value"] for m in direct["metrics"]}
    assert curve["points"][-1]["value"] == pytest.approx(found[curve["metric"]])

    # Measuring along the way changes no weight.
    plain = tmp_path / "plain"
    assert cli.main(train_argv(folder, source, plain, "--epochs", "4")) == 0
    assert "training_curve" not in zoo.card(plain)
    for a, b in zip(zoo.load(output).get_weights(), zoo.load(plain).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_curve_measures_test_images_spread_over_the_split_not_its_first(tmp_path):
    """faces64's test split is sorted by age: its first images are all children."""
    source = tmp_path / "ordered.npz"
    test = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    np.savez(source, x_train=np.zeros((7, 28, 28), np.uint8), x_test=test)
    splits = training._SpreadTestImages(data.Splits("mnist", source), 4)
    assert [int(image.max()) for image in splits.images("test")] == [0, 3, 6, 9]
    assert len(splits.images("train")) == 7  # the FID's reference stays whole
    assert (
        len(training._SpreadTestImages(data.Splits("mnist", source), 20).images("test"))
        == 10
    )


def test_the_figure_is_a_png_in_the_card_and_the_readme(tmp_path):
    folder, source = write_recipe(tmp_path)
    vae_recipe(folder)
    output = tmp_path / "trained"
    flags = ["--epochs", "2", "--eval-every", "1", "--eval-samples", "5"]
    assert cli.main(train_argv(folder, source, output, *flags)) == 0
    card = zoo.card(output)
    curve = card["training_curve"]
    # A likelihood model plots its test NLL, here on all 5 test images.
    assert (
        curve["metric"]
        == "test negative log-likelihood, nats (IWAE K=100, 5 test images)"
    )
    assert [p["step"] for p in curve["points"]] == [3, 6]
    entry = next(f for f in card["figures"] if f["file"] == training.CURVE_FIGURE)
    assert entry["command"] == curve["command"]
    assert entry["caption"].endswith("measured every epoch on 5 test images.")
    png = (output / training.CURVE_FIGURE).read_bytes()
    assert images.png_signed(png[:100])
    pixels = tf.io.decode_png(png).numpy()
    assert pixels.shape == (images.PLOT_HEIGHT + 4, images.PLOT_WIDTH + 4, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2  # axes, text, a line
    readme = (output / "README.md").read_text()
    assert f"![{training.CURVE_FIGURE}]({training.CURVE_FIGURE})" in readme
    for point in curve["points"]:
        row = f"| {point['epoch']} | {point['step']} | {point['value']:.4g} |"
        assert row in readme


def _crash_at_step(monkeypatch, crash_step):
    """The run dies just after the checkpoint of `crash_step` (mid-epoch)."""
    save = training._TrainingState.on_train_batch_end

    def dying(self, batch, logs=None):
        save(self, batch, logs)
        if training.step(self.model) == crash_step:
            raise Crash

    monkeypatch.setattr(training._TrainingState, "on_train_batch_end", dying)


def _crash_at_measurement(monkeypatch, count):
    """The run dies in its `count`th measurement: after that step's checkpoint,
    before its point is written."""
    measure, calls = evaluation.evaluate, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == count:
            raise Crash
        return measure(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", dying)


RESUME_FLAGS = ["--epochs", "3", "--eval-every", "1", "--eval-samples", "5"]
RESUME_FLAGS += ["--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A tiny VAE's recipe and data, and its run with a curve that nothing stopped."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    folder, source = write_recipe(tmp_path)
    vae_recipe(folder)
    output = tmp_path / "straight"
    assert cli.main(train_argv(folder, source, output, *RESUME_FLAGS)) == 0
    return folder, source, curve_of(output)


@pytest.mark.parametrize(
    "crash, resumed_at",
    [(lambda m: _crash_at_step(m, 5), 5), (lambda m: _crash_at_measurement(m, 2), 6)],
    ids=["mid-epoch", "between checkpoint and point"],
)
def test_a_resumed_run_has_the_curve_of_an_uninterrupted_one(
    uninterrupted, tmp_path, monkeypatch, capsys, crash, resumed_at
):
    folder, source, expected = uninterrupted
    killed = tmp_path / "killed"
    with monkeypatch.context() as patched:
        crash(patched)
        with pytest.raises(Crash):
            cli.main(train_argv(folder, source, killed, *RESUME_FLAGS))
    state = killed.with_name("killed.train-state")
    stored = json.loads((state / training._TrainingCurve.FILE).read_text())
    assert [p["step"] for p in stored["points"]] == [3]  # after its first point
    capsys.readouterr()

    assert cli.main(train_argv(folder, source, killed, *RESUME_FLAGS)) == 0
    assert f"resuming at step {resumed_at} of 9" in capsys.readouterr().out
    found = curve_of(killed)
    assert found["metric"] == expected["metric"]
    assert [p["step"] for p in found["points"]] == [3, 6, 9]  # none lost or twice
    for a, b in zip(found["points"], expected["points"]):
        assert a["epoch"] == b["epoch"]
        assert a["value"] == pytest.approx(b["value"], rel=1e-4)


def test_a_run_with_other_curve_settings_does_not_resume_the_checkpoint(
    tmp_path, monkeypatch, capsys
):
    folder, source = write_recipe(tmp_path)
    vae_recipe(folder)
    output = tmp_path / "out"
    flags = ["--epochs", "2", "--checkpoint-every", "1"]
    _crash_at_step(monkeypatch, 4)
    with pytest.raises(Crash):
        cli.main(train_argv(folder, source, output, *flags, "--eval-every", "1"))
    monkeypatch.undo()
    assert cli.main(train_argv(folder, source, output, *flags)) == 2
    assert "eval_every: checkpoint 1, now None" in capsys.readouterr().err


def test_the_card_schema_checks_the_curve():
    card = zoo.card("vae_mnist")
    curve = {"command": "c", "metric": "m", "samples": 5, "points": []}
    zoo.validate({**card, "training_curve": curve})
    point = {"epoch": 1, "step": 3, "value": 1.5}
    zoo.validate({**card, "training_curve": {**curve, "points": [point]}})
    with pytest.raises(zoo.CardError, match=r"training_curve.points\[0\].epoch"):
        bad = {**point, "epoch": 0}
        zoo.validate({**card, "training_curve": {**curve, "points": [bad]}})
    with pytest.raises(zoo.CardError, match="training_curve.sample"):
        zoo.validate({**card, "training_curve": {**curve, "sample": 5}})


@pytest.mark.parametrize("tool", ["latent_mixture", "detector"])
def test_the_preset_tools_refuse_a_curve_without_a_point_before_fitting(
    tool, tmp_path, capsys
):
    from tool_scripts import load

    argv = ["--epochs", "2", "--eval-every", "3", "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:
        load(tool).main(argv)
    assert stopped.value.code == 2
    assert "--eval-every) 3 is more than the 2 epochs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
