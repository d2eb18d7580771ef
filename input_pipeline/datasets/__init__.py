"""Parsers of the datasets' distributed layouts: each module's `load(root, **options)`
returns the train/query/gallery `Splits` (`input_pipeline.registry` names them)."""
