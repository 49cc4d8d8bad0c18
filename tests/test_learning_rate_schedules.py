"""Learning-rate schedules (warm-up, cosine decay) in a recipe card's compile config.

A card's `training.compile` holds serialized optimizers; an optimizer's
learning_rate may be a serialized `keras.optimizers.schedules` object. These check
that it survives the card (JSON), a .keras file and a training checkpoint, for
one optimizer and for one per network (a GAN's two time-scale update rule), and
that the rate at step k is the schedule's closed form.
"""

import copy
import json
import math

import keras
import numpy as np
import pytest
import tiny
from test_zoo import TINY_CARD

from keras_gen import training, zoo

WARM_UP_STEPS = 3
DECAY_STEPS = 8
ALPHA = 0.1


def warm_up_then_cosine(peak: float):
    """Linear warm-up from 0 to `peak` over WARM_UP_STEPS, then cosine decay to ALPHA peak."""
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=DECAY_STEPS,
        alpha=ALPHA,
        warmup_target=peak,
        warmup_steps=WARM_UP_STEPS,
    )


def closed_form(step: int, peak: float) -> float:
    """The rate `warm_up_then_cosine(peak)` gives at optimizer step `step`, by hand."""
    if step < WARM_UP_STEPS:
        return peak * step / WARM_UP_STEPS
    progress = min(step - WARM_UP_STEPS, DECAY_STEPS) / DECAY_STEPS
    return peak * ((1 - ALPHA) * 0.5 * (1 + math.cos(math.pi * progress)) + ALPHA)


# Family -> (tiny model maker, peak rate per optimizer). The GANs' rates differ, as
# in the two time-scale update rule (Heusel et al. 2017).
CASES = {
    "VAE": (tiny.vae, {"optimizer": 1e-3}),
    "Diffusion": (tiny.diffusion, {"optimizer": 2e-4}),
    "DCGAN": (
        tiny.dcgan,
        {"generator_optimizer": 1e-4, "discriminator_optimizer": 4e-4},
    ),
    "WGANGP": (tiny.wgan_gp, {"generator_optimizer": 1e-4, "critic_optimizer": 3e-4}),
}


def card_compile(peaks: dict) -> dict:
    """A card's training.compile: each optimizer Adam over its own schedule, as JSON."""
    return json.loads(
        json.dumps(
            {
                name: keras.optimizers.serialize(
                    keras.optimizers.Adam(warm_up_then_cosine(peak), name=name)
                )
                for name, peak in peaks.items()
            }
        )
    )


def fit_steps(model, steps: int) -> None:
    data = tiny.FAMILIES[type(model).__name__].batch(model, 4 * steps)
    images, labels = data if isinstance(data, tuple) else (data, None)
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)


def assert_rates_follow_the_schedules(model, peaks: dict) -> None:
    """Each optimizer's rate is the closed form at its own iteration count."""
    found = training.optimizers(model)
    assert found.keys() == peaks.keys()
    for name, peak in peaks.items():
        iterations = int(found[name].iterations)
        rate = float(found[name].learning_rate)
        assert rate == pytest.approx(closed_form(iterations, peak), rel=1e-5), name


@pytest.mark.parametrize("name", CASES)
def test_schedules_round_trip_through_the_card_and_a_keras_file(name, tmp_path):
    make, peaks = CASES[name]
    model = make()
    model.compile_from_config(card_compile(peaks))
    assert_rates_follow_the_schedules(model, peaks)  # step 0: the warm-up's start
    fit_steps(model, 5)  # past the warm-up, into the decay
    assert training.step(model) == 5
    assert_rates_follow_the_schedules(model, peaks)
    compiled = json.loads(json.dumps(model.get_compile_config()))
    for optimizer in peaks:  # what a trained preset's card will hold
        rate = compiled[optimizer]["config"]["learning_rate"]
        assert rate["class_name"] == "CosineDecay", optimizer

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert_rates_follow_the_schedules(reloaded, peaks)
    assert json.loads(json.dumps(reloaded.get_compile_config())) == compiled


def test_a_wgan_critics_schedule_counts_its_own_steps():
    make, peaks = CASES["WGANGP"]
    model = make()  # num_critic_steps=2: two critic updates per generator update
    model.compile_from_config(card_compile(peaks))
    fit_steps(model, 2)
    assert int(model.generator_optimizer.iterations) == 2
    assert int(model.critic_optimizer.iterations) == 4
    assert float(model.critic_optimizer.learning_rate) == pytest.approx(
        closed_form(4, peaks["critic_optimizer"]), rel=1e-5
    )


def test_the_update_at_step_k_uses_the_rate_at_step_k():
    """The warm-up starts at 0: the first step leaves the generator's weights as
    they were, and the discriminator's, whose schedule is a constant, moves."""
    model = tiny.dcgan()
    compile_config = card_compile({"generator_optimizer": 1e-3})
    compile_config["discriminator_optimizer"] = keras.optimizers.serialize(
        keras.optimizers.Adam(1e-3)
    )
    model.compile_from_config(compile_config)
    generator = [w.numpy() for w in model.generator.trainable_weights]
    discriminator = [w.numpy() for w in model.discriminator.trainable_weights]
    fit_steps(model, 1)
    for before, after in zip(generator, model.generator.trainable_weights):
        np.testing.assert_array_equal(before, after)
    assert any(
        not np.array_equal(before, after)
        for before, after in zip(discriminator, model.discriminator.trainable_weights)
    )
    fit_steps(model, 1)  # step 1: a third of the peak
    assert not np.array_equal(generator[0], model.generator.trainable_weights[0])


def test_a_resumed_checkpoint_continues_the_schedules_at_its_step(tmp_path):
    """What `keras-gen train` does: the checkpoint holds the optimizers' iterations,
    the resumed model is built and compiled from the card, and the rates continue
    from the checkpoint's step rather than the warm-up's start."""
    peaks = CASES["DCGAN"][1]
    card = copy.deepcopy(TINY_CARD)
    card["training"]["compile"] = card_compile(peaks)

    def from_card():
        model = zoo.build(card)
        model.compile_from_config(copy.deepcopy(card["training"]["compile"]))
        return model

    model = from_card()
    fit_steps(model, 4)
    state = training._TrainingState(tmp_path / "state", 100, True, {"run": 1})
    state.set_model(model)
    state.save()

    resumed = from_card()
    assert int(resumed.generator_optimizer.iterations) == 0
    restored = training._TrainingState(tmp_path / "state", 100, True, {"run": 1})
    assert restored.restore(resumed) == 4
    assert_rates_follow_the_schedules(resumed, peaks)
    fit_steps(model, 2)
    fit_steps(resumed, 2)
    assert training.step(resumed) == 6
    assert_rates_follow_the_schedules(resumed, peaks)
    for a, b in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def half_cosine(step: int, steps: int, start: float) -> float:
    """The rate `--learning-rate-decay cosine` gives after `step` of `steps`, by hand."""
    return start * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


@pytest.mark.parametrize("name", ["DCGAN", "WGANGP"])
def test_a_run_decay_anneals_every_optimizer_to_zero_over_the_runs_steps(name):
    """A WGAN-GP critic updates twice a step here: its rate follows its own count,
    so both networks reach half their rate at the run's middle and zero at its end."""
    make, peaks = CASES[name]
    model = make()
    model.compile_from_config(
        {
            k: keras.optimizers.serialize(keras.optimizers.Adam(v))
            for k, v in peaks.items()
        }
    )
    training._anneal(model, 4)
    for done in (2, 4):
        fit_steps(model, 2)
        assert training.step(model) == done
        for optimizer_name, peak in peaks.items():
            rate = float(training.optimizers(model)[optimizer_name].learning_rate)
            assert rate == pytest.approx(half_cosine(done, 4, peak), abs=1e-9)
    assert float(model.generator_optimizer.learning_rate) == 0.0


def test_a_run_decay_anneals_each_dbn_layer_over_its_own_turn():
    """Every layer's optimizer counts every step, but a layer trains only in its
    turn: its rate holds until the turn starts and reaches zero as it ends, so no
    layer stops training at half its rate. Three layers of two steps' turns, the
    top one training the 4 steps left of 8."""
    model = tiny.dbn(hidden_units=(6, 5, 4), steps_per_layer=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5))
    training._anneal(model, 8)
    turns = {"rbm_1_optimizer": (0, 2), "rbm_2_optimizer": (2, 2)}
    turns["rbm_3_optimizer"] = (4, 4)
    for done in range(1, 9):
        fit_steps(model, 1)
        for name, (first, count) in turns.items():
            rate = float(getattr(model, name).learning_rate)
            by_hand = 0.1 if done < first else half_cosine(done - first, count, 0.1)
            assert rate == pytest.approx(by_hand, abs=1e-7), (name, done)
    assert float(model.rbm_1_optimizer.learning_rate) == 0.0


def test_a_run_decay_is_refused_over_a_recipe_whose_rate_is_a_schedule(tmp_path):
    card = copy.deepcopy(TINY_CARD)
    card["training"]["compile"] = card_compile(CASES["DCGAN"][1])
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / zoo.CARD).write_text(json.dumps(card))
    output = tmp_path / "out"
    with pytest.raises(
        ValueError, match="generator_optimizer, discriminator_optimizer"
    ):
        training.train(folder, output, learning_rate_decay="cosine")
    with pytest.raises(ValueError, match="must be one of cosine, got 'linear'"):
        training.train(folder, output, learning_rate_decay="linear")
    assert not output.exists()
