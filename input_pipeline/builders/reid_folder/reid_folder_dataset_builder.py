"""Your own tracklets as a tensorflow-datasets builder (see `input_pipeline.builders` and
`input_pipeline.datasets.folder` for the layout). The config is `<name>_<H>x<W>`, the name
being yours: `python -m input_pipeline build --dataset folder --name shop --manual_dir DIR`.
"""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import folder


class Builder(TrackletBuilder):
    """Tracklets in `<root>/{train,query,gallery}/<identity>/<camera>_<tracklet>/*.jpg`."""

    TITLE = registry.get("folder").title
    BUILDER_CONFIGS = []
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put your tracklets in the manual dir as {folder.LAYOUT}.
    """

    def splits(self, manual_dir):
        name = self.builder_config.name.rsplit("_", 1)[0]
        return folder.load(manual_dir, name)
