"""Diffusion: the schedule, the forward process and the samplers against closed forms.

The samplers run on an analytic denoiser: for data N(mu, s²) per pixel, the
optimal noise prediction is known exactly, so the distribution each sampler
ends in can be computed step by step in float64 (every update is linear in
x_t plus Gaussian noise) and compared with what it draws. The shared contract
(serialization, 1 vs 2 replicas, export, TFLite) runs on tiny.diffusion.
"""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
import tool_scripts

from keras_gen import cli, data, images, zoo
from keras_gen.models import Diffusion, base, diffusion

MEAN, STD = 0.1, 0.25  # of the analytic data, in the model's [-1, 1] scale
SHAPE = (8, 8, 1)  # pixels are independent: 64 draws per sample


class GaussianDenoiser(keras.Model):
    """The exact eps (or v) prediction for data N(means[label], std²) per pixel.

    x_t = a x_0 + b eps with a² + b² = 1: E[eps | x_t] = b (x_t - a mu) / (a² s² + b²)
    and E[x_0 | x_t] = mu + a s² (x_t - a mu) / (a² s² + b²). The label of the
    first head picks the mean; its null class has the last mean.
    """

    def __init__(self, alphas_cumprod, prediction, means, std):
        super().__init__()
        self.alphas_cumprod = alphas_cumprod
        self.prediction = prediction
        self.means, self.std = np.asarray(means, "float32"), std

    def call(self, inputs):
        noisy, timesteps = inputs[0], inputs[1]
        labels = inputs[2][:, 0] if len(inputs) > 2 else tf.zeros_like(timesteps)
        mean = tf.reshape(tf.gather(self.means, labels), [-1, 1, 1, 1])
        alpha_bar = tf.reshape(tf.gather(self.alphas_cumprod, timesteps), [-1, 1, 1, 1])
        a, b = tf.sqrt(alpha_bar), tf.sqrt(1.0 - alpha_bar)
        total = a * a * self.std**2 + b * b
        noise = b * (noisy - a * mean) / total
        image = mean + a * self.std**2 * (noisy - a * mean) / total
        return noise if self.prediction == "epsilon" else a * noise - b * image


class Analytic(Diffusion):
    """Diffusion whose two denoisers are the analytic one."""

    means = (MEAN,)

    def _build_denoiser(self, name):
        return GaussianDenoiser(self.alphas_cumprod, self.prediction, self.means, STD)


def analytic(**config) -> Diffusion:
    return Analytic(**{"image_shape": SHAPE, "widths": (8,), "groups": 8, **config})


def chain_moments(alphas_cumprod, steps, sampler, eta, mean=MEAN, std=STD):
    """(mean, std) of what a sampler draws with the analytic denoiser, in float64;
    `mean` may be a function of the timestep index (the data mean a step aims at).

    x_T ~ N(0, 1); each update maps x_t to P + Q x_t + sigma z, so the mean and
    variance follow exactly. Written from the papers' equations, apart from the
    module's code (no clipping: these samples stay well inside [-1, 1]).
    """
    timesteps = len(alphas_cumprod)
    mean_at = mean if callable(mean) else lambda t: mean
    m, v = 0.0, 1.0
    for step in reversed(range(steps)):
        t, s = (step + 1) * timesteps // steps - 1, step * timesteps // steps - 1
        mean = mean_at(t)
        ab_t, ab_s = alphas_cumprod[t], alphas_cumprod[s] if s >= 0 else 1.0
        a, b = math.sqrt(ab_t), math.sqrt(1 - ab_t)
        gain = (
            a * std**2 / (a * a * std**2 + b * b)
        )  # x0_hat = mean (1 - a gain) + gain x
        x0 = (mean * (1 - a * gain), gain)  # (constant, coefficient of x_t)
        eps = (-a * x0[0] / b, (1 - a * x0[1]) / b)
        if sampler == "ddim":  # Song et al. 2021, eq. 12
            sigma2 = eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
            c = math.sqrt(max(1 - ab_s - sigma2, 0.0))
            p = math.sqrt(ab_s) * x0[0] + c * eps[0]
            q = math.sqrt(ab_s) * x0[1] + c * eps[1]
        else:  # Ho et al. 2020, eq. 7, with the betas of the subsequence
            beta = 1 - ab_t / ab_s
            k0, k1 = (
                math.sqrt(ab_s) * beta / (1 - ab_t),
                math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t),
            )
            p, q = k0 * x0[0], k0 * x0[1] + k1
            sigma2 = beta * (1 - ab_s) / (1 - ab_t)
        m, v = p + q * m, q * q * v + sigma2
    return m, math.sqrt(v)


def model_scale(images) -> np.ndarray:
    return np.asarray(images, np.float64) * 2.0 - 1.0


# --- The schedule and the forward process --------------------------------------------


def test_cosine_schedule_is_its_closed_form_with_betas_clipped_at_0_999():
    timesteps, s = 1000, 0.008

    def f(t):
        return math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    found = diffusion.cosine_alphas_cumprod(timesteps)
    closed = np.array([f(t) / f(0) for t in range(1, timesteps + 1)])
    betas = 1 - found / np.concatenate([[1.0], found[:-1]])
    raw = np.array([1 - f(t) / f(t - 1) for t in range(1, timesteps + 1)])
    unclipped = raw <= 0.999
    assert unclipped[:-1].all() and not unclipped[-1]  # only the last step clips
    np.testing.assert_allclose(found[unclipped], closed[unclipped], rtol=1e-12)
    assert betas.max() == pytest.approx(0.999) and (np.diff(found) < 0).all()
    assert found[0] == pytest.approx(0.99996, abs=1e-5) and 0 < found[-1] < 1e-6


def test_forward_process_has_the_marginals_of_q_xt_given_x0():
    clean = tf.fill([200_000], 0.6)
    noise = tf.random.stateless_normal([200_000], seed=(1, 2))
    for alpha_bar in (0.99, 0.5, 0.01):
        noisy = diffusion.diffuse(clean, noise, alpha_bar).numpy()
        assert noisy.mean() == pytest.approx(math.sqrt(alpha_bar) * 0.6, abs=0.006)
        assert noisy.std() == pytest.approx(math.sqrt(1 - alpha_bar), rel=0.006)


def test_noise_velocity_and_image_convert_into_each_other():
    rng = np.random.default_rng(0)
    clean, noise = rng.uniform(-1, 1, (6, 4, 4, 1)), rng.standard_normal((6, 4, 4, 1))
    alpha_bar = rng.uniform(0.01, 0.99, (6, 1, 1, 1))
    noisy = diffusion.diffuse(clean, noise, alpha_bar)
    v = diffusion.velocity(clean, noise, alpha_bar)
    for output, kind in ((noise, "epsilon"), (v, "v")):
        found_noise, found_clean = diffusion.noise_and_image(
            noisy, output, alpha_bar, kind
        )
        np.testing.assert_allclose(found_noise, noise, atol=1e-9)
        np.testing.assert_allclose(found_clean, clean, atol=1e-9)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_denoising_error_tool_gives_the_optimal_denoisers_posterior_variances(
    prediction,
):
    """For N(mu, s²) data the optimal x_0 estimate errs by Var(x_0 | x_t) =
    s² b² / (a² s² + b²) and its noise estimate by a² s² / (a² s² + b²)."""
    tool = tool_scripts.load("denoising_error")
    model = analytic(prediction=prediction)
    draws = np.random.default_rng(0).normal(MEAN, STD, (500, *SHAPE))
    rows = tool.denoising_errors(model, (draws + 1.0) / 2.0, (999, 900, 500, 50))
    for row in rows:
        a2 = float(model.alphas_cumprod[row["timestep"]])
        total = a2 * STD**2 + (1.0 - a2)
        assert row["signal"] == pytest.approx(math.sqrt(a2))
        assert row["image_mse"] == pytest.approx(STD**2 * (1 - a2) / total, rel=0.05)
        assert row["noise_mse"] == pytest.approx(
            a2 * STD**2 / total, rel=0.05, abs=1e-6
        )
        assert row["saturated"] < 0.001  # float32 rounding, amplified by 1 / a at t 999
    assert tool.mean_image_mse((draws + 1.0) / 2.0) == pytest.approx(STD**2, rel=0.05)


def test_training_draws_timesteps_uniformly_and_drops_conditions_at_the_rate():
    model = tiny.diffusion(condition_dropout=0.2)
    count = 40_000
    labels = tf.zeros([count, 2], tf.int32)
    timesteps, noise, dropped = model._training_draws(
        tf.zeros([count, *model.image_shape]), labels, 3, True
    )
    counts = np.bincount(timesteps.numpy(), minlength=model.timesteps)
    assert len(counts) == model.timesteps and counts.min() > 0.85 * count / 20
    assert abs(float(tf.math.reduce_std(noise)) - 1) < 0.01
    null = dropped.numpy() == model.null_labels.numpy()
    p = 0.2  # every head with p, and with two heads each alone with p too
    assert null.all(axis=1).mean() == pytest.approx(p + (1 - p) * p * p, abs=0.01)
    assert null[:, 0].mean() == pytest.approx(p + (1 - p) * p, abs=0.01)


# --- The samplers, on the analytic denoiser ------------------------------------------


@pytest.mark.parametrize(
    "prediction, sampler, eta",
    [
        ("epsilon", "ddim", 0.0),
        ("v", "ddim", 0.0),  # the same samplers, from the velocity
        ("epsilon", "ddim", 1.0),
        ("epsilon", "ddpm", 0.0),
    ],
)
def test_samplers_draw_the_distribution_their_steps_imply(prediction, sampler, eta):
    model = analytic(prediction=prediction)
    drawn = model_scale(model.generate(256, seed=0, steps=20, sampler=sampler, eta=eta))
    mean, std = chain_moments(model.alphas_cumprod.astype("float64"), 20, sampler, eta)
    # 16,384 independent pixels: standard errors 0.002 (mean) and 0.0014 (std).
    assert drawn.mean() == pytest.approx(mean, abs=0.006)
    assert drawn.std() == pytest.approx(std, abs=0.005)


@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_samplers_with_every_step_draw_the_data_distribution(sampler, eta):
    model = analytic()
    drawn = model_scale(
        model.generate(256, seed=1, steps=1000, sampler=sampler, eta=eta)
    )
    assert drawn.mean() == pytest.approx(MEAN, abs=0.006)
    assert drawn.std() == pytest.approx(STD, abs=0.01)


def test_ddpm_is_ddim_with_eta_1_and_few_steps_lose_variance():
    model = analytic()
    ddpm = model.generate(64, seed=5, steps=30, sampler="ddpm")
    np.testing.assert_allclose(
        ddpm, model.generate(64, seed=5, steps=30, eta=1.0), atol=1e-5
    )
    few = model_scale(model.generate(256, seed=0, steps=5)).std()
    assert few < 0.8 * STD  # DDIM's known variance loss in few deterministic steps


def test_seeds_reproduce_and_differ_for_every_sampler():
    model = analytic()
    for options in ({}, {"eta": 0.5}, {"sampler": "ddpm"}):
        first = np.asarray(model.generate(3, seed=7, steps=4, **options))
        np.testing.assert_array_equal(
            first, model.generate(3, seed=7, steps=4, **options)
        )
        assert not np.array_equal(first, model.generate(3, seed=8, steps=4, **options))
    assert not np.array_equal(model.generate(3, steps=4), model.generate(3, steps=4))


def test_generate_in_chunks_is_the_graphs_one_pass():
    model = analytic()
    count = diffusion.SAMPLING_BATCH_SIZE + 3  # two chunks eagerly
    one_pass = tf.function(lambda: model._sample(count, 4, None, 3))()  # as exported
    np.testing.assert_allclose(
        model.generate(count, seed=4, steps=3), one_pass, atol=1e-6
    )


# --- Conditions and guidance ---------------------------------------------------------


class Shades(Analytic):
    means = (-0.2, 0.2, 0.0)  # dark, light, and the null class: unconditioned


def shades(**config) -> Diffusion:
    return Shades(**{"image_shape": SHAPE, "widths": (8,), "groups": 8, **config})


@pytest.mark.parametrize("guidance", [0.0, 1.0, 1.5])
def test_guidance_moves_the_mean_by_eps_u_plus_w_eps_c_minus_eps_u(guidance):
    # Equal variances: the guided prediction is the exact one of the mean
    # mu_u + w (mu_c - mu_u), so that is where samples go.
    model = shades(conditions={"shade": ["dark", "light"]})
    drawn = model_scale(
        model.generate(256, seed=0, steps=1000, shade="light", guidance=guidance)
    )
    assert drawn.mean() == pytest.approx(guidance * 0.2, abs=0.006)


def test_guidance_0_and_unconditioned_heads_are_unconditional_sampling():
    model = shades(conditions={"shade": ["dark", "light"]})
    unconditional = model.generate(8, seed=2, steps=5, shade=None, guidance=3.0)
    np.testing.assert_array_equal(
        unconditional, model.generate(8, seed=2, steps=5, shade="light", guidance=0)
    )
    # Guidance 1 takes the conditional pass alone; a tensor's 1 takes the formula.
    np.testing.assert_allclose(
        model.generate(8, seed=2, steps=5, shade="light", guidance=1.0),
        model.generate(8, seed=2, steps=5, shade="light", guidance=np.float32(1)),
        atol=1e-6,
    )


def test_guidance_interval_guides_only_the_steps_whose_noise_level_is_inside():
    # Each step aims at the mean its own w gives: 1.5 x 0.2 inside (0.5, 2], 0.2
    # outside; the float64 chain of those steps says where samples end.
    model = shades(conditions={"shade": ["dark", "light"]}, guidance_interval=(0.5, 2))
    alphas_cumprod = diffusion.cosine_alphas_cumprod(model.timesteps)
    sigmas = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)

    def aimed_at(t):
        return (1.5 if 0.5 < sigmas[t] <= 2 else 1.0) * 0.2

    expected, _ = chain_moments(alphas_cumprod, 20, "ddim", 0.0, mean=aimed_at)
    assert 0.21 < expected < 0.29  # between unguided (0.2) and guided (0.3)
    drawn = model_scale(
        model.generate(256, seed=0, steps=20, shade="light", guidance=1.5)
    )
    assert drawn.mean() == pytest.approx(expected, abs=0.006)


def test_guidance_intervals_holding_every_step_or_none_are_plain_guidance_or_none():
    config = {"conditions": {"shade": ["dark", "light"]}}
    plain = shades(**config)
    request = {"seed": 2, "steps": 5, "shade": "light"}
    every = shades(**config, guidance_interval=(0, 1e9))
    np.testing.assert_array_equal(
        every.generate(8, guidance=3.0, **request),
        plain.generate(8, guidance=3.0, **request),
    )
    none = shades(**config, guidance_interval=(1e8, 1e9))
    np.testing.assert_allclose(
        none.generate(8, guidance=3.0, **request),
        plain.generate(8, guidance=1.0, **request),
        atol=1e-6,
    )
    assert shades(**none.get_config()).guidance_interval == (1e8, 1e9)
    plain.guidance_interval = [1e8, 1e9]  # set after its loop was traced
    np.testing.assert_array_equal(
        plain.generate(8, guidance=3.0, **request),
        none.generate(8, guidance=3.0, **request),
    )
    with pytest.raises(ValueError, match="0 <= low < high"):
        plain.guidance_interval = (3, 3)


@pytest.fixture(scope="module")
def model():
    """A small conditional model with two levels and attention, for what needs no
    training (built once: seconds)."""
    return tiny.diffusion(image_shape=(8, 8, 1), widths=(4, 8), attention_levels=1)


def test_guided_output_is_the_formula_on_the_network(model):
    rng = np.random.default_rng(0)  # not the zero-initialized output of a new model
    model.ema_denoiser.set_weights(
        [rng.normal(0, 0.5, w.shape) for w in model.ema_denoiser.get_weights()]
    )
    noisy = tf.random.stateless_normal([3, *model.image_shape], seed=(0, 1))
    labels = tf.constant([[0, 1], [1, 2], [1, 0]])
    conditional = model.denoise(noisy, 7, age=[0, 1, 1], gender=[1, 2, 0])
    unconditional = model.denoise(noisy, 7, age=None, gender=None)
    for w in (0.0, 2.5):
        guided = model._guided_output(noisy, 7, labels, w, guided=True)
        expected = unconditional + w * (conditional - unconditional)
        # Batches of 3 against the guided call's own: oneDNN's kernels may sum in
        # another order, so outputs near 5 differ in float32's sixth digit.
        np.testing.assert_allclose(guided, expected, rtol=1e-5, atol=1e-5)


def test_heads_left_out_cycle_and_heads_given_none_are_null(model):
    labels = model._cycled_labels({"gender": None}, 4).numpy()
    np.testing.assert_array_equal(labels, [[0, 3], [1, 3], [0, 3], [1, 3]])
    labels = model._cycled_labels({"age": "old", "gender": "male"}, 2).numpy()
    np.testing.assert_array_equal(labels, [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="missing condition"):
        model.denoise(tf.zeros([1, *model.image_shape]), 0, age=None)


# --- Training ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_a_few_training_steps_lower_the_loss_of_both_networks(policy):
    """Also in bfloat16, what keras-gen train --mixed-precision uses on CPUs; the
    networks' outputs stay float32 there."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = tiny.diffusion(ema_decay=0.9)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.denoiser.outputs[0].dtype == "float32"
    rng = np.random.default_rng(0)
    labels = tiny.labels_for(model.conditions, 64)
    # Images whose brightness is their age class: easy to learn.
    images = 0.2 + 0.6 * labels[:, :1, None, None] + 0.05 * rng.random((64, 4, 4, 1))
    images = images.astype("float32")

    def losses():
        draws = model._training_draws(images, labels, -1, False)
        return [
            float(tf.reduce_mean(model._denoising_losses(images, *draws, net, False)))
            for net in (model.denoiser, model.ema_denoiser)
        ]

    before = losses()
    model.fit(images, labels, batch_size=16, epochs=4, verbose=0, shuffle=False)
    after = losses()
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)
    assert all(
        a.shape == w.shape
        for a, w in zip(model.ema_denoiser.weights, model.denoiser.weights)
    )


# --- Refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, match",
    [
        ({"steps": 0}, "steps must be an integer from 1 to 20"),
        ({"steps": 21}, "steps must be an integer from 1 to 20"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"sampler": "euler"}, "sampler must be one of"),
        ({"eta": 1.5}, r"eta must be in \[0, 1\]"),
        ({"sampler": "ddpm", "eta": 0.5}, "eta applies to sampler='ddim'"),
        ({"guidance": float("nan")}, "guidance must be a finite number"),
        ({"mood": "happy"}, r"unknown condition \['mood'\]"),
        ({"age": "ancient"}, "unknown age 'ancient'"),
    ],
)
def test_generate_refuses_bad_requests(model, arguments, match):
    with pytest.raises(ValueError, match=match):
        model.generate(2, seed=0, **arguments)


def test_bad_requests_of_the_other_methods_and_configs_are_refused(model):
    noisy = tf.zeros([2, *model.image_shape])
    with pytest.raises(ValueError, match="timesteps must be from 0 to 19"):
        model.denoise(noisy, 20, age=0, gender=0)
    with pytest.raises(ValueError, match="labels out of range"):
        model._denoise_endpoint()[0](noisy, tf.zeros([2], tf.int32), [[0, 4], [0, 0]])
    unconditional = tiny.diffusion(conditions=None)
    with pytest.raises(ValueError, match="guidance needs a conditional model"):
        unconditional.generate(2, guidance=2.0)
    with pytest.raises(base.CapabilityError, match="conditions"):
        unconditional.generate(2, age="old")
    for config, match in (
        ({"widths": (6,), "groups": 4}, "multiple of groups=4"),
        ({"image_shape": (6, 6, 1), "widths": (4, 8, 8)}, "divisible by 4"),
        ({"prediction": "x0"}, "prediction must be one of"),
        ({"sampling_steps": 30}, "sampling_steps must be from 1 to timesteps=20"),
        ({"guidance_interval": (2, 1)}, "0 <= low < high"),
        ({"guidance_interval": (-1, 1)}, "0 <= low < high"),
        ({"guidance_interval": (0, float("inf"))}, "both finite"),
        ({"guidance_interval": (1,)}, "two noise levels"),
    ):
        with pytest.raises(ValueError, match=match):
            tiny.diffusion(**config)


# --- The command line ----------------------------------------------------------------


@pytest.fixture(scope="module")
def faces_preset(tmp_path_factory):
    """A tiny untrained diffusion preset with the faces' heads, and its model."""
    model = tiny.diffusion(conditions=data.CLASSES["faces"])
    folder = tmp_path_factory.mktemp("zoo") / "tiny_ddim_faces"
    return _faces_preset(folder, model), model


def _faces_preset(folder, model):
    """`model` written as a preset of the faces dataset."""
    config = {
        k: v
        for k, v in model.get_config().items()
        if k not in ("name", "trainable", "dtype")
    }
    card = {
        "description": "tiny diffusion",
        "model": {"class": "Diffusion", "config": json.loads(json.dumps(config))},
        "data": {
            "dataset": "faces",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    return zoo.write(folder, model, card, None)


def test_sample_command_reads_a_prompt_and_reports_what_it_left_out(
    faces_preset, tmp_path, capsys
):
    folder, model = faces_preset
    out = tmp_path / "old_women.png"
    argv = ["sample", str(folder), "-n", "4", "--seed", "3", "-o", str(out)]
    prompt = ["--prompt", "An old woman, smiling", "--steps", "2", "--guidance", "2"]
    assert cli.main(argv + prompt) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "keras-gen sample: not understood, left out: smiling"
    expected = model.generate(
        4, seed=3, steps=2, guidance=2.0, age="65+", gender="female"
    )
    written = tf.io.decode_png(out.read_bytes()).numpy()
    np.testing.assert_array_equal(written, images.grid(np.asarray(expected)))


@pytest.mark.parametrize(
    "preset, words, match",
    [
        ("{tiny}", ["--steps", "0"], "argument --steps: must be at least 1"),
        ("{tiny}", ["--guidance", "nan"], "--guidance: expected a finite number"),
        ("{tiny}", ["--guidance", "lots"], "--guidance: expected a number"),
        ("{tiny}", ["--prompt", "a man and a woman"], "names two classes of gender"),
        ("vae_mnist", ["--steps", "10"], "VAE, which takes no --steps"),
        ("cgan_fashion_mnist", ["--guidance", "2"], "takes no --guidance"),
        ("vae_mnist", ["--truncation", "0.7"], "VAE, which takes no --truncation"),
        ("{tiny}", ["--truncation", "0"], "--truncation: expected a positive number"),
    ],
)
def test_sample_command_refuses_bad_flags_in_one_line(
    preset, words, match, faces_preset, tmp_path, capsys
):
    preset = preset.format(tiny=faces_preset[0])
    argv = ["sample", preset, "-n", "1", "-o", str(tmp_path / "x.png"), *words]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert match in err[0]
    assert not (tmp_path / "x.png").exists()


def test_evaluate_command_measures_at_another_guidance_outside_the_card(
    faces_preset, tmp_path, measured_models
):
    folder, model = faces_preset
    out = tmp_path / "report.json"
    argv = ["evaluate", str(folder), "--guidance", "3.5", "--json", str(out)]
    assert cli.main(argv) == 0
    assert [m.guidance for m in measured_models] == [3.5]
    assert json.loads(out.read_text())["guidance"] == 3.5
    # The card keeps the numbers of its own scale.
    assert cli.main([*argv[:4], "--update-card"]) == 2
    own = ["evaluate", str(folder), "--guidance", f"{model.guidance}"]
    assert cli.main([*own, "--update-card"]) == 0
    assert measured_models[-1].guidance == model.guidance
    assert "FID (x)" in {m["name"] for m in zoo.card(folder)["metrics"]}
    assert cli.main(["evaluate", "vae_mnist", "--guidance", "2"]) == 2
    plain = _faces_preset(tmp_path / "plain", tiny.diffusion(conditions=None))
    assert cli.main(["evaluate", str(plain), "--guidance", "2"]) == 2
    assert len(measured_models) == 2  # neither refused command reached the evaluation


def test_evaluate_command_measures_with_a_guidance_interval_outside_the_card(
    faces_preset, tmp_path, measured_models, capsys
):
    folder, _ = faces_preset
    out = tmp_path / "report.json"
    argv = ["evaluate", str(folder), "--guidance-interval", "0.28,5.42"]
    assert cli.main([*argv, "--json", str(out)]) == 0
    assert [m.guidance_interval for m in measured_models] == [(0.28, 5.42)]
    assert json.loads(out.read_text())["guidance_interval"] == [0.28, 5.42]
    assert "guidance_interval: 0.28,5.42" in capsys.readouterr().out
    refused = (
        [*argv, "--update-card"],  # the card keeps the numbers of its own interval
        ["evaluate", str(folder), "--guidance-interval", "2,1"],
        ["evaluate", str(folder), "--guidance-interval", "1"],
        ["evaluate", "vae_mnist", "--guidance-interval", "0,1"],
        [
            "evaluate",
            str(_faces_preset(tmp_path / "plain", tiny.diffusion(conditions=None))),
            "--guidance-interval",
            "0,1",
        ],
    )
    for command in refused:
        try:
            code = cli.main(command)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        assert code == 2, command
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "guidance" in error, error
    assert len(measured_models) == 1  # no refused command reached the evaluation
