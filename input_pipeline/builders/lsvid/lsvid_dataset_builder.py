"""LS-VID as a tensorflow-datasets builder (see `input_pipeline.builders`)."""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import lsvid


class Builder(TrackletBuilder):
    """LS-VID: 842 training ids; the gallery is every test tracklet, queries included."""

    TITLE = registry.get("lsvid").title
    HOMEPAGE = registry.get("lsvid").homepage
    CITATION = (
        "Li et al., Global-Local Temporal Representations for Video Person Re-Identification, "
        "ICCV 2019"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Request LS-VID from its authors (see the homepage) and extract it so that the manual
    dir holds: list_sequence/list_seq_{train,test}.txt, test/data/info_test.mat and the
    tracklet folders the lists name (tracklet_train/, tracklet_val/, tracklet_test/).
    """

    def camera_name(self, camid):
        return str(camid + 1)

    def splits(self, manual_dir):
        return lsvid.load(manual_dir)
