"""The static page of `keras-gen export PRESET --format web`, and the onnxruntime-web
files it runs on.

onnxruntime-web comes from its npm package, pinned to one version and to the sha512
the npm registry publishes for that version's tarball. The tarball is downloaded
once, checked before anything is read from it, and only the three files of the
WebAssembly backend are kept, each checked against its pinned sha256, in
KERAS_GEN_CACHE (default ~/.cache/keras_gen)/onnxruntime-web-<version>/. Nothing
else of the archive is extracted, so its member paths never reach the file system.
"""

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from keras_gen import _files, progress

ORT_VERSION = "1.30.0"
# `npm view onnxruntime-web@1.30.0 dist.integrity`: the registry's hash of the tarball.
ORT_INTEGRITY = (
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1"
    "SigqR4CXAfKYQ=="
)
ORT_URL = (
    f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_VERSION}.tgz"
)
# The WebAssembly-only build: the script the page loads, the Emscripten loader it
# imports, and the binary. The binary is built for threads but runs on one where the
# page is not cross-origin isolated, as from a plain static server.
ORT_FILES = {
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": (
        "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b"
    ),
    "ort-wasm-simd-threaded.wasm": (
        "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2"
    ),
}
PAGE_FILES = ("index.html", "keras_gen.js")
CONFIG_PLACEHOLDER = "__KERAS_GEN_CONFIG__"
DOWNLOAD_TIMEOUT = 120  # seconds without data before the download gives up


def cache_dir() -> Path:
    """Where downloads are kept: KERAS_GEN_CACHE, else ~/.cache/keras_gen."""
    return Path(os.environ.get("KERAS_GEN_CACHE", "~/.cache/keras_gen")).expanduser()


def runtime(cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """onnxruntime-web's files by name, downloaded and checked on first use.

    A cached file whose sha256 is not the pinned one (a broken or edited copy) is
    replaced by a fresh download, never served.
    """
    folder = Path(cache or cache_dir()) / f"onnxruntime-web-{ORT_VERSION}"
    files = {name: folder / name for name in ORT_FILES}
    if not all(_intact(path) for path in files.values()):
        with progress.stage(f"downloading onnxruntime-web {ORT_VERSION}"):
            contents = _extracted(_download(folder))
        with _files.atomic_directory(folder, overwrite=True) as staging:
            for name, content in contents.items():
                (staging / name).write_bytes(content)
    return files


def _intact(path: Path) -> bool:
    return path.is_file() and _files.sha256(path) == ORT_FILES[path.name]


def _download(folder: Path) -> bytes:
    """The npm tarball, refused unless its sha512 is the pinned integrity."""
    try:
        with urllib.request.urlopen(ORT_URL, timeout=DOWNLOAD_TIMEOUT) as response:
            tarball = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"cannot download onnxruntime-web {ORT_VERSION} from {ORT_URL} ({error}); "
            f"the web page needs it. Retry with network access, or place "
            f"{', '.join(ORT_FILES)} from that package's dist/ in {folder}"
        ) from error
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != ORT_INTEGRITY:
        raise ValueError(
            f"{ORT_URL} has sha512 {digest}, not the {ORT_INTEGRITY} the npm registry "
            "publishes for it: refusing to use it"
        )
    return tarball


def _extracted(tarball: bytes) -> dict[str, bytes]:
    """The contents of package/dist/<name> for each of ORT_FILES, each checked.

    Read from the archive in memory, never extracted by the archive's own paths.
    """
    contents = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        members = {member.name: member for member in archive.getmembers()}
        for name, expected in ORT_FILES.items():
            member = members.get(f"package/dist/{name}")
            if member is None or not member.isreg():
                raise ValueError(f"onnxruntime-web {ORT_VERSION} has no dist/{name}")
            content = archive.extractfile(member).read()
            if hashlib.sha256(content).hexdigest() != expected:
                raise ValueError(
                    f"dist/{name} of onnxruntime-web {ORT_VERSION} is not the pinned file"
                )
            contents[name] = content
    return contents


def page(config: dict) -> dict[str, bytes]:
    """The page's own files by name, with `config` (JSON-serializable) built in."""
    # "<" escaped: the JSON sits in a <script> element, which "</script>" would end.
    text = json.dumps(config, indent=1).replace("<", "\\u003c")
    files = {
        name: resources.files(__package__).joinpath(name).read_text()
        for name in PAGE_FILES
    }
    files["index.html"] = files["index.html"].replace(CONFIG_PLACEHOLDER, text)
    return {name: content.encode() for name, content in files.items()}
