"""The web export in a real headless Chromium: the page samples for a seed and draws
what Keras decodes from the same latents; onnxruntime-web's files are pinned and checked.
"""

import base64
import hashlib
import io
import json
import math
import os
import tarfile
import urllib.request

import chromium
import numpy as np
import pytest
import tiny
from test_onnx import varied

from keras_gen import cli, export, web

pytest.importorskip("tf2onnx")

# Read when pytest imports this file, before conftest points KERAS_GEN_CACHE at a
# temporary folder: the onnxruntime-web files `make browser` fetched are reused.
CACHE = web.cache_dir()
TIMEOUT = 60  # seconds for the page to load the runtime and sample


@pytest.fixture(scope="module")
def browser():
    if chromium.executable() is None:
        message = "no chromium on PATH: `make browser` installs Debian's package"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the browser test, never skip it
        pytest.skip(message)
    with chromium.Chromium() as started:
        yield started


def page_latents(seed: int, count: int) -> np.ndarray:
    """The page's latents, written again in Python from keras_gen.js's comment:
    mulberry32 from the seed, two outputs per value through Box-Muller's cosine."""
    mask = 0xFFFFFFFF
    state = seed & mask

    def next_uint32():
        nonlocal state
        state = (state + 0x6D2B79F5) & mask
        t = ((state ^ (state >> 15)) * (state | 1)) & mask
        t ^= (t + ((t ^ (t >> 7)) * (t | 61))) & mask
        return (t ^ (t >> 14)) & mask

    values = []
    for _ in range(count):
        u1, u2 = ((next_uint32() + 0.5) / 2**32 for _ in range(2))
        values.append(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))
    return np.array(values, np.float32)


def sampled(browser, session, seed: int) -> dict:
    """The page's result once it has sampled `seed` (or its error)."""
    done = (
        f"(window.keras_gen_result && window.keras_gen_result.seed === {seed} && "
        "document.body.dataset.state === 'ready') || window.keras_gen_error"
    )
    browser.wait_for(session, done, TIMEOUT)
    error = browser.evaluate(session, "window.keras_gen_error || ''")
    assert not error, (error, browser.console())
    return browser.evaluate(session, "window.keras_gen_result")


def assert_drawn_as_keras_decodes(model, result, seed, **conditions):
    latents = np.array(result["latents"], np.float32)
    assert latents.shape == (export.WEB_GRID, model.latent_dim)
    assert result["shape"][0] == export.WEB_GRID
    np.testing.assert_allclose(
        latents.ravel(), page_latents(seed, latents.size), rtol=0, atol=1e-6
    )
    pixels = np.array(result["pixels"], np.float64).reshape(result["shape"])
    expected = model.decode(latents, **conditions).numpy() * 255
    assert expected.shape == pixels.shape
    assert expected.std(axis=0).mean() > 20  # samples that differ: order matters
    assert np.abs(pixels - expected).max() <= 1  # within 1/255 of Keras's image
    assert np.mean(pixels == np.round(expected)) > 0.99  # rounded, not truncated


def test_the_page_draws_what_keras_decodes_for_a_seed(browser, tmp_path):
    model = varied(tiny.dcgan(seed=3, channels=3))  # colour; the other page is grey
    title = "tiny </script> dcgan"  # ends the config's <script> unless escaped
    site = export.web(model, tmp_path / "site", title=title, cache=CACHE)
    assert sorted(p.name for p in site.iterdir() if p.name != ".keras_gen") == sorted(
        ["index.html", "keras_gen.js", "generate.onnx", *web.ORT_FILES]
    )
    with chromium.serving(site) as url:
        session = browser.open(f"{url}?seed=7")
        assert_drawn_as_keras_decodes(model, sampled(browser, session, 7), seed=7)
        assert browser.evaluate(session, "document.title") == f"{title} · keras_gen"

        # Another seed through the form (whose field refuses what is not a seed).
        submit = "document.getElementById('controls').requestSubmit()"
        browser.evaluate(
            session, f"document.getElementById('seed').value = '8'; {submit}"
        )
        assert_drawn_as_keras_decodes(model, sampled(browser, session, 8), seed=8)
        # A link's ?seed= is checked by the page itself.
        session = browser.open(f"{url}?seed=4294967296")
        error = browser.wait_for(session, "window.keras_gen_error", TIMEOUT)
        assert "seed must be an integer from 0 to 4294967295" in error


def test_a_conditional_page_decodes_the_chosen_class(browser, tmp_path):
    model = varied(tiny.conditional_vae(seed=3))
    site = export.web(model, tmp_path / "site", cache=CACHE)
    with chromium.serving(site) as url:
        session = browser.open(f"{url}?seed=3")
        sampled(browser, session, 3)
        choose = (
            "const head = document.getElementById('head-1'); head.value = '2'; "
            "window.keras_gen_result = null; head.dispatchEvent(new Event('change'))"
        )
        browser.evaluate(session, choose)
        result = sampled(browser, session, 3)
    assert result["labels"] == [[0, 2]] * export.WEB_GRID
    assert_drawn_as_keras_decodes(model, result, seed=3, age=0, gender=2)


def test_a_model_without_a_latent_decode_is_refused_before_anything(tmp_path):
    with pytest.raises(ValueError, match="no latent decode signature"):
        export.web(tiny.classifier(), tmp_path / "site", cache=tmp_path / "cache")
    assert not any(tmp_path.iterdir())


def fake_package(files: dict[str, bytes], extra=()) -> bytes:
    """An npm tarball holding package/dist/<name> for `files`, and `extra` members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            member = tarfile.TarInfo(f"package/dist/{name}")
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
        for member in extra:
            archive.addfile(member)
    return buffer.getvalue()


@pytest.fixture
def fake_registry(monkeypatch):
    """Pins of a fake onnxruntime-web, and a registry answering with `served[0]`."""
    files = {name: f"the {name} of a fake release".encode() for name in web.ORT_FILES}
    escape = tarfile.TarInfo("package/dist/../../escaped")  # never extracted
    tarball = fake_package(files, extra=[escape])
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    pins = {
        name: hashlib.sha256(content).hexdigest() for name, content in files.items()
    }
    monkeypatch.setattr(web, "ORT_FILES", pins)
    monkeypatch.setattr(web, "ORT_INTEGRITY", "sha512-" + digest)
    served, downloads = [tarball], []

    def urlopen(url, timeout):
        downloads.append(url)
        return io.BytesIO(served[0])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return files, served, downloads


def test_the_runtime_is_downloaded_once_checked_and_repaired(fake_registry, tmp_path):
    files, _, downloads = fake_registry
    found = web.runtime(tmp_path)
    assert {name: path.read_bytes() for name, path in found.items()} == files
    folder = tmp_path / f"onnxruntime-web-{web.ORT_VERSION}"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, ".keras_gen"])
    assert not (tmp_path / "escaped").exists()  # where ../../ from the folder leads
    web.runtime(tmp_path)
    assert len(downloads) == 1  # cached
    found["ort.wasm.min.js"].write_bytes(b"an edited copy")
    web.runtime(tmp_path)
    assert (
        len(downloads) == 2
        and found["ort.wasm.min.js"].read_bytes() == (files["ort.wasm.min.js"])
    )


def test_a_tarball_that_is_not_the_pinned_one_is_refused(fake_registry, tmp_path):
    files, served, _ = fake_registry
    served[0] = fake_package({**files, "ort.wasm.min.js": b"alert('hi')"})
    with pytest.raises(ValueError, match="refusing to use it"):
        web.runtime(tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_required_file_that_is_a_link_is_refused(
    fake_registry, tmp_path, monkeypatch
):
    files, served, _ = fake_registry
    link = tarfile.TarInfo("package/dist/ort-wasm-simd-threaded.mjs")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    others = {k: v for k, v in files.items() if k != "ort-wasm-simd-threaded.mjs"}
    served[0] = fake_package(others, extra=[link])
    pin = base64.b64encode(hashlib.sha512(served[0]).digest()).decode()
    monkeypatch.setattr(web, "ORT_INTEGRITY", "sha512-" + pin)
    with pytest.raises(ValueError, match="has no dist/ort-wasm-simd-threaded.mjs"):
        web.runtime(tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, match",
    [
        (["classifier_mnist"], "no latent decode signature"),
        (["vae_mnist", "--uint8"], "--uint8 is not for --format web"),
    ],
)
def test_export_command_refuses_in_one_line(argv, match, tmp_path, capsys):
    output = tmp_path / "site"
    assert cli.main(["export", *argv, "--format", "web", "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and match in error
    assert not output.exists()


def test_the_page_config_is_json_a_script_element_cannot_end():
    files = web.page({"title": "</script><script>alert(1)</script>", "grid": 16})
    html = files["index.html"].decode()
    assert html.count("</script>") == 3  # the config's, ort's and keras_gen.js's
    start = html.index('id="keras-gen-config">') + len('id="keras-gen-config">')
    config = json.loads(html[start : html.index("</script>", start)])
    assert config["title"] == "</script><script>alert(1)</script>"
