"""The paper's non-LLM datasets, loaded from local files, with the fixed splits every experiment uses.

- **MNIST** (:func:`load_mnist`): the original IDX files. Only MNIST's 10,000 *test* digits are available here
  (``../shared/data/mnist``), so :func:`mnist_split` trains on a fixed 8,000 of them and keeps the other 2,000
  for everything else: the 1,024 worlds the reasons are computed on and every evaluation. Numbers from this split
  are not the paper's setting (60,000 training digits) and are always reported with that caveat.
- **UCI Adult** (:func:`load_adult`): census income (>50K is the favourable outcome), ``sex`` the protected
  attribute (Male privileged). Numeric columns are standardised and categorical ones one-hot encoded with
  statistics of the training rows only; ``?`` (missing) is kept as a category of its own.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            data = f.read()
    else:
        data = path.read_bytes()
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise ValueError(f"{path} is not an IDX file of the expected kind (magic {got}, expected {magic})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: {arr.size} values for dimensions {dims}")
    return arr.reshape(dims)


def load_mnist(directory: str | os.PathLike[str]) -> tuple[Float[Tensor, "n 1 28 28"], Int[Tensor, " n"]]:
    """MNIST test digits from IDX files: images as float32 in [0, 1], shape [n, 1, 28, 28], and labels [n]."""
    d = Path(directory)
    missing = [f for f in MNIST_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} lacks {', '.join(missing)} (MNIST's test set in IDX format)")
    images = _read_idx(d / MNIST_FILES[0], 0x0803)
    labels = _read_idx(d / MNIST_FILES[1], 0x0801)
    if len(images) != len(labels):
        raise ValueError(f"{d}: {len(images)} images but {len(labels)} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    return x, torch.from_numpy(labels.astype(np.int64))


@dataclass(frozen=True)
class MnistSplit:
    """Index sets into the 10,000 digits: train (fit), worlds (reasons), held out (flip evaluation)."""

    train: np.ndarray
    worlds: np.ndarray
    held_out: np.ndarray

    @property
    def evaluation(self) -> np.ndarray:
        """Every digit not trained on (worlds + held out): accuracy and FGSM are measured here."""
        return np.concatenate([self.worlds, self.held_out])

    def describe(self) -> str:
        return (
            f"trained on {len(self.train):,} of MNIST's 10,000 test digits; worlds = {len(self.worlds):,} and "
            f"evaluations on the other {len(self.evaluation):,} (flips on the {len(self.held_out):,} that are not "
            "worlds); the paper trained on the 60,000 training digits"
        )


def mnist_split(n: int = 10_000, n_train: int = 8_000, n_worlds: int = 1_024, seed: int = 0) -> MnistSplit:
    """A fixed random split of n digits (the same for every experiment with the same seed)."""
    if not 0 < n_train < n or not 0 < n_worlds < n - n_train:
        raise ValueError(f"cannot split {n} digits into {n_train} train and {n_worlds} worlds plus a rest")
    perm = np.random.default_rng(seed).permutation(n)
    rest = perm[n_train:]
    return MnistSplit(np.sort(perm[:n_train]), np.sort(rest[:n_worlds]), np.sort(rest[n_worlds:]))


@dataclass
class Adult:
    """UCI Adult encoded for a classifier: features, outcome (1 = >50K) and protected group (1 = Male)."""

    x_train: Float[Tensor, "n features"]
    y_train: Int[Tensor, " n"]
    group_train: Int[Tensor, " n"]
    x_test: Float[Tensor, "m features"]
    y_test: Int[Tensor, " m"]
    group_test: Int[Tensor, " m"]
    feature_names: list[str]

    def describe(self) -> str:
        return (
            f"UCI Adult, {len(self.y_train):,} train / {len(self.y_test):,} test rows (fixed split), "
            f"{len(self.feature_names)} features; outcome >50K "
            f"({float(self.y_train.float().mean()):.1%} of train); protected attribute sex (Male privileged, "
            f"{float(self.group_train.float().mean()):.1%} of train)"
        )


def load_adult(path: str | os.PathLike[str], test_fraction: float = 0.2, seed: int = 0) -> Adult:
    """Read ``adult.data`` (comma-separated with a header line) and encode it with a fixed train/test split."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Adult data at {path}")
    with path.open(newline="") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f, skipinitialspace=True) if r and any(c.strip() for c in r)]
    header, body = rows[0], rows[1:]
    need = (*ADULT_NUMERIC, *ADULT_CATEGORICAL, "Salary")
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(missing)} (it has {', '.join(header)})")
    bad = [i for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: {len(bad)} row(s) do not have {len(header)} fields (first: data row {bad[0] + 1})")
    col = {name: [r[header.index(name)] for r in body] for name in need}
    y = np.array([s.rstrip(".") == ">50K" for s in col["Salary"]], dtype=np.int64)
    group = np.array([s == "Male" for s in col["sex"]], dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(body))
    n_test = round(test_fraction * len(body))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    blocks, names = [], []
    for name in ADULT_NUMERIC:
        v = np.array(col[name], dtype=np.float64)
        mu, sd = v[train].mean(), v[train].std()
        blocks.append(((v - mu) / (sd if sd > 0 else 1.0))[:, None])
        names.append(name)
    for name in ADULT_CATEGORICAL:
        v = np.array(col[name])
        cats = sorted(set(v[train].tolist()))
        blocks.append(np.stack([v == c for c in cats], 1).astype(np.float64))
        names += [f"{name}={c}" for c in cats]
    X = torch.from_numpy(np.concatenate(blocks, 1).astype(np.float32))
    t = lambda a: torch.from_numpy(a)
    return Adult(X[train], t(y[train]), t(group[train]), X[test], t(y[test]), t(group[test]), names)
