"""Batch active learning with apax.bal: last-layer-gradient features of the ensemble and MaxDist
(the paper's selection, Zaverkin et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ilcampaign.engine.models.apax import model_config

if TYPE_CHECKING:
    from ase import Atoms


@dataclass
class BALResult:
    """Indices into the pool picked by MaxDist, and the last-layer-gradient features it used."""

    indices: list[int]
    features_train: np.ndarray
    features_pool: np.ndarray



def bal_select(model_dir: Path, train_frames: list[Atoms], pool_frames: list[Atoms], n: int, *,
               batch_size: int = 32) -> BALResult:
    """Pick ``n`` pool frames with apax.bal: last-layer-gradient features of the ensemble (the
    output layer, ``dense_2`` for two hidden layers as in the paper) and MaxDist.

    apax 0.14's MaxDist starts from the feature norms and excludes the training frames from the
    pick, but does not measure distances to them: the pick is spread within the pool only.
    """
    from apax.bal.api import kernel_selection

    if not 1 <= n <= len(pool_frames):
        raise ValueError(f"cannot pick {n} of {len(pool_frames)} pool frames")
    layer = f"dense_{len(model_config(model_dir).model.nn)}"
    indices, _, features_train, features_pool = kernel_selection(
        Path(model_dir).resolve(), list(train_frames), list(pool_frames),
        base_fm_options={"name": "ll_grad", "layer_name": layer}, selection_method="max_dist",
        selection_batch_size=n, processing_batch_size=batch_size,
    )
    return BALResult([int(i) for i in indices], np.asarray(features_train), np.asarray(features_pool))
