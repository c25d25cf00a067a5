"""Letters A-Z rendered from TTF/OTF fonts, white on black like MNIST, split by font.

The GENREG post's open question (docs/algorithm.md) is whether a net that learns one
rendering per letter generalises to unseen fonts, so val and test hold whole fonts
never trained on. Each glyph is drawn at 4x, cropped to its ink, fitted into the
central 20/28 of the image (MNIST's digit box) and centred; augmented renderings then
rotate, scale, shift and thicken it with per-font seeded randomness, the training
fonts' one way and the held-out fonts' another if `data.alphabet.heldout` says so.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from genreg.config import AlphabetConfig
from genreg.datasets import SPLITS, DataError, Split

LETTERS = string.ascii_uppercase
SYSTEM_FONTS = Path("/usr/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
_BOX = 20 / 28  # MNIST fits each digit into a 20x20 box of the 28x28 image


def font_dirs(fonts_dir: str | Path | None = None) -> list[Path]:
    """Where fonts are looked for, lowest precedence first."""
    dirs = [SYSTEM_FONTS, Path(matplotlib.get_data_path()) / "fonts" / "ttf"]
    return dirs + ([Path(fonts_dir)] if fonts_dir is not None else [])


def list_fonts(fonts_dir: str | Path | None = None) -> dict[str, Path]:
    """Font name (file stem) -> .ttf/.otf path, searched recursively.

    On a name clash `fonts_dir` wins over matplotlib's bundled fonts, which win over
    /usr/share/fonts, so a name means the same file wherever matplotlib is pinned.
    """
    fonts: dict[str, Path] = {}
    for folder in font_dirs(fonts_dir):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in FONT_SUFFIXES and path.is_file():
                    fonts[path.stem] = path
    return dict(sorted(fonts.items()))


def has_letters(path: str | Path) -> bool:
    """True if the font maps A-Z to glyphs named for them (symbol fonts do not)."""
    from fontTools.ttLib import TTFont, TTLibError  # matplotlib's own dependency

    try:
        with TTFont(str(path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, AssertionError, KeyError):
        return False
    for letter in LETTERS:
        glyph = cmap.get(ord(letter), "")
        # fonts without glyph names (post table v3) get generated names like glyph00036
        if glyph not in (letter, f"uni{ord(letter):04X}") and glyph[:5] != "glyph":
            return False
    return True


def default_font_split(names: list[str]) -> dict[str, list[str]]:
    """Sorted fonts; of every 10 (or all, if fewer) the 9th is val, the 10th test."""
    names = sorted(names)
    if len(names) < 3:
        raise DataError(
            f"need at least 3 fonts with A-Z glyphs for train/val/test, found {names}"
        )
    k = min(10, len(names))
    split = {"train": [], "val": [], "test": []}
    for i, name in enumerate(names):
        split[
            "val" if i % k == k - 2 else "test" if i % k == k - 1 else "train"
        ].append(name)
    return split


def resolve_fonts(cfg: AlphabetConfig) -> dict[str, dict[str, Path]]:
    """Split -> {font name: path}: the configured fonts, or `default_font_split`."""
    available = list_fonts(cfg.fonts_dir)
    named = {"train": cfg.train_fonts, "val": cfg.val_fonts, "test": cfg.test_fonts}
    if not any(named.values()):
        usable = [name for name, path in available.items() if has_letters(path)]
        chosen = default_font_split(usable)
        return {s: {n: available[n] for n in chosen[s]} for s in SPLITS}
    for split, names in named.items():
        if not names:
            raise DataError(
                f"data.alphabet.{split}_fonts is empty; name fonts for every split, "
                "or leave all three empty for the default split"
            )
    everything = [n for names in named.values() for n in names]
    missing = sorted({n for n in everything if n not in available})
    if missing:
        where = ", ".join(str(d) for d in font_dirs(cfg.fonts_dir))
        raise DataError(
            f"fonts not found: {missing}; looked for <name>.ttf/.otf in {where}"
        )
    repeated = sorted({n for n in everything if everything.count(n) > 1})
    if repeated:
        raise DataError(f"fonts named in more than one split (or twice): {repeated}")
    no_letters = [n for n in everything if not has_letters(available[n])]
    if no_letters:
        raise DataError(
            f"fonts without A-Z glyphs: {[str(available[n]) for n in no_letters]}"
        )
    return {s: {n: available[n] for n in named[s]} for s in SPLITS}


def render_letter(
    font: ImageFont.FreeTypeFont,
    letter: str,
    image_size: int,
    *,
    rotation: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    thickness: int = 0,
) -> np.ndarray:
    """One glyph, white on black, uint8 [S, S]; shift in pixels, rotation in degrees."""
    side = 3 * int(font.size)
    canvas = Image.new("L", (side, side))
    ImageDraw.Draw(canvas).text(
        (side / 2, side / 2), letter, font=font, fill=255, anchor="mm"
    )
    bbox = canvas.getbbox()
    if bbox is None:
        raise DataError(f"{font.path}: letter {letter!r} renders blank")
    glyph = canvas.crop(bbox)
    if rotation:
        glyph = glyph.rotate(rotation, Image.Resampling.BICUBIC, expand=True)
        glyph = glyph.crop(glyph.getbbox())
    box = min(image_size, _BOX * image_size * scale)
    factor = box / max(glyph.size)
    width, height = (max(1, round(d * factor)) for d in glyph.size)
    glyph = glyph.resize((width, height), Image.Resampling.LANCZOS)
    out = Image.new("L", (image_size, image_size))
    left = round((image_size - width) / 2 + shift[0])
    top = round((image_size - height) / 2 + shift[1])
    out.paste(glyph, (left, top))
    for _ in range(thickness):
        out = out.filter(ImageFilter.MaxFilter(3))
    return np.asarray(out, dtype=np.uint8)


def render_font(
    path: str | Path, cfg: AlphabetConfig, seed: int, split: str = "train"
) -> Split:
    """`split`'s renderings of A-Z in one font: images uint8 [R*26, S, S], labels.

    R and the distortions are `cfg.augment(split)`. Rendering 0 is plain; the others
    draw rotation, scale, shift and dilation passes from a generator seeded by (seed,
    font name), so a font's images do not depend on which other fonts are present.
    """
    path = Path(path)
    size = cfg.image_size
    aug = cfg.augment(split)
    font = ImageFont.truetype(str(path), size=max(64, 4 * size))
    rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(path.stem.encode())]))
    images = []
    for render in range(aug.renders_per_font):
        for letter in LETTERS:
            # drawn for rendering 0 too, so each letter's stream is fixed
            dx, dy = rng.uniform(-aug.shift, aug.shift, 2) * size
            augment = {
                "rotation": float(rng.uniform(-aug.rotation, aug.rotation)),
                "scale": 1.0 + float(rng.uniform(-aug.scale, aug.scale)),
                "shift": (float(dx), float(dy)),
                "thickness": int(rng.integers(0, aug.thickness + 1)),
            }
            images.append(
                render_letter(font, letter, size, **(augment if render else {}))
            )
    labels = np.tile(np.arange(len(LETTERS), dtype=np.int64), aug.renders_per_font)
    return Split(np.stack(images), labels)


def render_fonts(
    fonts: Mapping[str, Path], cfg: AlphabetConfig, seed: int, split: str = "train"
) -> Split:
    """`split`'s renderings of the given fonts, by name: [F*R*26, S, S], labels."""
    parts = [render_font(fonts[name], cfg, seed, split) for name in sorted(fonts)]
    if not parts:
        size = cfg.image_size
        return Split(np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64))
    return Split(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
    )
