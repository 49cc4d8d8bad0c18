import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tiny
from test_zoo import TINY_CARD

from keras_gen import _files, cli, export, zoo
from keras_gen.models import base

SIGNATURES = {
    "DCGAN": ["generate", "sample", "serving_default"],
    "VAE": ["decode", "encode", "reconstruct", "score", "sample", "serving_default"],
}


@pytest.fixture(scope="module", params=["DCGAN", "VAE"])
def exported(request, tmp_path_factory):
    model = tiny.dcgan() if request.param == "DCGAN" else tiny.vae()
    directory = export.saved_model(model, tmp_path_factory.mktemp("export") / "model")
    return request.param, model, directory


def inputs_for(family, model):
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((3, model.latent_dim)).astype("float32")
    sample = {"num_samples": np.int32(4), "seed": np.int64(9)}
    if family == "DCGAN":
        return {"generate": {"latents": latents}, "sample": sample}
    images = (rng.random((3, *model.image_shape)) < 0.5).astype("float32")
    return {
        "decode": {"latents": latents},
        "encode": {"images": images},
        "reconstruct": {"images": images},
        "score": {"images": images},
        "sample": sample,
    }


def keras_outputs(family, model, name, arguments):
    if name in ("generate", "decode"):
        return {"images": model.decode(arguments["latents"])}
    if name == "sample":
        return {
            "images": model.generate(
                int(arguments["num_samples"]), seed=int(arguments["seed"])
            )
        }
    if name == "encode":
        posterior = model.encode(arguments["images"])
        return {"mean": posterior.mean(), "stddev": posterior.stddev()}
    if name == "reconstruct":
        return {"images": model.reconstruct(arguments["images"])}
    return {"negative_elbo": model.score(arguments["images"])}


SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
directory, requests, answers = sys.argv[1:]
loaded = tf.saved_model.load(directory)
assert not any(name.startswith("keras_gen") for name in sys.modules), "TensorFlow only"
requests = np.load(requests)
out = {}
names = sorted({key.split("/")[0] for key in requests.files})
for name in names:
    arguments = {k.split("/")[1]: tf.constant(requests[k]) for k in requests.files if k.startswith(name + "/")}
    for output, value in loaded.signatures[name](**arguments).items():
        out[name + "/" + output] = value.numpy()
np.savez(answers, **out)
"""


def test_a_fresh_tensorflow_process_reproduces_every_signature(exported, tmp_path):
    family, model, directory = exported
    requests = inputs_for(family, model)
    flat = {
        f"{name}/{arg}": value
        for name, args in requests.items()
        for arg, value in args.items()
    }
    np.savez(tmp_path / "requests.npz", **flat)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(directory),
            str(tmp_path / "requests.npz"),
            str(tmp_path / "answers.npz"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = np.load(tmp_path / "answers.npz")
    assert {key.split("/")[0] for key in answers.files} == set(requests)
    for name, arguments in requests.items():
        for output, expected in keras_outputs(family, model, name, arguments).items():
            np.testing.assert_allclose(
                answers[f"{name}/{output}"], expected, atol=1e-5, rtol=0
            )


def test_signature_names_and_serving_default(exported):
    family, model, directory = exported
    loaded = tf.saved_model.load(str(directory))
    assert sorted(loaded.signatures) == sorted(SIGNATURES[family])
    first = SIGNATURES[family][0]
    latents = tf.zeros([2, model.latent_dim])
    np.testing.assert_array_equal(
        loaded.signatures["serving_default"](latents=latents)["images"],
        loaded.signatures[first](latents=latents)["images"],
    )


def test_saved_model_cli_lists_signatures_with_shapes_and_dtypes(exported):
    family, model, directory = exported
    cli_path = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [cli_path, "show", "--dir", str(directory), "--all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    for name in SIGNATURES[family]:
        assert f"signature_def['{name}']" in shown
    assert (
        f"shape: (-1, {model.latent_dim})" in shown
        and "name: serving_default_latents:0" in shown
    )
    assert "dtype: DT_INT32" in shown and "dtype: DT_INT64" in shown  # sample's inputs


def test_bad_requests_are_refused_at_the_signature_with_the_expected_shape(exported):
    family, model, directory = exported
    signatures = tf.saved_model.load(str(directory)).signatures
    decode = signatures[SIGNATURES[family][0]]
    expected = rf"expected shape \[\?,{model.latent_dim}\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        decode(latents=tf.zeros([2, model.latent_dim + 1]))  # wrong latent size
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        decode(latents=tf.zeros([model.latent_dim]))  # wrong rank
    with pytest.raises(tf.errors.InvalidArgumentError, match="float"):
        decode(latents=tf.zeros([2, model.latent_dim], tf.int32))  # wrong dtype
    seed = tf.constant(1, tf.int64)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="num_samples must be at least 1"
    ):
        signatures["sample"](num_samples=tf.constant(-3), seed=seed)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="num_samples must be at most 1024"
    ):
        signatures["sample"](num_samples=tf.constant(10**9), seed=seed)


def rest_request(signature, body):
    """The tensors TF Serving's REST API makes of a predict body (row or columnar form)."""
    if "instances" in body:
        rows = body["instances"]
        if isinstance(rows[0], dict):
            return {k: tf.constant([row[k] for row in rows]) for k in rows[0]}
        (name,) = signature.structured_input_signature[1]
        return {name: tf.constant(rows, tf.float32)}
    return {k: tf.constant(v) for k, v in body["inputs"].items()}


def test_tf_serving_rest_bodies_give_the_keras_outputs(exported):
    family, model, directory = exported
    name = SIGNATURES[family][0]
    signature = tf.saved_model.load(str(directory)).signatures[name]
    latents = (
        np.random.default_rng(1)
        .standard_normal((2, model.latent_dim))
        .astype("float32")
    )
    expected = model.decode(latents)
    bodies = [
        {"signature_name": name, "instances": latents.tolist()},
        {"signature_name": name, "inputs": {"latents": latents.tolist()}},
    ]
    for body in bodies:
        body = json.loads(json.dumps(body))  # exactly what goes over the wire
        images = signature(**rest_request(signature, body))["images"]
        np.testing.assert_allclose(images, expected, atol=1e-5, rtol=0)


def test_uint8_images_are_png_ready(tmp_path):
    model = tiny.dcgan()
    directory = export.saved_model(model, tmp_path / "uint8", uint8=True)
    images = tf.saved_model.load(str(directory)).signatures["sample"](
        num_samples=tf.constant(2), seed=tf.constant(3, tf.int64)
    )["images"]
    assert images.dtype == tf.uint8
    np.testing.assert_array_equal(
        images, np.round(model.generate(2, seed=3).numpy() * 255)
    )


def test_sample_signature_truncates_as_the_models_config_says(tmp_path):
    model = tiny.dcgan(truncation=0.7)
    directory = export.saved_model(model, tmp_path / "truncated")
    images = tf.saved_model.load(str(directory)).signatures["sample"](
        num_samples=tf.constant(3), seed=tf.constant(5, tf.int64)
    )["images"]
    np.testing.assert_allclose(images, model.generate(3, seed=5), atol=1e-5)
    assert not np.allclose(images, model.generate(3, seed=5, truncation=math.inf))


def served_models(root):
    """models.config parsed as TF Serving parses it: name -> base_path."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = (root / "models.config").read_text()
    assert text.startswith("# Written by keras_gen;")
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    return {entry.name: entry.base_path for entry in config.model_config_list.config}


def test_serving_layout_versions_are_never_overwritten(tmp_path):
    model = tiny.vae()
    root = tmp_path / 'serving "root"'  # a quote the config must escape
    first = export.serving(model, root, "vae_tiny")
    second = export.serving(model, root, "vae_tiny")
    assert (first.name, second.name) == ("1", "2")
    assert (second / "saved_model.pb").is_file() and (second / "variables").is_dir()
    assert served_models(root) == {"vae_tiny": str((root / "vae_tiny").resolve())}
    with pytest.raises(ValueError, match="versions are immutable.*next free one is 3"):
        export.serving(model, root, "vae_tiny", version=1)
    (root / "models.config").write_text("model_config_list {}\n")  # the user's
    with pytest.raises(_files.OverwriteError, match="models.config"):
        export.serving(tiny.dcgan(), root, "gan_tiny")
    assert not (root / "gan_tiny").exists()  # refused before anything was written
    export.serving(tiny.dcgan(), root, "gan_tiny", overwrite=True)
    assert sorted(served_models(root)) == ["gan_tiny", "vae_tiny"]


def test_serving_refuses_a_file_where_its_folders_go_before_tracing(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    # object() is no model: each refusal comes before the model is looked at.
    with pytest.raises(_files.OverwriteError, match="notes.txt is not a folder"):
        export.serving(object(), notes, "vae_tiny", overwrite=True)
    (tmp_path / "vae_tiny").write_text("mine")
    with pytest.raises(_files.OverwriteError, match="vae_tiny is not a folder"):
        export.serving(object(), tmp_path, "vae_tiny")
    assert notes.read_text() == "not a folder"


@pytest.mark.parametrize("version", [-1, 0, True, 1.5, "2"])
def test_serving_versions_are_positive_integers(version, tmp_path):
    with pytest.raises(ValueError, match="--version must be a positive integer"):
        export.serving(object(), tmp_path, "vae_tiny", version=version)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ['q"x', "..", "a/b", "", "two words"])
def test_serving_model_names_are_letters_digits_dots_dashes(name, tmp_path):
    with pytest.raises(ValueError, match="use only letters, digits, '.', '_' and '-'"):
        export.serving(object(), tmp_path, name)
    assert not any(tmp_path.iterdir())


def user_folder(path):
    path.mkdir()
    (path / "thesis.txt").write_text("years of work")
    return path


@pytest.mark.parametrize("write", [export.saved_model, export.tflite])
def test_what_keras_gen_did_not_write_is_refused_before_tracing(write, tmp_path):
    mine = user_folder(tmp_path / "mine")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    for output in (mine, notes):
        with pytest.raises(_files.OverwriteError, match=output.name):
            write(object(), output)  # no model at all: refused first
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert notes.read_text() == "not a folder"


def test_exports_replace_their_own_folders_and_others_only_with_overwrite(tmp_path):
    model = tiny.dcgan()
    mine = user_folder(tmp_path / "mine")
    export.saved_model(model, mine, overwrite=True)
    assert not (mine / "thesis.txt").exists()
    assert export.saved_model(model, mine) == mine  # now keras_gen's own
    assert (mine / "saved_model.pb").is_file()
    lite = export.tflite(model, tmp_path / "lite")
    assert export.tflite(model, tmp_path / "lite") == lite  # a rerun replaces it
    assert sorted(p.name for p in lite.parent.iterdir()) == [
        _files.MARKER,
        "model.tflite",
    ]


def test_export_command_on_a_preset_folder(tmp_path):
    model = tiny.dcgan()
    card = json.loads(json.dumps(TINY_CARD))
    folder = zoo.write(tmp_path / "tiny_gan", model, card, model.generate(4, seed=0))
    assert (
        cli.main(
            [
                "export",
                str(folder),
                "--format",
                "serving",
                "--output",
                str(tmp_path / "serving"),
            ]
        )
        == 0
    )
    loaded = tf.saved_model.load(str(tmp_path / "serving" / "tiny_gan" / "1"))
    np.testing.assert_allclose(
        loaded.signatures["generate"](latents=tf.ones([1, 4]))["images"],
        model.decode(tf.ones([1, 4])),
        atol=1e-5,
    )


@pytest.mark.parametrize("family", ["DCGAN", "VAE"])
def test_tflite_runs_on_builtin_ops_with_keras_parity_at_any_batch_size(
    family, tmp_path
):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny.dcgan() if family == "DCGAN" else tiny.vae()
    path = export.tflite(model, tmp_path)
    interpreter = Interpreter(model_path=str(path))
    expected = [
        n
        for n in SIGNATURES[family]
        if n not in (*export.NOT_IN_TFLITE, "serving_default")
    ]
    assert sorted(interpreter.get_signature_list()) == sorted(expected)
    for batch in (1, 3):  # the batch size is chosen at run time
        for name, arguments in inputs_for(family, model).items():
            if name in export.NOT_IN_TFLITE:
                continue
            arguments = {
                k: np.repeat(v, batch, axis=0)[:batch] for k, v in arguments.items()
            }
            outputs = interpreter.get_signature_runner(name)(**arguments)
            for output, value in keras_outputs(family, model, name, arguments).items():
                np.testing.assert_allclose(outputs[output], value, atol=1e-4, rtol=0)


@pytest.mark.parametrize("quantize", ["float16", "dynamic_range"])
def test_quantized_tflite_is_smaller_and_close(quantize, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny.dcgan(generator_filters=16)
    full = export.tflite(model, tmp_path / "full")
    small = export.tflite(model, tmp_path / quantize, quantize=quantize)
    assert small.stat().st_size < full.stat().st_size
    latents = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    images = Interpreter(model_path=str(small)).get_signature_runner("generate")(
        latents=latents
    )
    assert np.max(np.abs(images["images"] - model.decode(latents).numpy())) < 0.1


def test_tf_serving_grpc_predict_request_round_trip(exported):
    from tensorflow_serving.apis import predict_pb2

    family, model, directory = exported
    name = SIGNATURES[family][0]
    latents = (
        np.random.default_rng(2)
        .standard_normal((2, model.latent_dim))
        .astype("float32")
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.signature_name = name
    request.inputs["latents"].CopyFrom(tf.make_tensor_proto(latents))
    request = predict_pb2.PredictRequest.FromString(
        request.SerializeToString()
    )  # the wire

    # What the model server does: tensors in by input name, the signature, tensors out.
    signature = tf.saved_model.load(str(directory)).signatures[
        request.model_spec.signature_name
    ]
    inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    for key, value in signature(**inputs).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())

    images = tf.make_ndarray(response.outputs["images"])
    np.testing.assert_allclose(images, model.decode(latents), atol=1e-5, rtol=0)


def test_tflite_export_records_size_and_error_in_the_card(tmp_path, capsys):
    model = tiny.dcgan()
    card = json.loads(json.dumps(TINY_CARD))
    folder = zoo.write(tmp_path / "tiny_gan", model, card, model.generate(4, seed=0))
    argv = [
        "export",
        str(folder),
        "--format",
        "tflite",
        "--quantize",
        "float16",
        "--output",
        str(tmp_path / "lite"),
        "--update-card",
    ]
    assert cli.main(argv) == 0
    metrics = {m["name"]: m for m in zoo.card(folder)["metrics"]}
    error = metrics["tflite (float16) max abs error vs Keras"]
    assert 0 < error["value"] < 0.1 and error["command"] == "keras-gen " + " ".join(
        argv
    )
    size = (tmp_path / "lite" / "model.tflite").stat().st_size / 2**20
    assert metrics["tflite (float16) file size, MB"]["value"] == pytest.approx(size)
    zoo.load(folder)  # the weights are untouched and still verify


@pytest.fixture(scope="module", params=list(tiny.FAMILIES))
def every_family(request, tmp_path_factory):
    model = tiny.FAMILIES[request.param].make(seed=3)
    directory = export.saved_model(model, tmp_path_factory.mktemp("family") / "model")
    return model, tf.saved_model.load(str(directory))


def test_every_family_exports_signatures_equal_to_keras(every_family):
    model, loaded = every_family
    endpoints = model.serving_endpoints()
    assert set(loaded.signatures) == {*endpoints, "serving_default"}
    for name, (function, signature) in endpoints.items():
        inputs = {spec.name: export._example_input(spec, 3) for spec in signature}
        found = loaded.signatures[name](**inputs)
        for key, value in function(*inputs.values()).items():
            np.testing.assert_allclose(found[key], value, rtol=1e-5, atol=1e-5)


def test_every_family_exports_sample_equal_to_generate(every_family):
    """The exported `sample` is `generate` with the same seed (and class, if any)."""
    model, loaded = every_family
    if not model.can(base.SAMPLES):
        pytest.skip(f"{type(model).__name__} does not generate")
    request = {"num_samples": tf.constant(4), "seed": tf.constant(9, tf.int64)}
    conditions = {}
    if model.can(base.CONDITIONS):
        classes = [len(names) - 1 for names in model.conditions.values()]
        request["labels"] = tf.constant(classes, tf.int32)
        conditions = dict(zip(model.conditions, classes))
    # Any other input (a diffusion model's steps, guidance) is the generate argument
    # of the same name.
    options = {
        spec.name: export._example_input(spec, 4)
        for spec in model.serving_endpoints()["sample"][1]
        if spec.name not in ("num_samples", "seed", "labels")
    }
    np.testing.assert_allclose(
        loaded.signatures["sample"](**request, **options)["images"],
        model.generate(4, seed=9, **conditions, **options),
        atol=1e-5,
    )


def batched(spec):
    return bool(spec.shape.rank) and spec.shape[0] is None


def bad_requests(signature):
    """(inputs, message) pairs: requests a signature and its Keras method refuse."""
    good = {spec.name: np.array(export._example_input(spec, 3)) for spec in signature}
    bad = []
    if any(batched(spec) for spec in signature):
        empty = {
            k: v[:0] if batched(s) else v for (k, v), s in zip(good.items(), signature)
        }
        bad.append((empty, "the batch is empty"))
    for spec in signature:
        values = []
        if spec.dtype.is_floating and batched(spec):
            values.append(np.nan)  # latents must be finite, images in [0, 1]
        if spec.name == "images":
            values += [255.0, -5.0]
        if spec.name == "labels":
            values.append(99)
        for value in values:
            inputs = {**good, spec.name: good[spec.name].copy()}
            inputs[spec.name][(1,) if batched(spec) else ()] = value
            message = (
                "out of range" if spec.name == "labels" else f"{spec.name} must be"
            )
            bad.append((inputs, message))
    return bad


def test_every_family_refuses_bad_requests_in_keras_and_at_the_signature(every_family):
    """Empty batches, NaN or infinite latents, pixels outside [0, 1] (score, encode,
    reconstruct, classify), labels out of range: a ValueError from Keras, a failed
    assertion with the same words from the SavedModel."""
    model, loaded = every_family
    for name, (function, signature) in model.serving_endpoints().items():
        for inputs, message in bad_requests(signature):
            with pytest.raises(ValueError, match=re.escape(message)):
                function(*inputs.values())
            with pytest.raises(
                tf.errors.InvalidArgumentError, match=re.escape(message)
            ):
                loaded.signatures[name](**inputs)


@pytest.mark.parametrize(
    "family",
    [
        name
        for name, family in tiny.FAMILIES.items()
        if set(family.make().serving_endpoints()) - set(export.NOT_IN_TFLITE)
    ],
)
def test_every_family_runs_on_tflite_builtins_like_keras(family, tmp_path):
    model = tiny.FAMILIES[family].make(seed=3)
    path = export.tflite(model, tmp_path)
    assert export.tflite_error(model, path) < 1e-4
    assert_nan_rows_come_out_nan(model, path)


def assert_nan_rows_come_out_nan(model, path):
    """TFLite cannot refuse a request: a row holding NaN comes out NaN, the others
    as Keras computes them (where a fused ReLU would map NaN to a plausible image)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    for name in interpreter.get_signature_list():
        function, signature = model.serving_endpoints()[name]
        inputs = {s.name: np.array(export._example_input(s, 3)) for s in signature}
        for spec in signature:
            if spec.dtype.is_floating:
                inputs[spec.name][1] = np.nan
        found = interpreter.get_signature_runner(name)(**inputs)
        finite = {key: value[[0, 2]] for key, value in inputs.items()}
        for key, value in function(*finite.values()).items():
            assert np.isnan(found[key][1]).all(), (name, key)
            np.testing.assert_allclose(found[key][[0, 2]], value, atol=1e-4, rtol=0)
