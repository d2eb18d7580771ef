"""Every supported dataset, declared once: its facts, its parser, its builder, its splits.

A `DatasetSpec` is all the code knows about a dataset: the name a config uses, the
published training identities and cameras (which size the classifiers before any data is
read), the parser of its distributed layout and the options that parser takes, the
tensorflow-datasets builder that stores it, whether it has ten train/test splits, and where
to get it. Adding a dataset is one parser module, one builder folder and one entry here.
Nothing here imports tensorflow-datasets: parsers and builders are imported when used.
"""

from __future__ import annotations

import dataclasses
import importlib

from input_pipeline.datasets.tracklets import Splits
from input_pipeline.dense import DenseRule
from input_pipeline.errors import DatasetError

# iLIDS-VID and PRID2011 are evaluated as the mean over ten random train/test splits.
NUM_SPLITS = 10


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the code knows about one dataset.

    Attributes:
        name: `config.dataset.name`.
        title: the dataset's usual name.
        num_train_ids: identities of the published training split (classifier width).
        num_cameras: cameras (DSANet's camera classifier width).
        builder: the tensorflow-datasets builder (`input_pipeline/builders/<builder>/`).
        parser: the module of `input_pipeline.datasets` that reads the distributed layout
            (`load(root, **options)`); empty for a generated dataset.
        options: the parser's options besides `root`.
        splits: 1, or `NUM_SPLITS` for datasets whose protocol averages over ten
            train/test splits (all in one builder config, each frame stored once;
            `config.dataset.split` picks one).
        homepage: where to download it.
        train_tracklets: tracklets of the published training split (whole tracklets, per
            split where there are ten); 0 where not published. Estimates the steps per
            epoch before the data is prepared (`reidjax.accelerators.aot`).
        dense_rule: how `config.dataset.dense_train` cuts training tracklets
            (`input_pipeline.dense`); None where the lineage trains on whole tracklets.
        dense_source: where that rule comes from.
    """

    name: str
    title: str
    num_train_ids: int
    num_cameras: int
    builder: str
    parser: str = ""
    options: tuple[str, ...] = ()
    splits: int = 1
    homepage: str = ""
    train_tracklets: int = 0
    dense_rule: DenseRule | None = None
    dense_source: str = ""

    def load(self, root: str, **options) -> Splits:
        """Parses the dataset at `root` (its distributed layout) into train/query/gallery.

        Raises:
            DatasetError: a dataset with no parser, an option it does not take, or a
                missing or malformed file (named).
        """
        if not self.parser:
            raise DatasetError(f"{self.name} is generated, not parsed from a folder")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise DatasetError(f"the {self.name} parser takes no option {', '.join(unknown)}")
        module = importlib.import_module(f"input_pipeline.datasets.{self.parser}")
        return module.load(root, **options)

    def builder_class(self):
        """The tensorflow-datasets builder class (imports tensorflow-datasets)."""
        module = f"input_pipeline.builders.{self.builder}.{self.builder}_dataset_builder"
        return importlib.import_module(module).Builder


# The lineage's dense cut of DukeMTMC-VideoReID, also LS-VID's and the default for your own.
_PIECES_64 = DenseRule(64)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "mars", "MARS", 625, 6, "mars", "mars", ("query_in_gallery",),
            homepage="http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html",
            train_tracklets=8298,
        ),
        DatasetSpec(
            "dukev", "DukeMTMC-VideoReID", 702, 8, "dukev", "dukev",
            homepage="https://github.com/Yu-Wu/DukeMTMC-VideoReID", train_tracklets=2196,
            dense_rule=_PIECES_64, dense_source="AP3D tools/data_manager.py, sampling_step=64",
        ),
        DatasetSpec(
            "lsvid", "LS-VID", 842, 15, "lsvid", "lsvid",
            homepage="https://github.com/jinxu-iie/LS-VID", dense_rule=_PIECES_64,
            dense_source="BiCnet-TKS data_manager/lsvid.py, sampling_step=64",
        ),
        # 150 of the 300 people train in each of the ten splits.
        DatasetSpec(
            "ilidsvid", "iLIDS-VID", 150, 2, "ilidsvid", "ilidsvid",
            ("split_id",), NUM_SPLITS,
            "https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html", 300,
            DenseRule(32, span=2), "AP3D tools/data_manager.py, sampling_step=32",
        ),
        # 100 of the 200 people seen by both cameras train in each of the ten splits.
        DatasetSpec(
            "prid2011", "PRID2011", 100, 2, "prid2011", "prid2011", ("split_id",),
            NUM_SPLITS, "https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/prid11",
            200,
        ),
        # The built-in procedural dataset at its defaults (200 ids, half of them training).
        DatasetSpec(
            "synthetic", "reidjax synthetic", 100, 4, "reid_synthetic", dense_rule=_PIECES_64,
            dense_source="the DukeMTMC-VideoReID rule",
        ),
        # Your own tracklets in the folder layout (docs/data.md); sizes come from the data.
        DatasetSpec(
            "folder", "reidjax folder dataset", 0, 0, "reid_folder", "folder", ("name",),
            dense_rule=_PIECES_64, dense_source="the DukeMTMC-VideoReID rule",
        ),
    )
}  # fmt: skip


def get(name: str) -> DatasetSpec:
    """The spec of dataset `name`.

    Raises:
        DatasetError: an unknown name, listing the valid ones.
    """
    if name not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, root: str, **options) -> Splits:
    """Parses dataset `name` at `root` (`DatasetSpec.load`).

    Raises:
        DatasetError: an unknown name (listing the valid ones), or as `DatasetSpec.load`.
    """
    return get(name).load(root, **options)
