"""Checkpoints as .npz (never pickle), written atomically, checked on load.

Two kinds: a run checkpoint (strategy state, RNG states, history, best genome, config:
everything `--resume` needs) and a genome file (one network's weights plus its shape,
config and provenance: what evaluation, analysis and serving load).

Both are byte-reproducible: the same params and seed give identical files (fixed zip
timestamps, and no wall-clock timings inside; those live in metrics.csv and
summary.json), so a forced `dvc repro` leaves their hashes in dvc.lock unchanged.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genreg.atomic import write_npz_atomic
from genreg.metric_names import SECONDS_PER_GENERATION
from genreg.model import BatchedMLP
from genreg.runner import RunState
from genreg.strategies.base import state_arrays, state_from_arrays

# 2: best_val_accuracy became best_val_score; 3: per-strategy configs (the config
# holds only the chosen strategy's knobs)
FORMAT_VERSION = 3
# history keys that measure the machine, not the run: never written into a checkpoint
TIMING_KEYS = (SECONDS_PER_GENERATION,)


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or does not fit the run.

    The message names the file.
    """


def read_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickle), or CheckpointError naming file and problem."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({exc})"
        ) from exc
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CheckpointError(f"{path}: not a genreg checkpoint, missing {missing}")
    return arrays


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), dtype=np.uint8)


def _untext(array: np.ndarray) -> str:
    return array.tobytes().decode()


def save_run(path: Path, state: RunState, config: Mapping[str, Any]) -> None:
    """Save everything needed to resume `state` exactly."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "config_json": _text(json.dumps(config, sort_keys=True)),
        "generation": np.array(state.generation),
        "best_val_score": np.array(state.best_val_score),
        "best_generation": np.array(state.best_generation),
        "history_json": _text(json.dumps(_without_timings(state.history))),
    }
    if state.best_genome is not None:
        arrays["best_genome"] = state.best_genome.cpu().numpy()
    for name, tensor in state_arrays(state.strategy_state).items():
        arrays[f"state/{name}"] = tensor.cpu().numpy()
    for name, rng in state.rngs.items():
        arrays[f"rng/{name}"] = rng.get_state().numpy()
    write_npz_atomic(path, arrays)


def _without_timings(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def load_run(
    path: Path,
    state_class: type,
    rngs: dict[str, torch.Generator],
    device: torch.device,
) -> tuple[RunState, dict[str, Any]]:
    """A RunState (RNGs restored into `rngs`) and the config it was saved with."""
    arrays = read_npz(
        path, ("format_version", "config_json", "generation", "history_json")
    )
    version = int(arrays["format_version"])
    if version < 3:
        raise CheckpointError(
            f"{path}: format version {version} predates per-strategy configs "
            f"(version 3): its config holds every strategy's knobs, so it cannot be "
            "resumed; train afresh (--overwrite)"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} unsupported")
    try:
        strategy_arrays = {
            key.removeprefix("state/"): torch.from_numpy(value)
            for key, value in arrays.items()
            if key.startswith("state/")
        }
        strategy_state = state_from_arrays(state_class, strategy_arrays, device)
        for name, rng in rngs.items():
            saved_state = arrays[f"rng/{name}"]
            if saved_state.size != rng.get_state().numel():
                raise CheckpointError(
                    f"{path}: its RNG states were saved on another kind of device "
                    f"than {device.type}; resume on the device it was trained on, "
                    "or train afresh (--overwrite)"
                )
            rng.set_state(torch.from_numpy(saved_state.copy()))
        best = arrays.get("best_genome")
        state = RunState(
            strategy_state=strategy_state,
            rngs=rngs,
            generation=int(arrays["generation"]),
            best_genome=None if best is None else torch.from_numpy(best).to(device),
            best_val_score=float(arrays["best_val_score"]),
            best_generation=int(arrays["best_generation"]),
            history=json.loads(_untext(arrays["history_json"])),
        )
        config = json.loads(_untext(arrays["config_json"]))
    except (KeyError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint does not fit this run ({exc})"
        ) from exc
    return state, config


@dataclass(frozen=True)
class Genome:
    """One trained network with its shape and provenance."""

    weights: np.ndarray  # [D] float32
    model: BatchedMLP
    class_names: tuple[str, ...]
    meta: dict[str, Any]


def save_genome(path: Path, genome: Genome) -> None:
    """Write a genome file (weights, shape, class names, metadata) atomically."""
    write_npz_atomic(
        path,
        {
            "format_version": np.array(FORMAT_VERSION),
            "weights": genome.weights.astype(np.float32),
            "shape": np.array(
                [genome.model.num_inputs, genome.model.hidden, genome.model.num_outputs]
            ),
            "class_names_json": _text(json.dumps(list(genome.class_names))),
            "meta_json": _text(json.dumps(genome.meta, sort_keys=True)),
        },
    )


def load_genome(path: Path) -> Genome:
    """Read a genome file; CheckpointError if it is corrupt or inconsistent."""
    arrays = read_npz(path, ("weights", "shape", "class_names_json", "meta_json"))
    weights, shape = arrays["weights"], arrays["shape"]
    if shape.shape != (3,) or weights.ndim != 1 or weights.dtype != np.float32:
        raise CheckpointError(f"{path}: expected weights float32 [D] and shape [3]")
    model = BatchedMLP(*(int(v) for v in shape))
    if len(weights) != model.num_params:
        raise CheckpointError(
            f"{path}: {len(weights)} weights, "
            f"but shape {shape.tolist()} needs {model.num_params}"
        )
    if not np.isfinite(weights).all():
        raise CheckpointError(f"{path}: weights contain NaN or infinity")
    names = tuple(json.loads(_untext(arrays["class_names_json"])))
    return Genome(weights, model, names, json.loads(_untext(arrays["meta_json"])))
