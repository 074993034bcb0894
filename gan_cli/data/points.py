"""Your own point set: an (N, d) array from .npy, .npz, .csv or .txt, split once into
training and held-out points and kept on the training device.

The source hands out points in the data's own units; the networks see them
standardised because build.py wraps G and D in the affine maps of `mean` and `scale`
(model.center), so G's samples, its checkpoints and gan-sample's files stay in data units.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from gan_cli.errors import UserError

SUFFIXES = (".npy", ".npz", ".csv", ".txt")


# ---------------------------------------------------------------- reading the file
def existing_path(path: Any, what: str = "file") -> Path:
    """data.path as an absolute Path that exists; UserError otherwise."""
    if path is None or str(path).strip() == "":
        raise UserError(f"data.path: give the {what} to train on (data.path=...)")
    p = Path(str(path)).expanduser().absolute()
    if not p.exists():
        raise UserError(f"data.path={path}: no such {what}")
    return p


Table = tuple[np.ndarray, Optional[list[str]], Optional[list[int]]]


def read_table(path: Path, key: Optional[str]) -> Table:
    """The file's values as a 2-D array (numbers, or strings for text files), its header's
    column names and each row's line in the file (None for NumPy files or no header)."""
    if path.suffix not in SUFFIXES:
        raise UserError(f"data.path={path}: allowed endings are {', '.join(SUFFIXES)}")
    if path.suffix in (".npy", ".npz"):
        return as_rows(load_array(path, key), path), None, None
    return read_text_table(path)


def load_array(path: Path, key: Optional[str]) -> np.ndarray:
    """The array in a .npy file, or the one (or data.key) in a .npz file."""
    try:
        loaded = np.load(path, allow_pickle=False)  # no pickles: a data file runs no code
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"data.path={path}: not a readable NumPy file ({e})") from None
    if path.suffix == ".npy":
        return loaded
    with loaded:
        names = list(loaded.files)
        if key is None and len(names) != 1:
            raise UserError(f"data.path={path}: holds {len(names)} arrays ({', '.join(names)}); "
                            "choose one with data.key=")
        name = key if key is not None else names[0]
        if name not in names:
            raise UserError(f"data.key={key}: {path} has no such array (it holds "
                            f"{', '.join(names) or 'none'})")
        return loaded[name]


def as_rows(array: np.ndarray, path: Path) -> np.ndarray:
    """(N,) -> (N, 1) (N one-dimensional points); (N, d) as it is; any other rank refused."""
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise UserError(f"data.path={path}: a {array.ndim}-D array of shape {array.shape}; "
                        "expected (N, d) points (or N numbers for 1-D data)")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UserError(f"data.path={path}: an array of {array.dtype}; expected numbers")
    return array


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_text_table(path: Path) -> Table:
    """A CSV (commas) or text (commas, tabs or spaces) table of strings, with its header.

    Blank lines and lines starting with # are skipped. The first row is a header when
    one of its fields is not a number where the second row's is (so a text label
    column does not make the first row look like one).
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"data.path={path}: cannot read it as text ({e})") from None
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and
                not ln.lstrip().startswith("#")]  # (line number, line)
    if not numbered:
        raise UserError(f"data.path={path}: holds no rows of numbers")
    first = numbered[0][1]
    delimiter = "," if path.suffix == ".csv" or "," in first else "\t" if "\t" in first else None
    if delimiter is None:  # whitespace-separated text
        rows = [ln.split() for _, ln in numbered]
    else:
        rows = [[field.strip() for field in row]
                for row in csv.reader((ln for _, ln in numbered), delimiter=delimiter)]
    header = None
    if len(rows) == 1 and not all(map(_is_number, rows[0])) or len(rows) > 1 and any(
            not _is_number(a) and _is_number(b) for a, b in zip(rows[0], rows[1])):
        header, rows, numbered = rows[0], rows[1:], numbered[1:]
    if not rows:
        raise UserError(f"data.path={path}: holds a header but no rows of numbers")
    width = len(header) if header is not None else len(rows[0])
    for (line_no, _), row in zip(numbered, rows):
        if len(row) != width:
            raise UserError(f"data.path={path}, line {line_no}: {len(row)} values where the "
                            f"{'header' if header else 'first row'} has {width} (a ragged row)")
    return np.array(rows, dtype=object), header, [n for n, _ in numbered]


def column_index(column: Any, n_columns: int, header: Optional[list[str]], key: str,
                 path: Path) -> int:
    """A column given as a 0-based number or a header name -> its index."""
    if isinstance(column, int) and not isinstance(column, bool):
        if not 0 <= column < n_columns:
            raise UserError(f"{key}: column {column} is out of range ({path} has {n_columns} "
                            f"columns, 0..{n_columns - 1})")
        return column
    if header is None:
        raise UserError(f"{key}: '{column}' is a name, but {path} has no header row; give "
                        f"column numbers 0..{n_columns - 1}")
    if str(column) not in header:
        raise UserError(f"{key}: no column '{column}' in {path} (its header: "
                        f"{', '.join(header)})")
    return header.index(str(column))


def numbers(table: np.ndarray, columns: list[int], path: Path, names: Optional[list[str]],
            lines: Optional[list[int]]) -> np.ndarray:
    """The chosen columns as float32 (N, d); a non-number or non-finite value named by its
    row (its line, for text files) and column."""
    values = table[:, columns]

    def where(row: int, col: int) -> str:
        name = names[columns[col]] if names else str(columns[col])
        at = f"line {lines[row]}" if lines is not None else f"row {row}"
        return f"data.path={path}, {at}, column {name}"

    if values.dtype == object:  # strings from a text file
        out = np.empty(values.shape, dtype=np.float64)
        for (r, c), text in np.ndenumerate(values):
            try:
                out[r, c] = float(text)
            except ValueError:
                raise UserError(f"{where(r, c)}: '{text}' is not a number") from None
        values = out
    values = np.asarray(values, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        r, c = bad[0]
        raise UserError(f"{where(r, c)}: {values[r, c]} is not finite ({len(bad)} NaN or "
                        "infinite values in all); remove or fill those rows")
    return values.astype(np.float32)


def class_codes(raw: np.ndarray, max_classes: int, key: str,
                path: Path) -> tuple[np.ndarray, list[str]]:
    """Labels of any kind (numbers or names) -> (N,) codes 0..K-1 in sorted order, names."""
    as_text = np.array([_label_name(v) for v in raw])
    names, codes = np.unique(as_text, return_inverse=True)
    if len(names) > max_classes:
        raise UserError(f"{key}: {len(names)} distinct labels in {path}, more than "
                        f"data.max_classes={max_classes} (is it the right column?)")
    if len(names) < 2:
        raise UserError(f"{key}: every point in {path} has the label {names[0]}; a "
                        "conditional GAN needs at least 2 classes")
    order = sorted(range(len(names)), key=lambda k: _label_sort_key(names[k]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank[codes], [str(names[k]) for k in order]


def _label_name(value: Any) -> str:
    """A label's name: 3.0 -> '3', 'cat' -> 'cat'."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value.strip()
    else:
        number = float(value)
    return str(int(number)) if math.isfinite(number) and number == int(number) else repr(number)


def _label_sort_key(name: str) -> tuple:
    """Numbers in numeric order (2 before 10), then names in alphabetical order."""
    return (0, float(name), "") if _is_number(name) else (1, 0.0, name)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of n items: (training indices, held-out indices)."""
    order = np.random.default_rng(seed).permutation(n)
    n_held = min(max(1, round(holdout * n)), n - 1)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def check_split_options(holdout: float, split_seed: int, max_classes: int) -> None:
    if not (isinstance(holdout, (int, float)) and 0 < holdout < 1):
        raise UserError(f"data.holdout={holdout}: the held-out share must be in (0, 1), "
                        "e.g. 0.1")
    if not (isinstance(max_classes, int) and max_classes >= 2):
        raise UserError(f"data.max_classes={max_classes}: must be an integer >= 2")


# ---------------------------------------------------------------- the data source
class PointSet:
    """The points of `path` (N, d) in data units: a training split the GAN samples from,
    and a held-out split (data.holdout of them) that evaluation compares G with.

    columns: feature columns (numbers or header names); None = all but the label column.
    label_column: the column of class labels (any values; sorted, they become 0..K-1).
    """

    def __init__(self, path: str, key: Optional[str] = None,
                 columns: Optional[Sequence[Any]] = None, label_column: Any = None,
                 max_classes: int = 100, holdout: float = 0.1, split_seed: int = 0,
                 device: str | torch.device = "cpu"):
        check_split_options(holdout, split_seed, max_classes)
        self.path = existing_path(path)
        if self.path.is_dir():
            raise UserError(f"data.path={path}: a folder; data=points reads one file "
                            f"({', '.join(SUFFIXES)}); for images use data=image_folder")
        table, header, lines = read_table(self.path, key)
        n_columns = table.shape[1]
        label = None if label_column is None else column_index(
            label_column, n_columns, header, "data.label_column", self.path)
        chosen = [column_index(c, n_columns, header, "data.columns", self.path)
                  for c in columns] if columns is not None else \
            [c for c in range(n_columns) if c != label]
        if not chosen:
            raise UserError(f"data.columns: no feature columns left in {self.path} "
                            f"({n_columns} columns, one of them the label)")
        if label is not None and label in chosen:
            raise UserError(f"data.columns: column {label_column} is the label column too")
        x = numbers(table, chosen, self.path, header, lines)  # (N, d) float32
        if len(x) < 2:
            raise UserError(f"data.path={path}: {len(x)} point(s); need at least 2 (some to "
                            "train on, some held out)")
        codes, self.class_names = (None, []) if label is None else \
            class_codes(table[:, label], max_classes, "data.label_column", self.path)
        self.column_names = [header[c] if header else str(c) for c in chosen]
        self.device = torch.device(device)
        train, held = split_indices(len(x), holdout, split_seed)
        self.train = torch.from_numpy(x[train]).to(self.device)  # (N_train, d)
        self.held_out = torch.from_numpy(x[held]).to(self.device)  # (N_held, d)
        self.train_labels = self.held_out_labels = None
        if codes is not None:
            self.train_labels = torch.from_numpy(codes[train]).to(self.device)
            self.held_out_labels = torch.from_numpy(codes[held]).to(self.device)
        # standardisation (model.center): a constant column keeps scale 1, not 1/0
        std = self.train.std(0) if len(self.train) > 1 else torch.ones(self.dim)
        self.mean = self.train.mean(0)  # (d,)
        self.scale = torch.where(std > 0, std, torch.ones_like(std))  # (d,)

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    @property
    def shape(self) -> tuple[int]:  # one sample's
        return (self.dim,)

    @property
    def n_classes(self) -> int:  # 0 without a label column
        return len(self.class_names)

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               exact_weights: bool = False) -> torch.Tensor:
        """(n, d) training points drawn uniformly with replacement, on the device.
        (exact_weights is a mixture option, ignored.)"""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None
                        ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Points as sample() draws them and their (n,) labels (None without labels)."""
        idx = torch.randint(len(self.train), (n,), device=self.device, generator=generator)
        labels = None if self.train_labels is None else self.train_labels[idx]
        return self.train[idx], labels

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(n,) labels of random training points: each class as often as the data has it."""
        return self.sample_labelled(n, generator)[1]

    def balanced_labels(self, n: int) -> torch.Tensor:
        """(n,) classes in order, each n x its share of the training points (to within one)."""
        share = torch.bincount(self.train_labels, minlength=self.n_classes).float()
        u = (torch.arange(n, device=self.device) + 0.5) / n
        cdf = (share / share.sum()).cumsum(0)
        return torch.searchsorted(cdf, u).clamp(max=self.n_classes - 1)

    def describe(self) -> str:
        labels = f", {self.n_classes} classes" if self.n_classes else ""
        return (f"{len(self.train)} + {len(self.held_out)} held-out points in {self.dim}-D"
                f"{labels} from {self.path}")
