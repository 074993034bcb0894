"""IDX image sets (data=mnist / fashion_mnist): reading, checking, sampling and downloading,
on small synthetic files written here; the network is never used (downloads go to fakes
and to a local http.server)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from gan_cli.errors import UserError
from gan_cli.data import mnist
from gan_cli.data.mnist import FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, \
    IDXImages, download_files, write_idx

N_TRAIN, N_TEST = 300, 50


def make_split(n: int, seed: int, size: int = 28, n_classes: int = 10):
    """(n, size, size) uint8 images and (n,) labels. Pixel (0, 0) is 20 * label, so an
    image tells its label; pixel (0, 1) is 0 and (0, 2) is 255 in every image."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = (np.arange(n) % n_classes).astype(np.uint8)
    images[:, 0, 0] = labels * 20
    images[:, 0, 1], images[:, 0, 2] = 0, 255
    return images, labels


def write_set(folder: Path, gz: bool = False, n_classes: int = 10) -> dict[str, np.ndarray]:
    """The four files (gzipped if gz) in folder; returns the arrays written, by file name."""
    arrays = dict(zip(FILES, make_split(N_TRAIN, 0, n_classes=n_classes)
                      + make_split(N_TEST, 1, n_classes=n_classes)))
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


def scaled(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 127.5 - 1


# ---------------------------------------------------------------- reading
@pytest.mark.parametrize("gz", [False, True])
def test_reads_raw_and_gzipped_files(tmp_path, gz):
    arrays = write_set(tmp_path, gz=gz)
    data = IDXImages(root=str(tmp_path), download=False)
    assert data.shape == (1, 28, 28) and data.dim == 784 and data.n_classes == 10
    assert data.images.shape == (N_TRAIN, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and data.device == torch.device("cpu")
    assert torch.equal(data.images, scaled(arrays[TRAIN_IMAGES]))
    assert data.labels.tolist() == arrays[TRAIN_LABELS].tolist()
    # byte 0 -> -1 and 255 -> 1 exactly
    assert (data.images[:, 0, 0, 1] == -1.0).all() and (data.images[:, 0, 0, 2] == 1.0).all()
    assert data.images.min() == -1.0 and data.images.max() == 1.0
    test_x, test_y = data.test_split()
    assert torch.equal(test_x, scaled(arrays[TEST_IMAGES]))
    assert test_y.tolist() == arrays[TEST_LABELS].tolist()
    assert data.root == tmp_path
    assert data.describe() == f"MNIST: {N_TRAIN} training images 1x28x28 from {tmp_path}"


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_reads_torchvisions_layout(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    arrays = write_set(raw, gz=True)
    # torchvision leaves the extracted file beside the .gz: one of them changed shows which
    # is read (the uncompressed one, being faster)
    write_idx(raw / TRAIN_LABELS, (arrays[TRAIN_LABELS] + 1) % 10)
    data = IDXImages(name=name, root=str(tmp_path), download=False)
    assert data.root == raw
    assert data.labels.tolist() == ((arrays[TRAIN_LABELS] + 1) % 10).tolist()
    assert torch.equal(data.images, scaled(arrays[TRAIN_IMAGES]))


def test_default_root_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    write_set(tmp_path / "gan_cli" / "fashion_mnist")
    data = IDXImages(name="fashion_mnist", download=False)
    assert data.root == tmp_path / "gan_cli" / "fashion_mnist"
    assert data.describe().startswith("Fashion-MNIST: 300 training images")


def test_unknown_name(tmp_path):
    with pytest.raises(UserError, match="data.name=emnist: unknown; allowed: mnist, fashion_mnist"):
        IDXImages(name="emnist", root=str(tmp_path))


# ---------------------------------------------------------------- bad files
def idx_bytes(array: np.ndarray) -> bytes:
    a = np.ascontiguousarray(array, dtype=np.uint8)
    return (0x800 + a.ndim).to_bytes(4, "big") + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def corrupt_gzip(array: np.ndarray) -> bytes:
    data = bytearray(gzip.compress(idx_bytes(array)))
    data[len(data) // 2: len(data) // 2 + 16] = b"\xff" * 16  # the deflate stream, not the header
    return bytes(data)


IMAGES, LABELS = make_split(N_TRAIN, 0)
BAD_FILES = {  # (file, its contents, what the message says)
    "wrong magic": (TRAIN_IMAGES, b"\x00\x00\x0d\x03" + idx_bytes(IMAGES)[4:],
                    r"not an unsigned-byte idx3 file \(magic number 0x00000d03"),
    "text file": (TRAIN_LABELS, b"hello world\n", "not an unsigned-byte idx1 file"),
    "empty": (TEST_LABELS, b"", r"not an unsigned-byte idx1 file \(empty"),
    "truncated": (TRAIN_IMAGES, idx_bytes(IMAGES)[:-100], "truncated"),
    "truncated header": (TRAIN_IMAGES, idx_bytes(IMAGES)[:10], "truncated"),
    "extra bytes": (TRAIN_LABELS, idx_bytes(LABELS) + b"\x00", "longer than its header says"),
    "count mismatch": (TRAIN_LABELS, idx_bytes(LABELS[:-1]),
                       f"{N_TRAIN - 1} labels for the {N_TRAIN} images"),
    "2-D images": (TRAIN_IMAGES, idx_bytes(IMAGES.reshape(N_TRAIN, -1)),
                   r"not an unsigned-byte idx3 file \(magic number 0x00000802"),
    "2-D labels": (TEST_LABELS, idx_bytes(LABELS[:N_TEST].reshape(-1, 1)), "idx1"),
    "test size differs": (TEST_IMAGES, idx_bytes(make_split(N_TEST, 1, size=20)[0]),
                          "images are 20x20 but the training images"),
    "no images": (TRAIN_IMAGES, idx_bytes(np.zeros((N_TRAIN, 0, 28))), "holds no images"),
    "label out of range": (TEST_LABELS, idx_bytes(np.full(N_TEST, 10)),
                           r"label 10 out of range \(labels are 0..9\)"),
    "corrupt gzip": (TRAIN_IMAGES + ".gz", corrupt_gzip(IMAGES), "corrupt gzip stream"),
    "truncated gzip": (TRAIN_LABELS + ".gz", gzip.compress(idx_bytes(LABELS))[:-30],
                       "corrupt gzip stream"),
    ".gz that is no gzip": (TEST_IMAGES + ".gz", b"PK\x03\x04 a zip file", "corrupt gzip"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_a_one_line_user_error_naming_it(tmp_path, case):
    write_set(tmp_path)
    name, contents, message = BAD_FILES[case]
    (tmp_path / name.removesuffix(".gz")).unlink()
    (tmp_path / name).write_bytes(contents)
    with pytest.raises(UserError, match=message) as e:
        IDXImages(root=str(tmp_path), download=False)
    assert str(e.value).startswith(str(tmp_path / name) + ": ")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- classes and limit
def test_classes_and_limit_select_the_training_images(tmp_path):
    arrays = write_set(tmp_path)
    data = IDXImages(root=str(tmp_path), download=False, classes=[3, 1])
    keep = np.isin(arrays[TRAIN_LABELS], [1, 3])
    assert set(data.labels.tolist()) == {1, 3} and len(data.labels) == keep.sum() == 60
    assert torch.equal(data.images, scaled(arrays[TRAIN_IMAGES][keep]))
    assert "(classes 1,3)" in data.describe()

    data = IDXImages(root=str(tmp_path), download=False, classes=[1, 3], limit=25)
    assert len(data.images) == 25 and set(data.labels.tolist()) <= {1, 3}
    assert torch.equal(data.images, scaled(arrays[TRAIN_IMAGES][keep][:25]))
    assert "(classes 1,3; first 25)" in data.describe()
    # every image drawn is one of the selected ones: its pixel (0, 0) says its label
    x, y = data.sample_labelled(500, generator=torch.Generator().manual_seed(0))
    assert set(y.tolist()) == {1, 3}
    assert torch.equal(x[:, 0, 0, 0], y * 20 / 127.5 - 1)
    full_x, full_y = data.full_train_split()
    assert len(full_x) == N_TRAIN and full_y.tolist() == arrays[TRAIN_LABELS].tolist()

    data = IDXImages(root=str(tmp_path), download=False, limit=10_000)  # more than there are
    assert len(data.images) == N_TRAIN


@pytest.mark.parametrize("options, message", [
    ({"classes": [2, 10]}, r"data.classes=\[2, 10\]: give one or more labels in 0..9"),
    ({"classes": [-1]}, r"data.classes=\[-1\]"),
    ({"classes": []}, r"data.classes=\[\]"),
    ({"limit": 0}, "data.limit=0: must be a positive number"),
    ({"limit": -5}, "data.limit=-5"),
])
def test_bad_classes_or_limit(tmp_path, options, message, monkeypatch):
    # checked before anything is read or downloaded
    monkeypatch.setattr(mnist, "find_files", lambda *a: pytest.fail("read the files"))
    with pytest.raises(UserError, match=message):
        IDXImages(root=str(tmp_path), **options)


def test_classes_without_images(tmp_path):
    write_set(tmp_path, n_classes=9)  # labels 0..8
    with pytest.raises(UserError, match=r"data.classes=\[9\]: no training images with these "
                                        f"labels in {tmp_path / TRAIN_LABELS}"):
        IDXImages(root=str(tmp_path), download=False, classes=[9])


# ---------------------------------------------------------------- sampling
def test_sample_batches(tmp_path):
    write_set(tmp_path)
    data = IDXImages(root=str(tmp_path), download=False)
    x = data.sample(64, generator=torch.Generator().manual_seed(1))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and x.device == data.device
    assert x.min() >= -1 and x.max() <= 1
    # each drawn image is a training image
    match = (x.flatten(1).unsqueeze(1) == data.images.flatten(1)).all(-1)  # (64, N)
    assert match.any(1).all()
    # with replacement and roughly uniform: 30,000 draws hit every one of the 300 images
    label = (data.sample(30_000)[:, 0, 0, 0] + 1) * 127.5 / 20
    assert label.round().long().bincount(minlength=10).min() > 2500  # labels 0..9, 3000 each

    again = data.sample(64, generator=torch.Generator().manual_seed(1))
    other = data.sample(64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert torch.equal(data.sample(64, generator=torch.Generator().manual_seed(1),
                                   exact_weights=True), x)


def test_sample_for_replicas(tmp_path):
    write_set(tmp_path)
    data = IDXImages(root=str(tmp_path), download=False)
    from gan_cli.replicas import RandomDraws, ReplicaRuns

    axis = ReplicaRuns([5, 6], [torch.Generator().manual_seed(s) for s in (5, 6)])
    both, labels = RandomDraws(data, noise=None, axis=axis).real(32)
    assert labels is None
    assert both.shape == (2, 32, 1, 28, 28)
    for r, seed in enumerate((5, 6)):
        assert torch.equal(both[r], data.sample(32, generator=torch.Generator().manual_seed(seed)))
    assert not torch.equal(both[0], both[1])


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_identifies_the_contents(tmp_path):
    arrays = write_set(tmp_path / "raw")
    write_set(tmp_path / "gz", gz=True)
    first = IDXImages(root=str(tmp_path / "raw"), download=False).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    assert IDXImages(root=str(tmp_path / "raw"), download=False).fingerprint() == first
    assert IDXImages(root=str(tmp_path / "gz"), download=False).fingerprint() == first
    changed = arrays[TEST_LABELS].copy()
    changed[0] = (changed[0] + 1) % 10
    write_idx(tmp_path / "raw" / TEST_LABELS, changed)
    assert IDXImages(root=str(tmp_path / "raw"), download=False).fingerprint() != first


# ---------------------------------------------------------------- downloading
def gz_files(folder: Path) -> dict[str, bytes]:
    """The four .gz files' bytes, by file name without .gz, and their MD5s."""
    write_set(folder, gz=True)
    return {name: (folder / (name + ".gz")).read_bytes() for name in FILES}


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in files.items()}


class FakeOpener:
    """urlopen stand-in: `served` maps URLs to bytes; anything else is unreachable."""

    def __init__(self, served: dict[str, bytes]):
        self.served, self.calls = served, []

    def __call__(self, url: str, timeout: float):
        self.calls.append(url)
        if url not in self.served:
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(self.served[url])


MIRRORS = ["https://down.example/mnist/", "https://up.example/mnist"]


def test_download_tries_the_next_mirror(tmp_path):
    files = gz_files(tmp_path / "source")
    opener = FakeOpener({f"https://up.example/mnist/{n}.gz": files[n] for n in FILES})
    folder = tmp_path / "data"
    download_files(folder, [TRAIN_LABELS, TEST_IMAGES], MIRRORS, md5s(files), opener)
    assert opener.calls == [f"{m.rstrip('/')}/{n}.gz" for n in (TRAIN_LABELS, TEST_IMAGES)
                            for m in MIRRORS]
    assert sorted(p.name for p in folder.iterdir()) == [TEST_IMAGES + ".gz", TRAIN_LABELS + ".gz"]
    assert (folder / (TEST_IMAGES + ".gz")).read_bytes() == files[TEST_IMAGES]


def test_checksum_mismatch_leaves_no_file(tmp_path):
    files = gz_files(tmp_path / "source")
    wrong = {name: "0" * 32 for name in FILES}
    opener = FakeOpener({f"{m.rstrip('/')}/{n}.gz": files[n] for n in FILES for m in MIRRORS})
    folder = tmp_path / "data"
    with pytest.raises(UserError, match="checksum mismatch.*the downloaded file was removed") as e:
        download_files(folder, [TRAIN_IMAGES], MIRRORS, wrong, opener)
    assert str(e.value).count("checksum mismatch") == 2  # one per mirror
    assert list(folder.iterdir()) == []  # neither the file nor a temporary file


def test_interrupted_download_leaves_no_file(tmp_path):
    class Interrupted(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 0:
                raise KeyboardInterrupt
            return super().read(10)

    folder = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        download_files(folder, [TRAIN_IMAGES], MIRRORS, {TRAIN_IMAGES: "0" * 32},
                       lambda url, timeout: Interrupted(b"x" * 100))
    assert list(folder.iterdir()) == []


def test_all_mirrors_failing_names_the_missing_files_and_folder(tmp_path):
    write_set(tmp_path)
    (tmp_path / TRAIN_IMAGES).unlink()
    (tmp_path / TEST_LABELS).unlink()
    opener = FakeOpener({})
    with pytest.raises(UserError) as e:
        download_files(tmp_path, [TRAIN_IMAGES, TEST_LABELS], MIRRORS,
                       mnist.DATASETS["mnist"].md5, opener)
    message = str(e.value)
    assert message.startswith(f"{tmp_path}: missing {TRAIN_IMAGES}, {TEST_LABELS} (")
    assert "Name or service not known" in message and "\n" not in message
    assert f"copy them (gzipped or not) into {tmp_path}, or set data.root=" in message
    assert len(opener.calls) == 2  # stops at the first file no mirror serves


def test_download_false_does_not_try_the_network(tmp_path, monkeypatch):
    write_set(tmp_path)
    (tmp_path / TEST_IMAGES).unlink()
    monkeypatch.setattr(mnist, "download_files", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(UserError, match=f"{tmp_path}: missing {TEST_IMAGES} "
                                        r"\(data.download=false\); copy them"):
        IDXImages(root=str(tmp_path), download=False, mirrors=MIRRORS)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []  # the paths asked for, in order

    def do_GET(self):
        QuietHandler.requested.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # keeps the test output clean
        pass


@pytest.fixture
def http_mirror(tmp_path):
    """(base URL, its folder): a real HTTP server on 127.0.0.1 serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    QuietHandler.requested = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=str(served)))
    # a short poll interval: shutdown() waits for one
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def test_download_from_a_local_http_server(tmp_path, http_mirror, monkeypatch):
    url, served = http_mirror
    files = gz_files(served)
    monkeypatch.setitem(mnist.DATASETS, "mnist",
                        dataclasses.replace(mnist.DATASETS["mnist"], md5=md5s(files)))
    root = tmp_path / "cache"
    root.mkdir()
    for name in (TRAIN_IMAGES, TEST_IMAGES):  # already there: never downloaded again
        (root / name).write_bytes(gzip.decompress(files[name]))
    data = IDXImages(root=str(root), mirrors=[url + "/nothing-here/", url + "/"])
    assert QuietHandler.requested == [f"/nothing-here/{TRAIN_LABELS}.gz", f"/{TRAIN_LABELS}.gz",
                                      f"/nothing-here/{TEST_LABELS}.gz", f"/{TEST_LABELS}.gz"]
    assert (root / (TRAIN_LABELS + ".gz")).read_bytes() == files[TRAIN_LABELS]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [TRAIN_IMAGES, TEST_IMAGES, TRAIN_LABELS + ".gz", TEST_LABELS + ".gz"])
    assert data.labels.tolist() == make_split(N_TRAIN, 0)[1].tolist()

    QuietHandler.requested = []
    IDXImages(root=str(root), mirrors=[url + "/"])  # all present now: no request
    assert QuietHandler.requested == []


def test_http_404_everywhere_is_a_user_error(tmp_path, http_mirror):
    url, _ = http_mirror
    missing = ", ".join(FILES)
    with pytest.raises(UserError, match=f"{tmp_path / 'cache'}: missing {missing} .*: HTTP 404"):
        IDXImages(root=str(tmp_path / "cache"), mirrors=[url + "/"])


# ---------------------------------------------------------------- the config group
@pytest.mark.parametrize("group, name", [("mnist", "mnist"), ("fashion_mnist", "fashion_mnist")])
def test_config_group_builds_the_data(tmp_path, group, name):
    from conftest import compose_train

    write_set(tmp_path)
    cfg = compose_train([f"data={group}", f"data.root={tmp_path}", "data.classes=[0,7]",
                         "data.limit=40"])
    assert cfg.data.name == name and cfg.data.download is True
    assert all(m.startswith("http") and m.endswith("/") for m in cfg.data.mirrors)
    data = instantiate(cfg.data, device="cpu", _convert_="all")
    assert isinstance(data, IDXImages) and len(data.images) == 40
    assert set(data.labels.tolist()) == {0, 7}


@pytest.mark.slow  # a dev tool's test: imports scikit-learn (about 2 s)
def test_digits_script_writes_loadable_files(tmp_path, capsys):
    pytest.importorskip("sklearn")
    import runpy

    script = Path(__file__).parents[1] / "scripts" / "digits_to_idx.py"
    runpy.run_path(str(script), run_name="digits")["main"]([str(tmp_path), "--seed", "3"])
    assert capsys.readouterr().out.count("wrote ") == 4
    data = IDXImages(root=str(tmp_path), download=False)
    test_x, _ = data.test_split()
    assert len(data.images) + len(test_x) == 1797 and len(test_x) == round(1797 * 0.15)
    assert data.images[:, :, :4].eq(-1).all()  # the 4-pixel border is blank, as in MNIST
    assert data.images.max() == 1.0 and sorted(set(data.labels.tolist())) == list(range(10))
