"""Your own images: a folder of PNG / JPEG / BMP files, decoded once into a uint8 cache and
kept on the training device as (N, C, size, size) in [-1, 1], like IDXImages.

Layout (torchvision ImageFolder's): DIR/<class>/*.png gives labels (class names in
sorted order are 0..K-1; images may sit in deeper folders of a class); images directly
in DIR give an unlabelled set. The cache is keyed by every file's path, size and
modification time and by data.size and data.channels, so changing a file re-decodes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from gan_cli.files import atomic_write
from gan_cli.errors import UserError
from gan_cli.data.mnist import ImagesOnDevice, default_root
from gan_cli.data.points import check_split_options, existing_path, split_indices

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CACHE_VERSION = "v1"  # part of the cache key: bump when decoding changes
MIN_SIZE, MAX_SIZE = 4, 1024  # data.size, pixels


# ---------------------------------------------------------------- finding and decoding
def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Image files (by ending) in folder, or in all its subfolders; hidden ones skipped."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in SUFFIXES and
                  not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_images(root: Path) -> tuple[list[Path], Optional[list[int]], list[str]]:
    """The image files, their class indices (None for a flat folder) and the class names."""
    top = _images_in(root, recursive=False)
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    per_class = [(d.name, _images_in(d, recursive=True)) for d in classes]
    per_class = [(name, files) for name, files in per_class if files]
    if top and per_class:
        raise UserError(f"data.path={root}: holds images ({top[0].name}, ...) beside class "
                        f"subfolders ({per_class[0][0]}/, ...); put every image in a class "
                        "subfolder, or all of them directly in the folder for unlabelled data")
    if not top and not per_class:
        raise UserError(f"data.path={root}: no images (endings {', '.join(SUFFIXES)}) in it "
                        "or in its subfolders")
    if top:
        return top, None, []
    files = [f for _, fs in per_class for f in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return files, labels, [name for name, _ in per_class]


def files_key(root: Path, files: list[Path], size: int, channels: int) -> str:
    """16 hex digits naming this exact set of files (paths, byte sizes, modification times)
    decoded at this size and channel count."""
    digest = hashlib.sha1(f"{CACHE_VERSION} {root} {size} {channels}".encode())
    for f in files:
        stat = f.stat()
        digest.update(f"\n{f.relative_to(root)} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image file -> (C, size, size) uint8: converted to grey or RGB, its shorter side
    resized to `size` (bicubic), then the centre size x size square cut out."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decodes now: a truncated file fails here, not later
            image = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"data.path: {path}: not a readable image ({e})") from None
    w, h = image.size
    scale = size / min(w, h)
    new = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)  # (C, size, size)


def decoded(files: list[Path], size: int, channels: int, cache_file: Path) -> np.ndarray:
    """(N, C, size, size) uint8: read from cache_file if it holds these files, else decoded
    and cached (an unwritable cache only costs decoding again next time)."""
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as stored:
                images = stored["images"]
            if images.shape == (len(files), channels, size, size):
                return images
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable: decode again and replace it
    images = np.stack([decode(f, size, channels) for f in files])
    try:
        atomic_write(cache_file, lambda tmp: np.savez(open(tmp, "wb"), images=images))
    except OSError as e:
        print(f"warning: {cache_file}: cannot cache the decoded images ({e.strerror or e})",
              file=sys.stderr)
    return images


def check_image_options(size: int, channels: int) -> None:
    if not (isinstance(size, int) and not isinstance(size, bool) and MIN_SIZE <= size <= MAX_SIZE):
        raise UserError(f"data.size={size}: images are cut to size x size pixels; give an "
                        f"integer in {MIN_SIZE}..{MAX_SIZE} (28, 32 and 64 suit model=dcgan)")
    if channels not in (1, 3):
        raise UserError(f"data.channels={channels}: allowed: 1 (greyscale) or 3 (RGB)")


# ---------------------------------------------------------------- the data source
class ImageFolder(ImagesOnDevice):
    """The images of `path` as IDXImages holds MNIST: a shuffled training split (N, C, S, S)
    in [-1, 1] on the device, its labels (None for a flat folder), and a held-out split
    (data.holdout of the images) for evaluation: the classifier's test set and the
    reference of the image metrics."""

    def __init__(self, path: str, size: int = 28, channels: int = 1, max_classes: int = 100,
                 holdout: float = 0.1, split_seed: int = 0, cache: Optional[str] = None,
                 device: str | torch.device = "cpu"):
        check_image_options(size, channels)
        check_split_options(holdout, split_seed, max_classes)
        self.path = existing_path(path, "folder")
        if not self.path.is_dir():
            raise UserError(f"data.path={path}: a file; data=image_folder reads a folder of "
                            "images (for a table of points use data=points)")
        files, labels, self.class_names = list_images(self.path)
        if len(self.class_names) > max_classes:
            raise UserError(f"data.path={path}: {len(self.class_names)} class subfolders, more "
                            f"than data.max_classes={max_classes}")
        if len(files) < 2:
            raise UserError(f"data.path={path}: holds 1 image; need at least 2 (some to train "
                            "on, some held out)")
        self.root = Path(cache).expanduser().absolute() if cache else default_root("image_folder")
        key = files_key(self.path, files, size, channels)
        images = decoded(files, size, channels, self.root / f"images_{key}.npz")
        self._fingerprint = hashlib.sha1(f"{key} {holdout} {split_seed}".encode()).hexdigest()[:16]
        train, held = split_indices(len(files), holdout, split_seed)
        # a random training order, so that the first n images are a fair sample (the image
        # metrics' reference takes the first eval.n_samples, the real.png grid the first 64)
        train = np.random.default_rng(split_seed + 1).permutation(train)
        y = np.asarray(labels if labels is not None else [0] * len(files), dtype=np.int64)
        self.device = torch.device(device)
        self.images, labels_t = self._to_device(images[train], y[train])
        self.labels = labels_t if labels is not None else None
        self._held_out = (images[held], y[held])
        self._test: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.n_files = len(files)

    def _to_device(self, images: np.ndarray, labels: np.ndarray
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        # moved as uint8 (4x fewer bytes), scaled on the device: 0 -> -1, 255 -> 1
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).float() / 127.5 - 1
        return x, torch.from_numpy(labels).to(self.device)

    @property
    def n_classes(self) -> int:  # 0 for a flat folder
        return len(self.class_names)

    def balanced_labels(self, n: int) -> torch.Tensor:
        """(n,) the classes in turn (0, 1, ..., K-1, 0, 1, ...)."""
        return torch.arange(n, device=self.device) % self.n_classes

    def full_train_split(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.images, self.labels

    def test_split(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The held-out images (M, C, H, W) in [-1, 1] and labels, on the device."""
        if self._test is None:
            x, y = self._to_device(*self._held_out)
            self._test = (x, y if self.labels is not None else None)
        return self._test

    def fingerprint(self) -> str:
        """16 hex digits naming the files, their decoding and the split (the classifier's key)."""
        return self._fingerprint

    def describe(self) -> str:
        labels = f"{self.n_classes} classes" if self.n_classes else "no labels"
        held = self._held_out[0].shape[0]
        return (f"{len(self.images)} + {held} held-out images {'x'.join(map(str, self.shape))} "
                f"({labels}) from {self.path}")
