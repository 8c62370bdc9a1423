"""Facts about the datasets, in one table: their names as rows spell them, the aliases, frame rates, the leaderboard
split each is reported under, and the long-video (ME-STR) sets.

Every other module reads these (the builders, ``answer``/``predict`` for raw test clips, the scorer's splits, the
spotting path), so a rate or a name is written once. Frame rates are the datasets' own (docs/datasets.md): SAMM and
CASME II 200 fps, SMIC 100 fps (its HS camera; VIS and NIR 25 fps), CAS(ME)^3 30 fps, 4DME 60 fps (from its paper,
unverified).
"""

from __future__ import annotations

# QA datasets by the name rows carry (the ``dataset`` field or the id prefix), with the frame rate of their clips.
FPS = {"samm": 200.0, "casme2": 200.0, "smic": 100.0, "casme3": 30.0, "4dme": 60.0}
DATASETS = tuple(FPS)
# Other spellings of the same datasets: the leaderboard calls CAS(ME)^3 "cas"; Python names cannot start with 4.
ALIASES = {"cas": "casme3", "fourdme": "4dme"}
# The split a dataset is reported under when it differs from its name (the leaderboard's "CAS" for CAS(ME)^3).
LEADERBOARD_SPLIT = {"casme3": "cas"}
# SMIC's three cameras (a folder name in the clip's path says which).
SMIC_MODALITY_FPS = {"hs": 100.0, "vis": 25.0, "nir": 25.0}
# The official test clips (MEGC2025 ME-VQA test files): their rows name a clip, whose rate follows from the dataset.
OFFICIAL_TEST_DATASETS = ("samm", "casme3")

# Long-video sets for ME-STR (``mevqa build-spot``) -> the QA dataset their windows and rows are reported as.
LONG_VIDEO_DATASETS = {"samm-lv": "samm", "casme3": "casme3", "smic-e": "smic"}
LONG_VIDEO_FPS = {name: FPS[qa_name] for name, qa_name in LONG_VIDEO_DATASETS.items()}


def dataset_name(name) -> str | None:
    """The dataset ``name`` spells (``"CAS"`` -> ``"casme3"``, ``"fourdme"`` -> ``"4dme"``), None for another name."""
    if not isinstance(name, str) or not name.strip():
        return None
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    return name if name in FPS else None


def row_dataset(row: dict) -> str | None:
    """The dataset a row belongs to: its ``dataset`` field, else its id prefix (``samm_test_SAMM-1_1`` -> ``samm``,
    ``casme3_test_CAS-1_1`` -> ``casme3``); None when neither names a dataset of :data:`DATASETS`."""
    name = row.get("dataset")
    if not isinstance(name, str) or not name.strip():
        row_id = row.get("id", row.get("video_id"))
        name = row_id.split("_", 1)[0] if isinstance(row_id, str) and "_" in row_id else None
    return dataset_name(name)


def split_name(name: str) -> str:
    """The leaderboard split a dataset name is reported under (``casme3`` and ``cas`` -> ``cas``); a name that is no
    dataset of :data:`DATASETS` is its own split (lower-cased)."""
    dataset = dataset_name(name)
    return name.strip().lower() if dataset is None else LEADERBOARD_SPLIT.get(dataset, dataset)


def official_test_fps(row: dict) -> float | None:
    """The frame rate of an official test clip (SAMM or CAS(ME)^3 rows), else None (the user must give it)."""
    dataset = row_dataset(row)
    return FPS[dataset] if dataset in OFFICIAL_TEST_DATASETS else None
