"""MNIST-format image sets (MNIST, Fashion-MNIST): four IDX files read once onto the device.

Each file is looked up in `root` and in torchvision's `<root>/MNIST/raw/` layout,
gzipped or not. Missing files are downloaded from the configured mirrors, in order,
each checked against torchvision's MD5 of the .gz file and renamed into place only
once it matched, so an interrupted or failed download never leaves a half file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from gan_cli.files import atomic_write
from gan_cli.errors import UserError

# the four files of every MNIST-format set, without the .gz suffix
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

GZIP_MAGIC = b"\x1f\x8b"

Opener = Callable[..., object]  # urllib.request.urlopen's signature: (url, timeout=) -> response


@dataclass(frozen=True)
class IDXSet:
    display: str  # name shown to users
    torchvision: str  # torchvision's folder: <root>/<torchvision>/raw/
    md5: Mapping[str, str]  # file name without .gz -> MD5 of the .gz file
    n_classes: int = 10


# MD5s from torchvision/datasets/mnist.py (MNIST.resources, FashionMNIST.resources)
DATASETS: dict[str, IDXSet] = {
    "mnist": IDXSet("MNIST", "MNIST", {
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion_mnist": IDXSet("Fashion-MNIST", "FashionMNIST", {
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
        TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
    }),
}


# ---------------------------------------------------------------- finding the files
def default_root(name: str) -> Path:
    """<$XDG_CACHE_HOME or ~/.cache>/gan_cli/<name>."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gan_cli" / name


def find_files(root: Path, torchvision: str) -> dict[str, Optional[Path]]:
    """Where each of FILES is: root or root/<torchvision>/raw, uncompressed (faster to
    read) before gzipped; None if in neither."""
    folders = (root, root / torchvision / "raw")
    found = {}
    for name in FILES:
        candidates = [folder / (name + suffix) for folder in folders for suffix in ("", ".gz")]
        found[name] = next((p for p in candidates if p.is_file()), None)
    return found


# ---------------------------------------------------------------- reading and writing IDX
def read_bytes(path: Path) -> bytearray:
    """The file's contents, decompressed if gzipped (by suffix or by its magic bytes)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if path.suffix == ".gz" or data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}: corrupt gzip stream ({e}); replace or delete the "
                            "file") from None
    return bytearray(data)  # writable, so torch.from_numpy can share it


def parse_idx(data: bytearray, path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file's array, checked against its header: (N,) or (N, H, W)."""
    magic = 0x800 + ndim  # bytes 0x00 0x00, type 0x08 (unsigned byte), number of dimensions
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        what = "empty" if found is None else f"magic number 0x{found:08x}"
        raise UserError(f"{path}: not an unsigned-byte idx{ndim} file ({what}, expected "
                        f"0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated ({len(data)} bytes, shorter than its header)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    need = header + int(np.prod(dims))
    if len(data) != need:
        state = "truncated" if len(data) < need else "longer than its header says"
        raise UserError(f"{path}: {state} ({len(data)} bytes; a {'x'.join(map(str, dims))} "
                        f"array needs {need})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz), atomically."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    data = (0x800 + a.ndim).to_bytes(4, "big") + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same array gives the same bytes
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def read_split(images_path: Path, labels_path: Path, n_classes: int,
               digest: Optional[hashlib._Hash] = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 images and (N,) uint8 labels, checked; the decompressed bytes of
    both files go into `digest` if given."""
    raw_images, raw_labels = read_bytes(images_path), read_bytes(labels_path)
    images, labels = parse_idx(raw_images, images_path, 3), parse_idx(raw_labels, labels_path, 1)
    if len(images) == 0 or 0 in images.shape[1:]:
        raise UserError(f"{images_path}: holds no images (shape {_size(images, 0)})")
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                        f"in {images_path}")
    if labels.max() >= n_classes:
        raise UserError(f"{labels_path}: label {int(labels.max())} out of range (labels are "
                        f"0..{n_classes - 1})")
    if digest is not None:
        digest.update(raw_images)
        digest.update(raw_labels)
    return images, labels


# ---------------------------------------------------------------- downloading
def download_files(folder: Path, names: Sequence[str], mirrors: Sequence[str],
                   checksums: Mapping[str, str], opener: Opener = urllib.request.urlopen,
                   timeout: float = 30.0) -> None:
    """Fetch each `name`.gz into `folder` from the first mirror that serves a file with
    the right MD5. At the first file no mirror serves, a UserError naming the files
    still missing: the next would most likely fail the same way (offline)."""
    for k, name in enumerate(names):
        problems = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name + ".gz"
            try:
                fetch(url, folder / (name + ".gz"), checksums[name], opener, timeout)
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError,
                    ChecksumMismatch) as e:
                problems.append(f"{url}: {_why(e)}")
        else:
            reason = "; ".join(problems) or "no mirrors configured (data.mirrors)"
            raise UserError(missing_message(folder, names[k:], reason))


def _why(error: Exception) -> str:
    """A download failure in a few words: 'HTTP 404 Not Found', 'timed out', ..."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def missing_message(folder: Path, names: Sequence[str], reason: str) -> str:
    """One line: which files are missing where, why, and how to put them there by hand."""
    return (f"{folder}: missing {', '.join(names)} ({reason}); copy them (gzipped or not) "
            f"into {folder}, or set data.root= to a folder that holds them")


class ChecksumMismatch(Exception):
    """A downloaded file's MD5 is not the known one (it was removed)."""


def fetch(url: str, target: Path, md5: str, opener: Opener = urllib.request.urlopen,
          timeout: float = 30.0) -> None:
    """Stream url into a temporary file beside `target`; rename it to `target` only if
    its MD5 is `md5`. On any failure (KeyboardInterrupt too) the temporary file goes."""
    def write(tmp: Path) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with opener(url, timeout=timeout) as response, open(tmp, "wb") as out:
            headers = getattr(response, "headers", None)
            length = headers.get("Content-Length") if headers is not None else None
            with _progress(target.name, int(length) if length else None) as advance:
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
                    advance(len(chunk))
        if digest.hexdigest() != md5:
            raise ChecksumMismatch(f"checksum mismatch (MD5 {digest.hexdigest()}, expected "
                                   f"{md5}); the downloaded file was removed")

    atomic_write(target, write)


@contextlib.contextmanager
def _progress(name: str, total: Optional[int]) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr while a file downloads; yields advance(n_bytes).
    Disabled when stderr is not a terminal (logs, CI)."""
    from rich.console import Console  # imported here: only downloads need rich
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    with Progress(*Progress.get_default_columns()[:-1], DownloadColumn(), TransferSpeedColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"downloading {name}", total=total)
        yield lambda n: progress.advance(task, n)


# ---------------------------------------------------------------- the data source
class ImagesOnDevice:
    """What every image source shares: `images`, an (N, C, H, W) tensor in [-1, 1] on the
    device, with their (N,) `labels` (None: a set without labels), drawn uniformly."""

    images: torch.Tensor
    labels: Optional[torch.Tensor]
    device: torch.device

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               exact_weights: bool = False) -> torch.Tensor:
        """(n, C, H, W) training images drawn uniformly with replacement, on the device.
        exact_weights (a mixture option) is accepted and ignored."""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None
                        ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Images as sample() draws them, and their (n,) labels (None without labels)."""
        idx = torch.randint(len(self.images), (n,), device=self.device, generator=generator)
        return self.images[idx], None if self.labels is None else self.labels[idx]

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(n,) labels of random training images: each class as often as the data has it."""
        return self.sample_labelled(n, generator)[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's (C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))


class IDXImages(ImagesOnDevice):
    """An MNIST-format training split as one (N, 1, H, W) tensor in [-1, 1] on the device.

    name: mnist | fashion_mnist (which checksums and which torchvision folder).
    root: folder holding the files; None = <user cache>/gan_cli/<name>.
    classes: train on these labels only; None = all. limit: the first N images after that.
    """

    def __init__(self, name: str = "mnist", root: str | None = None, download: bool = True,
                 mirrors: Sequence[str] = (), classes: Sequence[int] | None = None,
                 limit: int | None = None, device: str | torch.device = "cpu"):
        if name not in DATASETS:
            raise UserError(f"data.name={name}: unknown; allowed: {', '.join(DATASETS)}")
        self.name, self.spec = name, DATASETS[name]
        self.n_classes = self.spec.n_classes
        self.device = torch.device(device)
        self._check_options(classes, limit)
        paths = self._locate(Path(root).expanduser().absolute() if root else default_root(name),
                             download, mirrors)
        self.root = paths[TRAIN_IMAGES].parent

        # read and check all four files now: a bad test file fails before training starts
        digest = hashlib.sha1()
        train = read_split(paths[TRAIN_IMAGES], paths[TRAIN_LABELS], self.n_classes, digest)
        test = read_split(paths[TEST_IMAGES], paths[TEST_LABELS], self.n_classes, digest)
        if train[0].shape[1:] != test[0].shape[1:]:
            raise UserError(f"{paths[TEST_IMAGES]}: images are {_size(test[0])} but the training "
                            f"images in {paths[TRAIN_IMAGES]} are {_size(train[0])}")
        self._fingerprint = digest.hexdigest()[:16]
        self._splits = {"train": train, "test": test}  # uint8 on the host
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        keep = self._selection(train[1], paths[TRAIN_LABELS])
        self.images, self.labels = self._to_device(train[0], train[1], keep)

    def _locate(self, root: Path, download: bool, mirrors: Sequence[str]) -> dict[str, Path]:
        """Each file's path, downloading missing ones into root (or into the torchvision
        folder if the files found so far are there)."""
        found = find_files(root, self.spec.torchvision)
        missing = [name for name, path in found.items() if path is None]
        if not missing:
            return found  # type: ignore[return-value]
        raw = root / self.spec.torchvision / "raw"
        folder = raw if any(p is not None and p.parent == raw for p in found.values()) else root
        if not download:
            raise UserError(missing_message(folder, missing, "data.download=false"))
        download_files(folder, missing, mirrors, self.spec.md5)
        return find_files(root, self.spec.torchvision)  # type: ignore[return-value]

    def _check_options(self, classes: Optional[Sequence[int]], limit: Optional[int]) -> None:
        """data.classes and data.limit, checked before any file is read or downloaded."""
        self.classes = None if classes is None else sorted({int(c) for c in classes})
        if self.classes is not None and (
                not self.classes or not all(0 <= c < self.n_classes for c in self.classes)):
            raise UserError(f"data.classes={list(classes)}: give one or more labels in "
                            f"0..{self.n_classes - 1} (null = all)")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise UserError(f"data.limit={limit}: must be a positive number of images "
                            "(null = all)")
        self.limit = limit

    def _selection(self, labels: np.ndarray, labels_path: Path) -> Optional[np.ndarray]:
        """Indices of the training images data.classes and data.limit keep; None = all."""
        keep = None
        if self.classes is not None:
            keep = np.flatnonzero(np.isin(labels, self.classes))
            if len(keep) == 0:
                raise UserError(f"data.classes={self.classes}: no training images with these "
                                f"labels in {labels_path}")
        if self.limit is not None:
            keep = (np.arange(len(labels)) if keep is None else keep)[:self.limit]
        return keep

    def _to_device(self, images: np.ndarray, labels: np.ndarray,
                   keep: Optional[np.ndarray] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, H, W) -> float (N, 1, H, W) in [-1, 1] on the device; labels int64."""
        if keep is not None:
            images, labels = images[keep], labels[keep]
        # moved as uint8 (4x fewer bytes), scaled on the device: 0 -> -1, 255 -> 1
        x = torch.from_numpy(images).to(self.device).unsqueeze(1).float() / 127.5 - 1
        y = torch.from_numpy(labels).to(self.device).long()
        return x, y

    def balanced_labels(self, n: int) -> torch.Tensor:
        """(n,) the classes trained on, in turn (0, 1, ..., 9, 0, 1, ...)."""
        present = torch.unique(self.labels)
        return present[torch.arange(n, device=self.device) % len(present)]

    def full_train_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training images and labels, whatever data.classes and data.limit say."""
        if self.classes is None and self.limit is None:
            return self.images, self.labels
        return self._split("train")

    def test_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The t10k images (N, C, H, W) in [-1, 1] and labels, on the device."""
        return self._split("test")

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._cache:
            self._cache[split] = self._to_device(*self._splits[split])
        return self._cache[split]

    def fingerprint(self) -> str:
        """16 hex digits of SHA-1 over the four files' decompressed contents."""
        return self._fingerprint

    def describe(self) -> str:
        subset = []
        if self.classes is not None:
            subset.append("classes " + ",".join(map(str, self.classes)))
        if self.limit is not None:
            subset.append(f"first {self.limit}")
        shown = f" ({'; '.join(subset)})" if subset else ""
        return (f"{self.spec.display}: {len(self.images)} training images "
                f"{'x'.join(map(str, self.shape))}{shown} from {self.root}")


def _size(images: np.ndarray, first: int = 1) -> str:
    """'28x28' for (N, 28, 28) images (from axis `first` on)."""
    return "x".join(map(str, images.shape[first:]))
