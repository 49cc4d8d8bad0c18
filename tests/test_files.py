import os

import numpy as np
import pytest

from keras_gen import _files, images


def test_a_folder_keras_gen_wrote_is_replaced_whole_and_others_are_refused(tmp_path):
    target = tmp_path / "out"
    for text in ("first", "second"):  # the second write replaces keras_gen's folder
        with _files.atomic_directory(target) as staging:
            (staging / "file.txt").write_text(text)
    assert (target / "file.txt").read_text() == "second"
    assert _files.is_marked(target)

    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.txt").write_text("years of work")
    with (
        pytest.raises(_files.OverwriteError, match="--overwrite"),
        _files.atomic_directory(user),
    ):
        pass
    assert (user / "thesis.txt").read_text() == "years of work"
    with _files.atomic_directory(user, overwrite=True) as staging:
        (staging / "file.txt").write_text("replaced, as asked")
    assert not (user / "thesis.txt").exists()


def test_an_empty_folder_is_free_and_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert _files.claim_folder(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(_files.OverwriteError, match="notes.txt"):
        _files.claim_folder(tmp_path / "notes.txt")
    with pytest.raises(_files.OverwriteError, match="is not a folder"):
        _files.claim_folder(tmp_path / "notes.txt" / "below")


def test_a_png_keras_gen_wrote_is_replaced_and_the_users_is_not(tmp_path):
    path = tmp_path / "grid.png"
    images.write_png(path, np.zeros((1, 4, 4, 1)))
    images.write_png(path, np.ones((1, 4, 4, 1)))  # keras_gen's own: replaced
    assert images.png_signed(path.read_bytes())

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n the user's own picture")
    with pytest.raises(_files.OverwriteError, match="photo.png"):
        images.write_png(photo, np.zeros((1, 4, 4, 1)))
    assert photo.read_bytes().endswith(b"picture")
    images.write_png(photo, np.zeros((1, 4, 4, 1)), overwrite=True)
    assert images.png_signed(photo.read_bytes())


def test_the_signed_png_decodes_to_the_grid(tmp_path):
    import tensorflow as tf

    pixels = np.random.default_rng(0).random((4, 5, 5, 3))
    images.write_png(tmp_path / "grid.png", pixels)
    decoded = tf.io.decode_png((tmp_path / "grid.png").read_bytes()).numpy()
    np.testing.assert_array_equal(decoded, images.grid(pixels))


@pytest.mark.parametrize("overwrite", [False, True])
def test_special_files_are_never_written_through_or_replaced(tmp_path, overwrite):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(_files.OverwriteError, match="FIFO"):
        images.write_png(fifo, np.zeros((1, 4, 4, 1)), overwrite=overwrite)
    with pytest.raises(_files.OverwriteError, match="FIFO"):
        _files.claim_folder(fifo, overwrite=overwrite)
    assert fifo.is_fifo()
    with pytest.raises(ValueError, match="not a regular file"):
        _files.sha256("/dev/zero")


def test_a_symbolic_link_is_replaced_only_when_asked_and_its_target_never(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("the target")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    with pytest.raises(_files.OverwriteError, match="symbolic link"):
        images.write_png(link, np.zeros((1, 4, 4, 1)))
    images.write_png(link, np.zeros((1, 4, 4, 1)), overwrite=True)
    assert not link.is_symlink() and target.read_text() == "the target"


def test_json_reports_carry_their_signature(tmp_path):
    report = tmp_path / "report.json"
    _files.write_text(report, '{\n  "written_by": "keras_gen"\n}\n', _files.json_signed)
    _files.write_text(report, '{\n  "written_by": "keras_gen"\n}\n', _files.json_signed)
    (tmp_path / "other.json").write_text('{"mine": 1}')
    with pytest.raises(_files.OverwriteError, match="other.json"):
        _files.write_text(tmp_path / "other.json", "{}", _files.json_signed)
