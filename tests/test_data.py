import gzip
import io
import struct
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import data


def jpeg(seed, size=64):
    pixels = np.random.default_rng(seed).integers(
        0, 256, (size, size, 3), dtype=np.uint8
    )
    return tf.io.encode_jpeg(pixels, quality=95).numpy()


def add(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


@pytest.fixture
def faces_tar(tmp_path):
    """Five faces, three train and two test, in the layout of faces64.tar."""
    path = tmp_path / "faces64.tar"
    with tarfile.open(path, "w") as archive:
        for i in range(5):
            add(archive, f"images/{i:06d}.jpg", jpeg(i))
    splits = ["train", "test", "train", "test", "train"]
    rows = [f"images/{i:06d}.jpg\t30\tmale\t{s}" for i, s in enumerate(splits)]
    (tmp_path / "faces64_labels.tsv").write_text(
        "member\tage\tgender\tsplit\n" + "\n".join(rows) + "\n"
    )
    return path


def test_faces_from_tar_follow_the_labels_split(faces_tar):
    train = data.load_images("faces", "train", source=faces_tar)
    test = data.load_images("faces", "test", source=faces_tar)
    assert train.shape == (3, 64, 64, 3) and test.shape == (2, 64, 64, 3)
    assert train.dtype == np.uint8
    expected = tf.io.decode_jpeg(jpeg(2)).numpy()
    np.testing.assert_array_equal(train[1], expected)


def test_faces_folder_is_resized_and_cropped_to_64(tmp_path):
    (tmp_path / "a.png").write_bytes(
        tf.io.encode_png(np.zeros((100, 80, 3), np.uint8)).numpy()
    )
    (tmp_path / "b.jpg").write_bytes(jpeg(1, size=64))
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_images("faces", "train", source=tmp_path)
    assert images.shape == (2, 64, 64, 3)
    with pytest.raises(data.DataSourceError, match="no labels file"):
        data.load_images("faces", "test", source=tmp_path)


def test_corrupt_image_is_reported_by_name(tmp_path):
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, "images/good.jpg", jpeg(0))
        add(archive, "images/broken.jpg", jpeg(1)[:50])
    with pytest.raises(ValueError, match="cannot decode image 'images/broken.jpg'"):
        data.load_images("faces", source=path)


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/evil.jpg"])
def test_unsafe_tar_member_is_refused(tmp_path, name):
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, name, jpeg(0))
    with pytest.raises(ValueError, match="unsafe member name"):
        data.load_images("faces", source=path)


def test_mnist_npz_and_environment_variable(tmp_path, monkeypatch):
    x_test = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.zeros((4, 28, 28), np.uint8),
        y_train=np.zeros(4),
        x_test=x_test,
        y_test=np.zeros(3),
    )
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path))
    images = data.load_images("mnist", "test", download=False)
    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(images[..., 0], x_test)


def write_idx(path, array):
    header = (
        b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    )
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())


def test_fashion_mnist_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    loaded = data.load_images("fashion_mnist", "test", source=tmp_path)
    np.testing.assert_array_equal(loaded[..., 0], images)


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((5, 28, 28), np.uint8))
    with gzip.open(path) as file:
        payload = file.read()
    with gzip.open(path, "wb") as file:
        file.write(payload[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_no_source_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(data.DataSourceError) as error:
        data.load_images("mnist", download=False)
    message = str(error.value)
    assert str(tmp_path / "mnist.npz") in message
    assert "TFDS (not tried: download=False)" in message
    assert "source=PATH" in message and "KERAS_GEN_DATA" in message


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="faces, mnist, fashion_mnist"):
        data.load_images("cifar")
    with pytest.raises(ValueError, match="train, test"):
        data.load_images("mnist", "validation")


def test_pipeline_batches_floats_in_unit_range():
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    batches = list(data.pipeline(images, batch_size=4, shuffle=False))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate(batches), images / 255.0, rtol=1e-6)
    shuffled = np.concatenate(list(data.pipeline(images, batch_size=4, seed=1)))
    assert not np.array_equal(shuffled, images / 255.0)
    np.testing.assert_allclose(
        np.sort(shuffled.ravel()), np.sort(images.ravel() / 255.0), rtol=1e-6
    )


def test_fixed_binarization_does_not_depend_on_order_or_batch_size():
    images = np.random.default_rng(0).integers(0, 256, (12, 4, 4, 1), dtype=np.uint8)
    once = np.concatenate(
        list(data.pipeline(images, batch_size=5, shuffle=False, binarize="fixed"))
    )
    again = np.concatenate(
        list(data.pipeline(images, batch_size=12, shuffle=False, binarize="fixed"))
    )
    assert set(np.unique(once)) <= {0.0, 1.0}
    np.testing.assert_array_equal(once, again)


def test_dynamic_binarization_differs_between_passes():
    images = np.full((64, 4, 4, 1), 128, np.uint8)
    dataset = data.pipeline(images, batch_size=64, shuffle=False, binarize="dynamic")
    first, second = next(iter(dataset)).numpy(), next(iter(dataset)).numpy()
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)
    assert 0.4 < first.mean() < 0.6


def test_tfds_fallback_crops_celeb_a_the_dcgan_way(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []

    def fake_load(name, split):
        calls.append((name, split))
        images = np.broadcast_to(
            np.arange(218, dtype=np.uint8)[:, None, None], (218, 178, 3)
        )
        return tf.data.Dataset.from_tensor_slices({"image": np.stack([images] * 3)})

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.delenv("KERAS_GEN_DATA", raising=False)
    faces = data.load_images("faces", "test")
    assert calls == [("celeb_a", "test")]
    assert faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8
    # Rows 20..197 survive the centre crop: the top row now reads about 20, the bottom about 197.
    assert 18 <= faces[0, 0, 0, 0] <= 24 and 193 <= faces[0, -1, 0, 0] <= 199
