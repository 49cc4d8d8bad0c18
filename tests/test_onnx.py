"""ONNX export: tf2onnx from the SavedModel, run in onnxruntime against Keras."""

import json
import sys

import numpy as np
import pytest
import tiny
from test_zoo import TINY_CARD

from keras_gen import _files, cli, export, zoo

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def varied(model, seed=1):
    """`model` with weights drawn at a scale where its images differ from latent to
    latent (a fresh tiny generator draws the same grey for every latent)."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        if len(weight.shape) > 1:
            fan_in = np.prod(weight.shape[:-1])
            scale = 1.5 * np.sqrt(2.0 / fan_in)
            weight.assign(rng.standard_normal(weight.shape).astype("float32") * scale)
    return model


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(path, inputs):
    found = session(path)
    return dict(zip([o.name for o in found.get_outputs()], found.run(None, inputs)))


def first_onnx_signature(model):
    return next(n for n in model.serving_endpoints() if n not in export.NOT_IN_TFLITE)


@pytest.mark.slow  # some 3 s of CPU a family; VAE, MLPGAN and DCGAN run below
@pytest.mark.parametrize("family", list(tiny.FAMILIES))
def test_every_family_runs_in_onnxruntime_like_keras(family, tmp_path):
    """The first signature ONNX holds, converted and checked against Keras (every
    signature of VAE is checked below); families with none are refused clearly."""
    model = tiny.FAMILIES[family].make(seed=3)
    endpoints = model.serving_endpoints()
    if all(name in export.NOT_IN_TFLITE for name in endpoints):
        with pytest.raises(ValueError, match="export a SavedModel instead"):
            export.onnx(model, tmp_path / "onnx")
        assert not (tmp_path / "onnx").exists()
        return
    name = first_onnx_signature(model)
    folder = export.onnx(model, tmp_path / "onnx", signatures=[name])
    assert sorted(p.name for p in folder.iterdir()) == [_files.MARKER, f"{name}.onnx"]
    assert export.onnx_error(model, folder) <= 1e-5


@pytest.fixture(scope="module")
def vae_onnx(tmp_path_factory):
    model = varied(tiny.vae(seed=3))
    return model, export.onnx(model, tmp_path_factory.mktemp("vae") / "onnx")


def test_vae_signatures_have_their_names_and_a_free_batch_size(vae_onnx):
    _, folder = vae_onnx
    names = sorted(p.name for p in folder.glob("*.onnx"))
    assert names == ["decode.onnx", "encode.onnx", "reconstruct.onnx"]
    expected = {
        "decode": (["latents"], ["images"]),
        "encode": (["images"], ["mean", "stddev"]),
        "reconstruct": (["images"], ["images_out"]),  # ONNX names are unique
    }
    for name, (inputs, outputs) in expected.items():
        found = session(folder / f"{name}.onnx")
        assert [i.name for i in found.get_inputs()] == inputs
        assert sorted(o.name for o in found.get_outputs()) == outputs
        for value in (*found.get_inputs(), *found.get_outputs()):
            assert isinstance(value.shape[0], str), (name, value.shape)  # symbolic


def test_vae_signatures_equal_keras_at_batch_1_and_3(vae_onnx):
    model, folder = vae_onnx
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        latents = rng.standard_normal((batch, model.latent_dim)).astype("float32")
        images = rng.random((batch, *model.image_shape)).astype("float32")
        decoded = run(folder / "decode.onnx", {"latents": latents})["images"]
        encoded = run(folder / "encode.onnx", {"images": images})
        rebuilt = run(folder / "reconstruct.onnx", {"images": images})["images_out"]
        posterior = model.encode(images)
        expected = model.decode(latents).numpy()
        assert batch == 1 or expected.std(axis=0).mean() > 0.05  # a varied batch
        np.testing.assert_allclose(decoded, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(encoded["mean"], posterior.mean(), atol=1e-5)
        np.testing.assert_allclose(encoded["stddev"], posterior.stddev(), atol=1e-5)
        np.testing.assert_allclose(
            rebuilt, model.reconstruct(images), atol=1e-5, rtol=0
        )


def test_a_row_with_nan_comes_out_nan_and_the_others_as_keras(vae_onnx):
    """ONNX cannot refuse a request, as the SavedModel does: like TFLite, a row
    holding NaN or infinity comes out NaN rather than as a plausible image."""
    model, folder = vae_onnx
    latents = np.random.default_rng(1).standard_normal((3, 3)).astype("float32")
    latents[1, 0] = np.nan
    images = np.random.default_rng(2).random((3, 8, 8, 1)).astype("float32")
    images[1, 2, 2, 0] = np.inf
    cases = (
        ("decode", "latents", latents, model.decode),
        ("reconstruct", "images", images, model.reconstruct),
    )
    for name, key, inputs, method in cases:
        (found,) = run(folder / f"{name}.onnx", {key: inputs}).values()
        assert np.isnan(found[1]).all()
        np.testing.assert_allclose(found[[0, 2]], method(inputs[[0, 2]]), atol=1e-5)


def test_uint8_images_are_keras_images_rounded(tmp_path):
    model = varied(tiny.mlp_gan(seed=3))
    folder = export.onnx(model, tmp_path / "onnx", uint8=True)
    latents = np.random.default_rng(3).standard_normal((5, 4)).astype("float32")
    images = run(folder / "generate.onnx", {"latents": latents})["images"]
    assert images.dtype == np.uint8
    expected = model.decode(latents).numpy() * 255
    assert np.abs(images - expected).max() <= 0.5 + 1e-3
    assert export.onnx_error(model, folder) <= 1  # in 0..255 levels


def test_export_command_writes_onnx_and_records_parity_in_the_card(tmp_path, capsys):
    model = varied(zoo.build(TINY_CARD))
    card = json.loads(json.dumps(TINY_CARD))
    folder = zoo.write(tmp_path / "tiny_gan", model, card, model.generate(4, seed=0))
    output = tmp_path / "onnx"
    argv = ["export", str(folder), "--format", "onnx", "--output", str(output)]
    assert cli.main([*argv, "--update-card"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    metrics = {m["name"]: m for m in zoo.card(folder)["metrics"]}
    error = metrics["onnx max abs error vs Keras"]
    assert 0 <= error["value"] <= 1e-5
    assert error["command"] == "keras-gen " + " ".join([*argv, "--update-card"])
    size = (output / "generate.onnx").stat().st_size / 2**20
    assert metrics["onnx file size, MB"]["value"] == pytest.approx(size)
    zoo.load(folder)  # the weights are untouched and still verify


@pytest.mark.parametrize("write", [export.onnx, export.web])
def test_what_keras_gen_did_not_write_is_refused_before_tracing(write, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    for output in (mine, notes):
        with pytest.raises(_files.OverwriteError, match=output.name):
            write(object(), output)  # no model at all: refused first
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert notes.read_text() == "not a folder"


def test_a_signature_onnx_cannot_hold_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="no signature 'sample' for ONNX; it has"):
        export.onnx(tiny.dcgan(), tmp_path / "onnx", signatures=["sample"])
    assert not (tmp_path / "onnx").exists()


def test_without_the_onnx_extra_the_error_says_how_to_install_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails as if missing
    with pytest.raises(ImportError, match=r"pip install 'keras-gen\[onnx\]'"):
        export.onnx(tiny.dcgan(), tmp_path / "onnx")
    argv = ["export", "vae_mnist", "--format", "onnx", "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "keras-gen[onnx]" in error
    assert not any(tmp_path.iterdir())


def test_export_command_refuses_a_preset_onnx_cannot_hold_in_one_line(tmp_path, capsys):
    output = tmp_path / "onnx"
    argv = ["export", "pixelcnn_mnist", "--format", "onnx", "--output", str(output)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "PixelCNN has no signature for ONNX" in error
    assert not output.exists()
