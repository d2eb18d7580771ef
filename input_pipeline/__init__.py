"""Input pipeline: dataset parsers, ingest, sampling, transforms and grain pipelines."""
