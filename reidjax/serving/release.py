"""Releases: one file holding a trained model, and reading it back.

`reidjax-release --workdir RUN --out DIR` writes `DIR/<name>.tar` (uncompressed; the
weights do not compress) holding

    config.json          the run's config (model, sizes, test rule)
    weights.safetensors  params and BN statistics, keyed `params/backbone/conv1/kernel`, ...
    results.json         the run's last evaluation, with its same-person thresholds
    release.json         what it is (model, step, dataset, when) and the SHA-256 of each
                         file above

and `DIR/<name>.tar.sha256` (the archive's own checksum, `sha256sum -c` format).
`reidjax.serving.inference.Embedder.from_pretrained(path_or_url)` opens one: it unpacks the
archive (or takes an unpacked folder), checks every file's SHA-256, builds the model from
`config.json` and loads the weights; a URL is downloaded once into
~/.cache/reidjax/releases. The search, tracks and same-person thresholds of a release come
from its `results.json` (the folder works as a workdir for `reidjax.evaluation.thresholds`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request

import jax
import numpy as np
from flax import traverse_util

from reidjax.errors import UserError
from reidjax.runtime import sharding
from reidjax.training.state import abstract_variables

FILES = ("config.json", "weights.safetensors", "results.json")
MANIFEST = "release.json"
CACHE = os.path.join("~", ".cache", "reidjax", "releases")


class ReleaseError(UserError):
    """A release that is missing, damaged or does not match its checksums."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_release(
    variables: dict, config_json: str, results: dict, meta: dict, out: str, name: str
) -> str:
    """Writes `out/name.tar` and its `.sha256`; returns the archive's path."""
    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        flat = traverse_util.flatten_dict(jax.device_get(variables), sep="/")
        save_file({k: np.asarray(v) for k, v in flat.items()}, os.path.join(tmp, FILES[1]))
        with open(os.path.join(tmp, FILES[0]), "w") as f:
            f.write(config_json)
        with open(os.path.join(tmp, FILES[2]), "w") as f:
            json.dump(results, f, indent=1)
        manifest = {**meta, "files": {n: sha256_of(os.path.join(tmp, n)) for n in FILES}}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
        archive = os.path.join(out, f"{name}.tar")
        partial = archive + ".partial"
        with tarfile.open(partial, "w") as tar:
            for n in (MANIFEST, *FILES):
                tar.add(os.path.join(tmp, n), arcname=n)
        os.replace(partial, archive)  # a reader never sees half an archive
    with open(archive + ".sha256", "w") as f:
        f.write(f"{sha256_of(archive)}  {os.path.basename(archive)}\n")
    return archive


def _fetch(url: str) -> str:
    """A local copy of the archive at `url` (cached by URL)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    cache = os.path.expanduser(CACHE)
    os.makedirs(cache, exist_ok=True)
    local = os.path.join(cache, hashlib.sha256(url.encode()).hexdigest()[:16] + ".tar")
    if not os.path.exists(local):
        print(f"downloading {url} ...", flush=True)
        begin = time.perf_counter()
        try:
            with urllib.request.urlopen(url) as response, open(local + ".partial", "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:
            raise ReleaseError(f"cannot download {url}: {e}") from e
        os.replace(local + ".partial", local)
        size = os.path.getsize(local) / 2**20
        print(f"  {size:.1f} MiB in {time.perf_counter() - begin:.1f} s", flush=True)
    return local


def open_release(path_or_url: str, sha256: str | None = None) -> tuple[str, dict]:
    """(unpacked folder, manifest) of a release, every checksum verified.

    Raises:
        ReleaseError: no such release, not a release, or a checksum mismatch (named).
    """
    path = path_or_url
    if urllib.parse.urlparse(path_or_url).scheme in ("http", "https", "file"):
        path = _fetch(path_or_url)
    if os.path.isfile(path):
        if sha256 and sha256_of(path) != sha256.lower():
            raise ReleaseError(f"{path_or_url}: SHA-256 {sha256_of(path)}, expected {sha256}")
        folder = path[: -len(".tar")] if path.endswith(".tar") else path + ".unpacked"
        if not os.path.isdir(folder) or not _verified(folder, quiet=True):
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(folder, filter="data")
            except (tarfile.TarError, OSError) as e:
                raise ReleaseError(f"{path_or_url} is not a reidjax release: {e}") from e
        path = folder
    if not os.path.isdir(path):
        raise ReleaseError(f"no release at {path_or_url}")
    return path, _verified(path)


def _verified(folder: str, quiet: bool = False) -> dict | None:
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
        for name, digest in manifest["files"].items():
            if sha256_of(os.path.join(folder, name)) != digest:
                raise ReleaseError(f"{folder}/{name} does not match its SHA-256 in {MANIFEST}")
    except (OSError, KeyError, ValueError, ReleaseError) as e:
        if quiet:
            return None
        if isinstance(e, ReleaseError):
            raise
        raise ReleaseError(f"{folder} is not a reidjax release ({type(e).__name__}: {e})") from e
    return manifest


def read_weights(folder: str, model, config, mesh) -> dict:
    """The release's variables in the model's structure, replicated on `mesh`.

    Raises:
        ReleaseError: names or shapes that are not the model's.
    """
    from safetensors.numpy import load_file

    flat = load_file(os.path.join(folder, FILES[1]))
    variables = traverse_util.unflatten_dict(flat, sep="/")
    expected = abstract_variables(model, config, mesh)
    want = traverse_util.flatten_dict(jax.tree.map(lambda x: x.shape, expected), sep="/")
    got = {k: tuple(v.shape) for k, v in flat.items()}
    if got != {k: tuple(v) for k, v in want.items()}:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise ReleaseError(
            f"{folder}/{FILES[1]} does not fit the model of its config.json "
            f"(missing {missing}, unexpected {extra}, or other shapes)"
        )
    return jax.device_put(variables, sharding.replicated(mesh))
