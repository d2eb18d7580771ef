"""`tfds build` without TensorFlow: runs tensorflow-datasets' own build command.

    PYTHONPATH=. python tools/tfds_build.py input_pipeline/builders/mars \
        --manual_dir=/data/MARS --file_format=array_record

Takes exactly the flags of `tfds build` (--data_dir, --config, --manual_dir, ...). The
`tfds` script of tensorflow-datasets 4.9.10 imports TensorFlow when it starts (for its
`convert_format` command), so it fails where TensorFlow is not installed; its `build`
command itself does not need TensorFlow, and this runs only that. Where TensorFlow is
installed, `tfds build` with the same arguments does the same.
"""

import sys

from tensorflow_datasets.scripts.cli import build, cli_utils

if __name__ == "__main__":
    parse = cli_utils.make_flags_parser(build.Args, description=__doc__.splitlines()[0])
    parse(["tfds build", *sys.argv[1:]]).execute()
