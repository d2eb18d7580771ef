"""The input pipeline: dataset parsers, tensorflow-datasets builders, sampling and grain
pipelines. The bottom layer: it imports nothing of `reidjax` and takes explicit arguments,
not the experiment config (`reidjax.data_setup` turns a config into them)."""
