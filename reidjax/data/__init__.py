"""Input pipeline: dataset parsers, tensorflow-datasets builders, sampling and grain pipelines."""
