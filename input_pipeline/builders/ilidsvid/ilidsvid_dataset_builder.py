"""iLIDS-VID as a tensorflow-datasets builder, the ten train/test splits in one config (see
`input_pipeline.builders`)."""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import ilidsvid
from input_pipeline.registry import NUM_SPLITS


class Builder(TrackletBuilder):
    """iLIDS-VID: 300 people, 2 cameras; each frame is stored once and split K
    (`ReIDDataset(..., fold=K)`, `config.dataset.split`, K = 0..9) trains on
    150 people and tests on the other 150 (queries cam1, gallery cam2)."""

    TITLE = registry.get("ilidsvid").title
    HOMEPAGE = registry.get("ilidsvid").homepage
    CITATION = "Wang et al., Person Re-Identification by Video Ranking, ECCV 2014"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download iLIDS-VID.tar from the homepage and extract it so that the manual dir holds
    i-LIDS-VID/sequences/cam{1,2}/<person>/*.png and
    train-test people splits/train_test_splits_ilidsvid.mat.
    """

    def camera_name(self, camid):
        return f"cam{camid + 1}"

    def splits(self, manual_dir):
        return ilidsvid.load(manual_dir, split_id=0)

    def folds(self, manual_dir):
        return [ilidsvid.load(manual_dir, split_id=k) for k in range(NUM_SPLITS)]
