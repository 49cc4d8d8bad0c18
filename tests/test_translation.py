"""Image-to-image presets end to end, on a tiny faces tar: `keras-gen train` feeds
(inputs, targets), measures against the baseline and writes the figure; `evaluate`,
`sample` and `translate` work on the result."""

import io
import json
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import cli, data, images, metrics, training, zoo

CARDS = {
    "pix2pix": (
        "Pix2Pix",
        {"image_size": 64, "generator_filters": 2, "discriminator_filters": 2},
        "faces_edges",
    ),
    "super_resolution": (
        "SuperResolution",
        {"input_size": 16, "scale": 4, "filters": 4, "residual_blocks": 1},
        "faces_downsample4",
    ),
}


def blocky_faces(count, seed):
    """64x64 images of 8x8 coloured blocks: edges a sketch finds, colour to restore."""
    blocks = np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 3), np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """faces64.tar of 8 train and 4 test images (PNG, so pixels survive exactly)."""
    folder = tmp_path_factory.mktemp("faces")
    rows = []
    with tarfile.open(folder / "faces64.tar", "w") as archive:
        for i, pixels in enumerate(blocky_faces(12, seed=0)):
            payload = tf.io.encode_png(pixels).numpy()
            info = tarfile.TarInfo(f"images/{i:06d}.png")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
            split = "test" if i % 3 == 0 else "train"
            rows.append(f"images/{i:06d}.png\t30\tmale\t{split}")
    (folder / "faces64_labels.tsv").write_text(
        "member\tage\tgender\tsplit\n" + "\n".join(rows) + "\n"
    )
    return folder / "faces64.tar"


@pytest.fixture(scope="module", params=list(CARDS))
def trained(request, faces, tmp_path_factory):
    """(preset folder written by training.train, its input kind)."""
    model_class, config, dataset = CARDS[request.param]
    card = {
        "description": "tiny",
        "model": {"class": model_class, "config": config},
        "data": {
            "dataset": dataset,
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    recipe = tmp_path_factory.mktemp("recipe") / request.param
    recipe.mkdir()
    (recipe / "card.json").write_text(json.dumps(card))
    output = recipe.parent / f"{request.param}_trained"
    logs = recipe.parent / "logs"
    training.train(recipe, output, data_source=faces, logdir=logs, verbose=0)
    assert any(logs.iterdir())  # the preview of input / output / target rows too
    return output, data.input_kind(dataset)


def test_training_writes_metrics_against_the_baseline_and_the_figure(trained, faces):
    folder, kind = trained
    card = zoo.card(folder)
    found = {metric["name"]: metric["value"] for metric in card["metrics"]}
    model = zoo.load(folder)
    targets = data.load_images("faces", "test", source=faces) / np.float32(255)
    outputs = model.translate(data.paired(kind, targets))
    psnr = 10 * np.log10(1 / ((outputs - targets) ** 2).numpy().mean(axis=(1, 2, 3)))
    name = "PSNR, dB (mean over 4 test images)"
    assert found[name] == pytest.approx(psnr.mean(), rel=1e-4)
    assert "SSIM (mean over 4 test images)" in found
    assert found["floor (real test vs train): FID (classifier_faces)"] >= 0
    colourfulness = "colourfulness (Hasler and Süsstrunk 2003, mean)"
    assert found[f"real test images: {colourfulness}"] == pytest.approx(
        metrics.colourfulness(targets).mean()
    )
    if kind == "downsample4":
        bicubic = "baseline (bicubic upsampling): PSNR, dB (mean over 4 test images)"
        gain = found["PSNR gain over the baseline (bicubic upsampling), dB"]
        assert gain == pytest.approx(found[name] - found[bicubic])
    (figure,) = card["figures"]
    assert figure["command"].startswith(f"keras-gen sample {folder} -n 8 --seed 0")
    shown = tf.io.decode_png((folder / figure["file"]).read_bytes()).numpy()
    assert shown.shape == (3 * 66 + 2, 4 * 66 + 2, 3)  # input, output, target rows


def test_evaluate_update_card_redraws_the_figure(trained, faces, tmp_path):
    folder, _ = trained
    report = tmp_path / "report.json"
    argv = ["evaluate", str(folder), "--data", str(faces), "--features", "none"]
    assert cli.main([*argv, "--json", str(report), "--update-card"]) == 0
    names = [metric["name"] for metric in json.loads(report.read_text())["metrics"]]
    assert "PSNR, dB (mean over 4 test images)" in names
    (figure,) = zoo.card(folder)["figures"]
    assert figure["command"] == (
        f"keras-gen sample {folder} -n 8 --seed 0 -o translations.png --data {faces}"
    )


def test_sample_shows_test_triplets(trained, faces, tmp_path):
    folder, _ = trained
    output = tmp_path / "triplets.png"
    argv = ["sample", str(folder), "-n", "3", "--seed", "5", "--data", str(faces)]
    assert cli.main([*argv, "-o", str(output)]) == 0
    assert tf.io.decode_png(output.read_bytes()).shape == (3 * 66 + 2, 3 * 66 + 2, 3)


def test_translate_prepares_a_photo_as_the_training_data_was(trained, tmp_path):
    folder, kind = trained
    photo = tmp_path / "photo.png"
    photo.write_bytes(tf.io.encode_png(blocky_faces(1, seed=9)[0, :60, :50]).numpy())
    output = tmp_path / "out.png"
    assert cli.main(["translate", str(folder), str(photo), "-o", str(output)]) == 0
    model = zoo.load(folder)
    cropped = images.decode_images([str(photo)], [photo.read_bytes()], 64)
    expected = model.translate(data.paired(kind, cropped))[0].numpy()
    written = tf.io.decode_png(output.read_bytes()).numpy()
    np.testing.assert_array_equal(written, np.round(expected * 255).astype(np.uint8))

    # A prepared input is only resized; two inputs make a row of two.
    assert (
        cli.main(
            ["translate", str(folder), str(photo), str(photo), "--input-is-prepared"]
            + ["--show-inputs", "-o", str(output)]
        )
        == 0
    )
    assert tf.io.decode_png(output.read_bytes()).shape == (2 * 66 + 2, 2 * 66 + 2, 3)
