"""MARS as a tensorflow-datasets builder (see `input_pipeline.builders`)."""

from input_pipeline import registry
from input_pipeline.builders import TrackletBuilder
from input_pipeline.datasets import mars


class Builder(TrackletBuilder):
    """MARS: 625 training ids / 8,298 tracklets; 1,980 queries; 11,310 gallery tracklets
    (queries included, the lineage protocol; pid 0 distractors kept, junk dropped)."""

    TITLE = registry.get("mars").title
    HOMEPAGE = registry.get("mars").homepage
    CITATION = (
        "Zheng et al., MARS: A Video Benchmark for Large-Scale Person Re-identification, ECCV 2016"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download MARS (bbox_train.zip, bbox_test.zip) from the dataset page and the `info`
    folder of the MARS evaluation code (github.com/liangzheng06/MARS-evaluation), and
    place them so that the manual dir holds:
      bbox_train/  bbox_test/  info/{train_name.txt, test_name.txt,
      tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat}
    """

    def splits(self, manual_dir):
        return mars.load(manual_dir)
