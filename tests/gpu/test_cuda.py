"""The CUDA path of the train stage: generators on the device, exact resume, and a
CUDA-trained genome scored by the numpy evaluation path.

Every test needs a CUDA device and is skipped without one; benchmarks/gpu_check.sh
runs them (`pytest -m gpu tests/gpu`). The CPU side of the same logic (resume after an
interrupt, numpy == torch) is in tests/stages/test_train.py.

Exact resume on CUDA needs no torch.use_deterministic_algorithms: a run uses only the
default stream, cuBLAS matmuls (bit-identical for the same shapes, GPU and toolkit),
fixed-order reductions, sorts, index_add_ at unique positions and Philox draws, so a
resumed run, which restores the state tensors and the generators' seed and offset bit
for bit, must write the same checkpoint bytes as the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genreg.checkpoint import CheckpointError, Genome, load_genome, read_npz
from genreg.config import Config, build_config, with_overrides
from genreg.datasets import load_prepared
from genreg.evaluation import evaluate_numpy, logits_numpy
from genreg.rundir import RunDir
from genreg.runner import RNG_STREAMS, make_rngs
from genreg.stages.evaluate import evaluate
from genreg.stages.train import train
from genreg.task import to_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA device (torch.cuda.is_available() is False)",
    ),
]

TINY = {
    "strategy.population_size": 20,
    "model.hidden": 16,
    "train.images_per_class": 4,
    "train.eval_every": 2,
    "train.checkpoint_every": 3,
    "train.val_images": 100,
    "train.device": "cuda",
}
# the presets gpu_check.sh times, and every other strategy, at a tiny size
CONFIGS = {
    "genreg-paper": {"preset": "genreg-paper"},
    "genreg-plus": {"preset": "genreg-plus", "strategy": {"elitism": 2}},
    "fast": {"preset": "fast"},
    "open_es": {"strategy": {"name": "open_es"}},
    "open_es-table": {"strategy": {"name": "open_es", "noise_table_size": 100000}},
    "pgpe": {"strategy": {"name": "pgpe"}},
    "simple_ga": {"strategy": {"name": "simple_ga"}},
}


def tiny(name: str, **overrides: object) -> Config:
    return with_overrides(build_config(CONFIGS[name]), {**TINY, **overrides})


def test_generators_live_on_the_device(small_mnist: Path, tmp_path: Path) -> None:
    rngs = make_rngs(0, "cuda")
    assert {name: g.device.type for name, g in rngs.items()} == dict.fromkeys(
        RNG_STREAMS, "cuda"
    )
    summary = train(
        tiny("genreg-paper", **{"train.num_generations": 2}), small_mnist, tmp_path
    )
    assert summary.device == "cuda"
    # the run checkpoint holds each stream's state: a CUDA (Philox) generator's is
    # its seed and offset, 16 bytes; a CPU generator's would be 5,056
    philox = torch.Generator(device="cuda").get_state().numel()
    last = read_npz(RunDir(tmp_path).last)
    sizes = {name: last[f"rng/{name}"].size for name in RNG_STREAMS}
    assert sizes == dict.fromkeys(RNG_STREAMS, philox)


def _differences(a: Path, b: Path) -> str:
    """Which arrays of two checkpoints differ, and by how much (for the message)."""
    left, right = read_npz(a), read_npz(b)
    lines = []
    for key in sorted(left.keys() | right.keys()):
        x, y = left.get(key), right.get(key)
        if x is None or y is None or x.shape != y.shape:
            lines.append(f"{key}: only in one, or shapes differ")
        elif not np.array_equal(x, y):
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
            lines.append(f"{key}: max |difference| {diff:.3g}")
    return "; ".join(lines) or "same arrays, different bytes"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_on_cuda_equals_uninterrupted(
    name: str, small_mnist: Path, tmp_path: Path
) -> None:
    full = train(
        tiny(name, **{"train.num_generations": 8}), small_mnist, tmp_path / "full"
    )
    train(tiny(name, **{"train.num_generations": 4}), small_mnist, tmp_path / "split")
    resumed = train(
        tiny(name, **{"train.num_generations": 8}),
        small_mnist,
        tmp_path / "split",
        resume=True,
    )
    assert resumed.num_generations == full.num_generations == 8
    assert resumed.best_val_accuracy == full.best_val_accuracy
    for kind in ("last", "best"):
        a = getattr(RunDir(tmp_path / "full"), kind)
        b = getattr(RunDir(tmp_path / "split"), kind)
        assert a.read_bytes() == b.read_bytes(), f"{kind}.npz: {_differences(a, b)}"


def _logits(genome: Genome, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] of `genome` on `images`: CUDA forward pass, numpy path."""
    x = to_inputs(images, "cuda")
    weights = torch.from_numpy(genome.weights).cuda()
    on_cuda = genome.model.forward(weights, x)[0].cpu().numpy()
    return on_cuda, logits_numpy(genome.model, genome.weights, x.cpu().numpy())


def _near_ties(logits: np.ndarray) -> float:
    """The share of images whose top two logits are within rounding of each other:
    their class may flip between the CUDA and the numpy path."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return float((top2[:, 1] - top2[:, 0] < 1e-4).mean())


def test_cuda_trained_genome_scores_the_same_in_numpy(
    small_mnist: Path, tmp_path: Path
) -> None:
    cfg = tiny("genreg-paper", **{"train.num_generations": 6})
    train(cfg, small_mnist, tmp_path / "run")
    best = RunDir(tmp_path / "run").best
    genome = load_genome(best)
    splits = load_prepared(small_mnist)

    # validation: the accuracy the CUDA run recorded for its best genome
    val = splits["val"]
    images, labels = (
        val.images[: cfg.train.val_images],
        val.labels[: cfg.train.val_images],
    )
    cuda_logits, numpy_logits = _logits(genome, images)
    np.testing.assert_allclose(numpy_logits, cuda_logits, rtol=1e-4, atol=1e-4)
    on_numpy = evaluate_numpy(genome.model, genome.weights, images, labels)
    assert on_numpy.accuracy == pytest.approx(
        genome.meta["val_accuracy"], abs=_near_ties(cuda_logits) + 1e-6
    )

    # test: the CUDA forward pass against the evaluate stage (numpy on the CPU)
    test = splits["test"]
    cuda_logits, numpy_logits = _logits(genome, test.images)
    np.testing.assert_allclose(numpy_logits, cuda_logits, rtol=1e-4, atol=1e-4)
    cuda_accuracy = float((cuda_logits.argmax(1) == test.labels).mean())
    metrics = evaluate(cfg, small_mnist, best, tmp_path / "eval")
    assert metrics["test_accuracy"] == pytest.approx(
        cuda_accuracy, abs=_near_ties(cuda_logits) + 1e-9
    )


def test_a_cpu_checkpoint_is_refused_on_cuda(small_mnist: Path, tmp_path: Path) -> None:
    """Generator states are device-specific (mt19937 on the CPU, Philox on CUDA)."""
    cpu = tiny("genreg-paper", **{"train.num_generations": 2, "train.device": "cpu"})
    train(cpu, small_mnist, tmp_path)
    with pytest.raises(CheckpointError, match="saved on another kind of device") as exc:
        train(
            tiny("genreg-paper", **{"train.num_generations": 4}),
            small_mnist,
            tmp_path,
            resume=True,
        )
    assert str(RunDir(tmp_path).last) in str(exc.value)
