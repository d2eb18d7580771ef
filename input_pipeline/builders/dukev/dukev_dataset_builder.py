"""DukeMTMC-VideoReID as a tensorflow-datasets builder (see `input_pipeline.builders`)."""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import dukev


class Builder(TrackletBuilder):
    """DukeMTMC-VideoReID: 702 training ids / 2,196 tracklets; 702 queries; 2,636 gallery."""

    TITLE = registry.get("dukev").title
    HOMEPAGE = registry.get("dukev").homepage
    CITATION = (
        "Wu et al., Exploit the Unknown Gradually: One-Shot Video-Based Person Re-Identification, "
        "CVPR 2018"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain DukeMTMC-VideoReID.zip (see the homepage) and extract it so that the manual
    dir holds train/, query/ and gallery/, each <pid4>/<tracklet4>/*.jpg.
    """

    def splits(self, manual_dir):
        return dukev.load(manual_dir)
