"""Hidden-layer analysis: tanh activations, a 2-D UMAP embedding, class separation.

Pure numpy / scikit-learn / umap-learn; no MLOps tools. umap-learn JIT-compiles with
numba on its first fit in a process (tens of seconds); `ensure_numba_cache` points
NUMBA_CACHE_DIR at a persistent folder so later processes reuse what numba can cache
(pynndescent).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from genreg.config import ConfigError
from genreg.evaluation import hidden_numpy, images_to_inputs
from genreg.model import BatchedMLP

NUMBA_CACHE = Path(".cache") / "numba"


def ensure_numba_cache(root: Path | None = None) -> Path:
    """Point numba's cache at <root>/.cache/numba unless NUMBA_CACHE_DIR is set."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        folder = (root or Path.cwd()) / NUMBA_CACHE
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(folder.resolve())
    return Path(os.environ["NUMBA_CACHE_DIR"])


# sklearn's trustworthiness holds two dense N x N arrays (distances and ranks):
# 10k points would need ~1.6 GB, so it is estimated on a seeded subset of this size.
TRUSTWORTHINESS_MAX_POINTS = 2000
KNN_K = 5
KNN_FOLDS = 5


def sample_indices(num_items: int, num_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of `num_samples` items (all items if fewer)."""
    if num_samples >= num_items:
        return np.arange(num_items)
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.sort(rng.choice(num_items, size=num_samples, replace=False))


def hidden_activations(
    model: BatchedMLP, weights: np.ndarray, images: np.ndarray
) -> np.ndarray:
    """tanh hidden activations [N, H] (float32) of uint8 images [N, H, W]."""
    return hidden_numpy(model, weights, images_to_inputs(images)).astype(np.float32)


def umap_embedding(
    hidden: np.ndarray, n_neighbors: int, min_dist: float, seed: int
) -> np.ndarray:
    """2-D UMAP embedding [N, 2] of `hidden` [N, H]; deterministic for a given seed."""
    if len(hidden) <= n_neighbors:
        raise ConfigError(
            f"analyze.n_neighbors: {n_neighbors} needs more than {n_neighbors} points, "
            f"got {len(hidden)} (raise analyze.num_samples)"
        )
    import umap  # heavy import (numba); only when an embedding is asked for

    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_components=2,
        random_state=seed,
        n_jobs=1,  # a seed forces one thread anyway; saying so silences the warning
    )
    return np.asarray(reducer.fit_transform(hidden), dtype=np.float32)


def knn_accuracy(
    points: np.ndarray, labels: np.ndarray, seed: int, k: int = KNN_K
) -> float:
    """Cross-validated (stratified k-fold) accuracy of a k-NN classifier on `points`."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = min(KNN_FOLDS, int(np.bincount(labels).max()))
    if folds < 2:
        raise ValueError("k-NN accuracy needs at least two points of some class")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), points, labels, cv=cv)
    return float(np.mean(scores))


def separation_scores(
    hidden: np.ndarray,
    embedding: np.ndarray,
    labels: np.ndarray,
    n_neighbors: int,
    seed: int,
) -> dict[str, Any]:
    """Class separation: trustworthiness, k-NN accuracy (2-D and raw), silhouette."""
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    subset = sample_indices(len(hidden), TRUSTWORTHINESS_MAX_POINTS, seed)
    trust = trustworthiness(hidden[subset], embedding[subset], n_neighbors=n_neighbors)
    return {
        "num_points": int(len(labels)),
        "trustworthiness": round(float(trust), 5),
        "trustworthiness_k": n_neighbors,
        "trustworthiness_points": int(len(subset)),
        "knn_accuracy_2d": round(knn_accuracy(embedding, labels, seed), 5),
        "knn_accuracy_hidden": round(knn_accuracy(hidden, labels, seed), 5),
        "knn_k": KNN_K,
        "knn_folds": KNN_FOLDS,
        "silhouette_2d": round(float(silhouette_score(embedding, labels)), 5),
    }


def per_class_accuracy(
    predictions: np.ndarray, labels: np.ndarray, num_classes: int
) -> list[float]:
    """Accuracy of `predictions` within each true class (0.0 for an absent class)."""
    correct = np.bincount(labels[predictions == labels], minlength=num_classes)
    totals = np.bincount(labels, minlength=num_classes)
    return np.divide(
        correct, totals, out=np.zeros(num_classes), where=totals > 0
    ).tolist()
