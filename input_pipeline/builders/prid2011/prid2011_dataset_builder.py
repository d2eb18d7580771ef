"""PRID2011 (multi-shot) as a tensorflow-datasets builder, the ten train/test splits in one
config (see `input_pipeline.builders`)."""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import prid2011
from input_pipeline.registry import NUM_SPLITS


class Builder(TrackletBuilder):
    """PRID2011: the 200 persons seen by both cameras; each frame is stored once and split K
    (`ReIDDataset(..., fold=K)`, `config.dataset.split`) trains on 100 and tests on the
    other 100 (queries cam_a, gallery cam_b)."""

    TITLE = registry.get("prid2011").title
    HOMEPAGE = registry.get("prid2011").homepage
    CITATION = (
        "Hirzer et al., Person Re-Identification by Descriptive and Discriminative Classification, "
        "SCIA 2011"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download prid_2011.zip from the homepage and extract it so that the manual dir holds
    prid_2011/multi_shot/cam_a/person_NNNN/*.png and cam_b. To evaluate on the splits
    published results use, also put torchreid's splits_prid2011.json in the manual dir;
    without it ten splits are drawn from a fixed seed.
    """

    def camera_name(self, camid):
        return ("cam_a", "cam_b")[camid]

    def splits(self, manual_dir):
        return prid2011.load(manual_dir, split_id=0)

    def folds(self, manual_dir):
        return [prid2011.load(manual_dir, split_id=k) for k in range(NUM_SPLITS)]
