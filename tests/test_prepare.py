"""Data layer, fetch and prepare stages: real MNIST, checksums, atomic outputs,
downloads from a local HTTP mirror, the alphabet."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from genreg import alphabet, datasets
from genreg.alphabet import (
    default_font_split,
    has_letters,
    list_fonts,
    render_font,
    render_fonts,
    resolve_fonts,
)
from genreg.config import (
    AlphabetConfig,
    AugmentConfig,
    ConfigError,
    DataConfig,
    build_config,
)
from genreg.datasets import (
    DataError,
    carve_validation,
    load_meta,
    load_prepared,
    load_raw,
    load_split,
    read_idx,
    save_split,
)
from genreg.fetch import fetch, is_complete, resolve_source_dir
from genreg.stages.prepare import prepare

# published sanity figures of the official MNIST training set
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
FASHION_DIR = Path(
    "/usr/share/datasets/fashion-mnist"
)  # Debian's dataset-fashion-mnist


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that pass data.source_dir must not be overridden by GENREG_DATA_DIR."""
    monkeypatch.delenv("GENREG_DATA_DIR", raising=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _gzipped_copy(mnist_dir: Path, dest: Path) -> Path:
    """The four files gzipped, as the mirrors serve them."""
    dest.mkdir()
    for name in datasets.IDX_NAMES.values():
        (dest / f"{name}.gz").write_bytes(
            gzip.compress((mnist_dir / name).read_bytes(), compresslevel=1, mtime=0)
        )
    return dest


def _tampered_copy(mnist_dir: Path, dest: Path) -> Path:
    """The four files gzipped, with one label of train-labels changed (still 0..9)."""
    _gzipped_copy(mnist_dir, dest)
    target = dest / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(target.read_bytes()))
    data[8 + 100] = (data[8 + 100] + 1) % 10
    target.write_bytes(gzip.compress(bytes(data)))
    return dest


# --- MNIST ---------------------------------------------------------------------------


def test_prepared_mnist_shapes_counts_and_meta(prepared_mnist: Path) -> None:
    splits = load_prepared(prepared_mnist)
    meta = load_meta(prepared_mnist)
    assert {k: v.images.shape for k, v in splits.items()} == {
        "train": (55000, 28, 28),
        "val": (5000, 28, 28),
        "test": (10000, 28, 28),
    }
    for split in splits.values():
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
    train_val = np.bincount(splits["train"].labels, minlength=10) + np.bincount(
        splits["val"].labels, minlength=10
    )
    assert train_val.tolist() == MNIST_TRAIN_COUNTS
    pixels = np.concatenate([splits["train"].images, splits["val"].images])
    assert pixels.mean() == pytest.approx(33.318, abs=1e-3)
    assert meta["dataset"] == "mnist" and meta["num_classes"] == 10
    assert meta["counts"] == {"train": 55000, "val": 5000, "test": 10000}
    assert meta["image_shape"] == [28, 28] and meta["val_size"] == 5000
    assert meta["sources"] == datasets.KNOWN_MD5["mnist"]
    assert set(meta["sha256"]) == {"train.npz", "val.npz", "test.npz"}


def test_split_is_seeded_and_disjoint(mnist_dir: Path) -> None:
    labels = read_idx(mnist_dir / "train-labels-idx1-ubyte").astype(np.int64)
    index = np.arange(len(labels))  # carve indices so membership is visible
    train, val = carve_validation(index, labels, 5000, seed=3)
    again_train, again_val = carve_validation(index, labels, 5000, seed=3)
    _, other_val = carve_validation(index, labels, 5000, seed=4)
    assert np.array_equal(val.images, again_val.images)
    assert np.array_equal(train.images, again_train.images)
    assert not np.array_equal(val.images, other_val.images)
    assert (
        len(val.images) == 5000 and np.intersect1d(train.images, val.images).size == 0
    )
    assert np.array_equal(np.sort(np.concatenate([train.images, val.images])), index)
    assert np.array_equal(labels[val.images], val.labels)
    _, strat = carve_validation(index, labels, 5000, seed=3, stratify=True)
    expected = np.array(MNIST_TRAIN_COUNTS) * 5000 / 60000
    assert len(strat.labels) == 5000
    assert np.all(np.abs(np.bincount(strat.labels) - expected) < 1)


def test_prepare_is_deterministic(
    prepared_mnist: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    meta = prepare(DataConfig(), tmp_path / "again", raw_dir=mnist_dir.parent)
    assert meta["sha256"] == load_meta(prepared_mnist)["sha256"]


def test_md5_rejects_tampered_copy(
    no_env: None, mnist_dir: Path, tmp_path: Path
) -> None:
    folder = _tampered_copy(mnist_dir, tmp_path / "tampered")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*md5") as info:
        load_raw("mnist", folder)
    assert "a25bea736e30d166cdddb491f175f624" in str(info.value)  # the expected md5
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*md5"):
        fetch(DataConfig(source_dir=str(folder)), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_truncated_and_malformed_idx_rejected(mnist_dir: Path, tmp_path: Path) -> None:
    data = (mnist_dir / "t10k-labels-idx1-ubyte").read_bytes()
    assert read_idx(mnist_dir / "t10k-labels-idx1-ubyte").shape == (10000,)
    cut = tmp_path / "t10k-labels-idx1-ubyte"
    cut.write_bytes(data[:5000])
    with pytest.raises(DataError, match=f"{cut}.*truncated"):
        read_idx(cut)
    cut_gz = tmp_path / "cut.gz"
    cut_gz.write_bytes(gzip.compress(data)[:2000])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(cut_gz)
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DataError, match="bad-magic.*magic"):
        read_idx(bad)


@pytest.fixture
def mirror(mnist_dir: Path, tmp_path: Path) -> Iterator[str]:
    """A local HTTP server serving the gzipped MNIST files, as the mirrors do."""
    folder = _gzipped_copy(mnist_dir, tmp_path / "mirror")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder)
    )
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    server = http.server.HTTPServer(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
    )
    port = server.server_port
    server.server_close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/"


def test_fetch_downloads_checks_and_keeps(
    no_env: None, mirror: str, mnist_dir: Path, tmp_path: Path
) -> None:
    folder = fetch(DataConfig(), tmp_path / "raw", mirrors=[_closed_port_url(), mirror])
    assert folder == tmp_path / "raw" / "mnist" and is_complete(folder, "mnist")
    assert _files(folder) == _files(mnist_dir)  # stored uncompressed, as published
    # a complete folder is kept as it is: no mirror needed the second time
    assert fetch(DataConfig(), tmp_path / "raw", mirrors=[_closed_port_url()]) == folder
    _, (test_x, _) = load_raw("mnist", folder)
    assert test_x.shape == (10000, 28, 28)


def test_fetch_copies_from_the_env_folder(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gz = _gzipped_copy(mnist_dir, tmp_path / "gz")
    monkeypatch.setenv("GENREG_DATA_DIR", str(gz))
    assert resolve_source_dir(DataConfig(source_dir="elsewhere")) == gz
    folder = fetch(DataConfig(source_dir="elsewhere"), tmp_path / "raw", mirrors=[])
    assert _files(folder) == _files(mnist_dir)  # same bytes whatever the gzip wrapper


def test_fetch_rejects_a_mirror_serving_other_bytes(
    no_env: None, mnist_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    _tampered_copy(mnist_dir, bad)
    url = bad.as_uri() + "/"  # urllib reads file:// URLs like any mirror
    with pytest.raises(DataError, match="official train-labels.*md5"):
        fetch(DataConfig(), tmp_path / "raw", mirrors=[url])
    assert not (tmp_path / "raw").exists()


def test_offline_without_a_local_copy_is_one_clear_line(
    no_env: None, tmp_path: Path
) -> None:
    """What `make run` prints on a fresh offline machine; nothing is written."""
    done = subprocess.run(
        [sys.executable, "-m", "genreg.adapters.cli", "fetch", "--raw-dir", "raw"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
        },
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("genreg fetch: error: raw/mnist: MNIST not found: set")
    assert "GENREG_DATA_DIR" in line and "connect to the internet" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="MNIST not found.*data.download is false"):
        prepare(DataConfig(download=False), tmp_path / "out", raw_dir=tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="apt package dataset-fashion-mnist"
)
def test_fashion_mnist_md5s() -> None:
    (train_x, train_y), (test_x, _) = load_raw("fashion-mnist", FASHION_DIR)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y).tolist() == [6000] * 10


def test_failed_prepare_leaves_outputs_untouched(
    no_env: None,
    prepared_mnist: Path,
    mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(prepared_mnist, out)
    before = _files(out)
    tampered = _tampered_copy(mnist_dir, tmp_path / "tampered")
    with pytest.raises(DataError):
        prepare(DataConfig(source_dir=str(tampered), val_size=100), out)
    assert not (tmp_path / "raw").exists()
    real_save = datasets.save_split

    def fail_on_test(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        if Path(path).name == "test.npz":
            raise OSError("disk full")
        real_save(path, images, labels)

    monkeypatch.setattr("genreg.stages.prepare.save_split", fail_on_test)
    with pytest.raises(OSError, match="disk full"):
        prepare(DataConfig(val_size=100), out, raw_dir=mnist_dir.parent)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tampered"]


# --- prepared .npz files -------------------------------------------------------------


def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    save_split(path, rng.integers(0, 256, (100, 28, 28), np.uint8), np.arange(100) % 10)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _missing_key(path: Path) -> None:
    np.savez(path, images=np.zeros((2, 28, 28), np.uint8))


def _float_labels(path: Path) -> None:
    np.savez(path, images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2))


def _flat_images(path: Path) -> None:
    np.savez(path, images=np.zeros((2, 784), np.uint8), labels=np.zeros(2, np.int64))


def _big_label(path: Path) -> None:
    np.savez(path, images=np.zeros((2, 28, 28), np.uint8), labels=np.array([0, 10]))


def _pickled(path: Path) -> None:
    np.savez(
        path, images=np.array([None, 1], dtype=object), labels=np.zeros(2, np.int64)
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (Path.unlink, "not found"),
        (_truncate, "corrupt or truncated"),
        (_flip_middle, "corrupt or truncated"),
        (_missing_key, "missing arrays"),
        (_float_labels, "labels must be int64"),
        (_flat_images, "images must be uint8"),
        (_big_label, "labels must be in 0..9"),
        (_pickled, "corrupt"),
    ],
)
def test_load_split_rejects_bad_files(tmp_path: Path, damage, message: str) -> None:
    path = _tiny(tmp_path)
    assert load_split(path, num_classes=10).images.shape == (100, 28, 28)
    damage(path)
    with pytest.raises(DataError, match=f"tiny.npz.*{message}"):
        load_split(path, num_classes=10)


def test_load_prepared_checks_hashes(prepared_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(prepared_mnist, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["counts"]["val"] = 100
    val = load_split(out / "val.npz")
    save_split(out / "val.npz", val.images[:100], val.labels[:100])
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="val.npz: sha256"):
        load_prepared(out)


# --- alphabet ------------------------------------------------------------------------


def _usable() -> dict[str, Path]:
    return {n: p for n, p in list_fonts().items() if has_letters(p)}


def test_fonts_found() -> None:
    usable = _usable()
    assert len(usable) >= 2
    assert not has_letters(list_fonts()["cmex10"])  # bundled symbol font, not letters
    if not (alphabet.SYSTEM_FONTS / "truetype" / "liberation").is_dir():
        pytest.skip(f"{len(usable)} fonts; install .ci/apt-packages.txt for >= 30")
    assert len(usable) >= 30


def test_renders_26_distinct_letters_per_font() -> None:
    fonts = dict(sorted(_usable().items())[:2])
    split = render_fonts(fonts, AlphabetConfig(), seed=0)
    assert split.images.shape == (52, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.tolist() == list(range(26)) * 2
    for font_images in (split.images[:26], split.images[26:]):
        assert len({img.tobytes() for img in font_images}) == 26
    assert not np.array_equal(split.images[:26], split.images[26:])
    assert split.images.max() == 255
    # glyphs sit inside MNIST's 20x20 box, so a 3-pixel border stays black
    assert split.images[:, :3].max() == 0 and split.images[:, -3:].max() == 0
    assert split.images[:, :, :3].max() == 0 and split.images[:, :, -3:].max() == 0


def test_default_font_split_holds_out_whole_fonts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [f"f{i:02d}" for i in range(23)]
    chosen = default_font_split(names)
    assert chosen["val"] == ["f08", "f18"] and chosen["test"] == ["f09", "f19"]
    assert default_font_split(["c", "a", "b"]) == {
        "train": ["a"],
        "val": ["b"],
        "test": ["c"],
    }
    for system in (
        alphabet.SYSTEM_FONTS,
        Path("/nonexistent"),
    ):  # matplotlib's alone too
        monkeypatch.setattr(alphabet, "SYSTEM_FONTS", system)
        fonts = {s: set(f) for s, f in resolve_fonts(AlphabetConfig()).items()}
        assert all(fonts.values())
        assert not fonts["train"] & (fonts["val"] | fonts["test"])
        assert not fonts["val"] & fonts["test"]


def test_missing_fonts_are_named() -> None:
    cfg = AlphabetConfig(
        train_fonts=("DejaVuSans", "NoSuchFont"),
        val_fonts=("Nope",),
        test_fonts=("cmr10",),
    )
    with pytest.raises(DataError, match=r"\['NoSuchFont', 'Nope'\].*matplotlib"):
        resolve_fonts(cfg)


def test_augmentation_is_seeded_and_changes_images() -> None:
    path = list_fonts()["DejaVuSans"]
    cfg = AlphabetConfig(
        renders_per_font=3, shift=0.1, rotation=15, scale=0.2, thickness=1
    )
    first = render_font(path, cfg, seed=0)
    assert np.array_equal(first.images, render_font(path, cfg, seed=0).images)
    assert not np.array_equal(
        first.images[26:], render_font(path, cfg, seed=1).images[26:]
    )
    plain = render_font(path, AlphabetConfig(), seed=0)
    assert np.array_equal(
        first.images[:26], plain.images
    )  # rendering 0 is un-augmented
    changed = [
        not np.array_equal(a, b) for a, b in zip(first.images[26:52], plain.images)
    ]
    assert all(changed)
    assert first.labels.tolist() == list(range(26)) * 3


def test_prepare_alphabet(tmp_path: Path) -> None:
    cfg = DataConfig(
        dataset="alphabet",
        alphabet=AlphabetConfig(
            train_fonts=("DejaVuSans", "DejaVuSerif"),
            val_fonts=("DejaVuSansMono",),
            test_fonts=("cmr10",),
            renders_per_font=2,
            rotation=10,
        ),
    )
    meta = prepare(cfg, tmp_path / "alphabet")
    splits = load_prepared(tmp_path / "alphabet")
    assert meta["counts"] == {"train": 104, "val": 52, "test": 52}
    assert meta["num_classes"] == 26 and meta["class_names"][25] == "Z"
    assert meta["fonts"]["test"] == ["cmr10"]
    assert sorted(meta["sources"]) == [
        "DejaVuSans",
        "DejaVuSansMono",
        "DejaVuSerif",
        "cmr10",
    ]
    assert splits["train"].images.shape == (104, 28, 28)
    assert np.bincount(splits["val"].labels).tolist() == [2] * 26


def _heldout_cfg(train_renders: int, rotation: float) -> DataConfig:
    """4 fonts at 16x16; training renders as given, held-out ones fixed."""
    return DataConfig(
        dataset="alphabet",
        alphabet=AlphabetConfig(
            image_size=16,
            train_fonts=("DejaVuSans", "DejaVuSerif"),
            val_fonts=("DejaVuSansMono",),
            test_fonts=("cmr10",),
            renders_per_font=train_renders,
            shift=0.1,
            rotation=rotation,
            scale=0.1,
            thickness=1,
            heldout=AugmentConfig(renders_per_font=2, shift=0.05, rotation=5),
        ),
    )


def test_heldout_fonts_get_their_own_augmentation(tmp_path: Path) -> None:
    meta = prepare(_heldout_cfg(3, rotation=15), tmp_path / "a")
    again = prepare(_heldout_cfg(3, rotation=15), tmp_path / "b")
    assert meta["sha256"] == again["sha256"]  # seeded: byte-identical arrays
    assert meta["counts"] == {"train": 2 * 3 * 26, "val": 52, "test": 52}
    assert meta["alphabet"]["heldout"] == {
        "renders_per_font": 2,
        "shift": 0.05,
        "rotation": 5,
        "scale": 0.0,
        "thickness": 0,
    }
    splits = load_prepared(tmp_path / "a")
    assert splits["train"].images.shape == (156, 16, 16)
    assert splits["test"].labels.tolist() == list(range(26)) * 2
    # held-out fonts never appear in train, neither by name nor as an image
    fonts = meta["fonts"]
    assert not set(fonts["train"]) & set(fonts["val"] + fonts["test"])
    train_images = {img.tobytes() for img in splits["train"].images}
    for split in ("val", "test"):
        assert not train_images & {img.tobytes() for img in splits[split].images}
    # the held-out renders are distorted by `heldout`, not the training keys
    plain = render_fonts(
        {"cmr10": list_fonts()["cmr10"]}, AlphabetConfig(image_size=16), seed=0
    )
    assert np.array_equal(splits["test"].images[:26], plain.images)
    assert not np.array_equal(splits["test"].images[26:], plain.images)
    cfg = _heldout_cfg(3, rotation=15).alphabet
    assert not np.array_equal(
        splits["test"].images,
        render_fonts(
            {"cmr10": list_fonts()["cmr10"]}, cfg, seed=0, split="train"
        ).images[:52],
    )
    # other training augmentation, same val and test arrays
    other = prepare(_heldout_cfg(1, rotation=0), tmp_path / "c")
    assert other["counts"]["train"] == 52
    for name in ("val.npz", "test.npz"):
        assert other["sha256"][name] == meta["sha256"][name]
    assert other["sha256"]["train.npz"] != meta["sha256"]["train.npz"]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("data.alphabet.heldout.shift", 0.6, r"\[0, 0.5\]"),
        ("data.alphabet.heldout.renders_per_font", 0, r"\[1, 1000\]"),
        ("data.alphabet.rotation", 91, r"\[0, 90\]"),
        ("data.alphabet.thickness", -1, r"\[0, 5\]"),
    ],
)
def test_augmentation_out_of_range_names_the_key(
    key: str, value: float, allowed: str
) -> None:
    with pytest.raises(
        ConfigError, match=rf"^{key}: .* out of range; allowed: {allowed}"
    ):
        build_config({"data": {"dataset": "alphabet"}}, {key: value})


def test_heldout_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.alphabet\.heldout\.shear: unknown"):
        build_config({"data": {"alphabet": {"heldout": {"shear": 0.1}}}})
