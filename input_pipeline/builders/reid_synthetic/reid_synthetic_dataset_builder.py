"""The built-in synthetic dataset as a tensorflow-datasets builder (see
`input_pipeline.synthetic`). Configs are `ids<N>_cams<C>_seed<S>_<H>x<W>` (`synthetic_config`);
nothing to download: every frame is rendered from the seed."""

from __future__ import annotations

import re

from input_pipeline import registry
from input_pipeline.builders import (
    ReIDConfig,
    TrackletBuilder,
    config_name,
    encode_array,
    worker_pool,
)
from input_pipeline.synthetic import render_tracklet, splits

_PREFIX = re.compile(r"^ids(\d+)_cams(\d+)_seed(\d+)$")


def synthetic_config(num_ids: int, num_cameras: int, seed: int, size: tuple[int, int]) -> str:
    """The config name of a synthetic dataset."""
    return config_name(size, prefix=f"ids{num_ids}_cams{num_cameras}_seed{seed}")


def _render(job) -> list[tuple[bytes, str]]:
    seed, pid, cam, index, length, size = job
    return [
        (encode_array(f, size), "") for f in render_tracklet(seed, pid, cam, index, length, size)
    ]


class Builder(TrackletBuilder):
    """Procedural people walking past cameras (`input_pipeline.synthetic`)."""

    TITLE = registry.get("synthetic").title
    BUILDER_CONFIGS = [
        ReIDConfig(name=synthetic_config(200, 4, 0, (128, 64)), size=(128, 64)),
    ]

    def _options(self) -> tuple[int, int, int]:
        prefix = self.builder_config.name.rsplit("_", 1)[0]
        match = _PREFIX.match(prefix)
        if match is None:
            raise ValueError(
                f"synthetic config {self.builder_config.name!r}: expected "
                "ids<N>_cams<C>_seed<S>_<H>x<W>"
            )
        return tuple(int(v) for v in match.groups())

    def camera_name(self, camid):
        return f"c{camid}"

    def splits(self, manual_dir):
        return splits(*self._options())

    def encoded_frames(self, layout):
        _, _, seed = self._options()
        size = self.builder_config.size
        jobs, stored = [], set()
        for row in layout.table:  # one render per stored tracklet, in stored order
            if row["first"] not in stored:
                stored.add(row["first"])
                pid, cam, index = _parse(row["source"])
                jobs.append((seed, pid, cam, index, row["count"], size))
        pool = worker_pool(self.workers)
        try:
            rendered = pool.imap(_render, jobs) if pool else map(_render, jobs)
            for frames in rendered:
                yield from frames
        finally:
            if pool is not None:
                pool.terminate()


def _parse(name: str) -> tuple[int, int, int]:
    """(pid, camera, tracklet index) of a `frame_name`."""
    pid, cam, index, _ = name.split("_")
    return int(pid), int(cam[1:]), int(index[1:])
