"""Image metrics: the pure metric functions on hand-made inputs, and the cached classifier
on synthetic "digits" (class k = a bright square at a position that depends on k)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gan_cli import image_metrics as im
from gan_cli.image_metrics import ImageMetrics, class_coverage, classifier_score, \
    feature_statistics, frechet_distance, load_or_train_classifier, train_classifier


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions gain little from a second thread and stall when other work holds
    a core: one thread keeps this file's training to seconds on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as m:  # the blobs need no minimum of minibatches
        m.setattr(im, "MIN_STEPS", 0)
        yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- synthetic data
def blobs(n: int, seed: int, classes: list[int] | None = None, size: int = 16):
    """n noisy (1, size, size) images in [-1, 1]: class k has a bright 4x4 square in
    row k // 5, column k % 5 of a 2 x 5 grid. Returns (images, labels)."""
    g = torch.Generator().manual_seed(seed)
    choices = torch.tensor(classes if classes is not None else range(10))
    labels = choices[torch.randint(len(choices), (n,), generator=g)]  # (n,)
    images = -1 + 0.3 * torch.randn(n, 1, size, size, generator=g)
    for i, k in enumerate(labels.tolist()):
        r, c = 2 + 7 * (k // 5), 1 + 3 * (k % 5)
        images[i, 0, r:r + 4, c:c + 4] += 2
    return images.clamp(-1, 1), labels


@dataclass
class Blobs:
    """A stand-in for the MNIST data object: what image_metrics relies on, nothing more."""
    root: Path
    tag: str = "a"  # changes the fingerprint, as new data files would
    shape = (1, 16, 16)
    n_classes = 10
    device = torch.device("cpu")

    def fingerprint(self) -> str:
        return f"blobs-{self.tag}"

    def full_train_split(self):
        return blobs(2000, seed=1)

    def test_split(self):
        return blobs(500, seed=2)


class FewBlobs(Blobs):
    def full_train_split(self):  # 3 minibatches an epoch: for tests that train repeatedly
        return blobs(300, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The classifier trained once, through the real cache path, with what it logged."""
    data = Blobs(tmp_path_factory.mktemp("data"))
    logs = []
    rng_before = torch.get_rng_state()
    classifier, info = load_or_train_classifier(data, "cpu", log=logs.append)
    return SimpleNamespace(data=data, classifier=classifier, info=info, logs=logs,
                           rng_before=rng_before, rng_after=torch.get_rng_state())


def weights_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.state_dict().values()]


@pytest.fixture
def no_training(monkeypatch, trained):
    """Replace training with a counter that hands back the fixture's classifier."""
    calls = []

    def fake_train(data, device, log=print, **kw):
        calls.append(data.fingerprint())
        return trained.classifier, dict(trained.info, fingerprint=data.fingerprint())

    monkeypatch.setattr(im, "train_classifier", fake_train)
    return calls


# ---------------------------------------------------------------- classifier_score
def test_classifier_score_of_confident_even_classes_is_the_number_of_classes():
    probs = torch.eye(10).repeat(50, 1)  # 500 one-hot rows, 50 per class
    assert classifier_score(probs) == pytest.approx(10.0, abs=1e-5)


def test_classifier_score_of_one_class_or_of_unsure_images_is_one():
    assert classifier_score(torch.eye(10)[[3] * 200]) == pytest.approx(1.0, abs=1e-9)
    assert classifier_score(torch.full((200, 10), 0.1)) == pytest.approx(1.0, abs=1e-9)


def test_classifier_score_of_a_hand_computed_two_class_case():
    # p(y) = (0.75, 0.25); KL of row 1 = log(4/3), of row 2 = 0.5 log(2/3) + 0.5 log 2
    # = 0.5 log(4/3); the mean is 0.75 log(4/3)
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert classifier_score(probs) == pytest.approx((4 / 3) ** 0.75, rel=1e-9)


# ---------------------------------------------------------------- Fréchet distance
def test_fd_of_identical_feature_sets_is_zero():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2000, 32, generator=g) @ torch.randn(32, 32, generator=g)  # correlated
    mu, cov = feature_statistics(feats)
    assert frechet_distance(mu, cov, mu.clone(), cov.clone()) < 1e-6 * cov.trace().item()
    # singular covariances (fewer samples than features, dead features) too
    few = torch.cat([torch.randn(20, 16, generator=g), torch.zeros(20, 16)], dim=1)
    mu, cov = feature_statistics(few)
    assert frechet_distance(mu, cov, mu, cov) < 1e-6 * cov.trace().item()


def test_fd_between_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([3.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    # ||dmu||^2 = 9 + 0 + 4; sum (s1 + s2 - 2 sqrt(s1 s2)) = (1+9-6) + (4+1-4) + 0 = 5
    expected = 13.0 + 5.0
    fd = frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2))
    assert fd == pytest.approx(expected, abs=1e-6)
    # rotating both Gaussians by the same orthogonal matrix changes nothing
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64))
    rot = frechet_distance(q @ mu1.double(), q @ torch.diag(var1).double() @ q.T,
                           q @ mu2.double(), q @ torch.diag(var2).double() @ q.T)
    assert rot == pytest.approx(expected, abs=1e-6)


def test_fd_is_symmetric_and_matches_the_eigenvalues_of_s1_s2():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g)
    b = 0.5 + torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g)
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert fd == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    # the textbook form: Tr (S1 S2)^(1/2) = sum of sqrt of the (real, >= 0) eigenvalues of S1 S2
    tr_sqrt = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum()
    textbook = ((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt
    assert fd == pytest.approx(textbook.item(), rel=1e-9)
    assert fd > 1.0


def test_fd_of_non_finite_features_is_nan():
    mu, cov = feature_statistics(torch.randn(50, 4))
    assert math.isnan(frechet_distance(mu * math.nan, cov, mu, cov))


# ---------------------------------------------------------------- coverage
def test_a_one_class_set_covers_one_class():
    covered, kl, hist = class_coverage(torch.eye(10)[[3] * 500])
    assert covered == 1
    assert kl == pytest.approx(math.log(10), abs=1e-12)
    assert hist == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_a_balanced_set_covers_every_class():
    covered, kl, hist = class_coverage(torch.eye(10).repeat(30, 1))
    assert covered == 10
    assert kl == pytest.approx(0.0, abs=1e-12)
    assert hist == pytest.approx([0.1] * 10)


def test_unconfident_images_count_in_the_histogram_but_do_not_cover():
    sure = torch.eye(10)[[0] * 500]  # class 0 with p = 1
    unsure = torch.full((500, 10), 0.15 / 9)
    unsure[:, 1] = 0.85  # class 1, but below the 0.9 confidence
    covered, kl, hist = class_coverage(torch.cat([sure, unsure]))
    assert covered == 1
    assert hist[:2] == [0.5, 0.5]
    assert kl == pytest.approx(math.log(5), abs=1e-12)  # 2 of 10 classes, evenly
    assert class_coverage(unsure)[0] == 0  # no confident image: nothing covered


def test_a_class_needs_two_percent_of_the_confident_images():
    def covered(n_rare: int) -> int:  # of 1000 confident images, n_rare in class 1
        return class_coverage(torch.eye(10)[[0] * (1000 - n_rare) + [1] * n_rare])[0]
    assert covered(15) == 1  # 1.5 %
    assert covered(25) == 2  # 2.5 %
    # unconfident images do not dilute the share: 25 of 1000 confident, plus 1000 unsure
    unsure = torch.full((1000, 10), 0.1)
    probs = torch.cat([torch.eye(10)[[0] * 975 + [1] * 25], unsure])
    assert class_coverage(probs)[0] == 2


# ---------------------------------------------------------------- the classifier and its cache
def test_the_classifier_learns_the_synthetic_digits_and_is_cached(trained):
    assert trained.info["test_accuracy"] >= 0.9
    assert trained.info["fingerprint"] == "blobs-a"
    assert trained.info["train_images"] == 2000 and trained.info["steps"] == im.EPOCHS * 16
    path = trained.data.root / f"classifier_blobs-a_{im.ARCH_VERSION}.pt"
    assert path.is_file()
    assert "training on 2000 real images" in trained.logs[0]
    assert trained.logs[-1].startswith("classifier: test accuracy ")
    assert f"cached in {path}" in trained.logs[-1]
    assert not trained.classifier.training
    assert not any(p.requires_grad for p in trained.classifier.parameters())
    print(trained.logs[-1])


def test_training_leaves_the_global_rng_alone_and_is_deterministic(trained):
    assert torch.equal(trained.rng_before, trained.rng_after)
    data = FewBlobs(trained.data.root)
    rng = torch.get_rng_state()
    first, info = train_classifier(data, "cpu", epochs=1, log=lambda s: None)
    assert torch.equal(rng, torch.get_rng_state())
    again, _ = train_classifier(data, "cpu", epochs=1, log=lambda s: None)
    assert all(torch.equal(a, b) for a, b in zip(weights_of(again), weights_of(first)))
    other, _ = train_classifier(data, "cpu", epochs=1, seed=1, log=lambda s: None)
    assert not torch.equal(weights_of(other)[0], weights_of(first)[0])
    assert info["steps"] == 3 and info["train_images"] == 300  # 1 epoch of 128-image batches


def test_the_cache_is_reused(trained, monkeypatch):
    def fail(*args, **kw):
        raise AssertionError("trained again despite the cache")
    monkeypatch.setattr(im, "train_classifier", fail)
    logs = []
    rng = torch.get_rng_state()
    classifier, info = load_or_train_classifier(trained.data, "cpu", log=logs.append)
    assert torch.equal(rng, torch.get_rng_state())  # building the network drew nothing
    assert info == trained.info
    assert all(torch.equal(a, b) for a, b in
               zip(weights_of(classifier), weights_of(trained.classifier)))
    assert not classifier.training and not next(classifier.parameters()).requires_grad
    accuracy = 100 * trained.info["test_accuracy"]
    assert logs == [f"classifier: test accuracy {accuracy:.1f} % "
                    f"(loaded from {im.cache_path(trained.data)})"]


def test_new_data_files_train_a_new_classifier(trained, no_training):
    data = Blobs(trained.data.root, tag="b")
    _, info = load_or_train_classifier(data, "cpu", log=lambda s: None)
    assert no_training == ["blobs-b"] and info["fingerprint"] == "blobs-b"
    assert im.cache_path(data).is_file() and im.cache_path(trained.data).is_file()
    load_or_train_classifier(data, "cpu", log=lambda s: None)
    assert no_training == ["blobs-b"]  # now cached


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other network"])
def test_an_unreadable_cache_is_replaced_with_a_warning(trained, no_training, tmp_path, damage):
    data = Blobs(tmp_path)
    path = im.cache_path(data)
    good = im.cache_path(trained.data).read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(good[:len(good) // 2])
    else:
        torch.save({"weights": {"w": torch.zeros(3)}, "info": {"test_accuracy": 0.5}}, path)
    logs = []
    load_or_train_classifier(data, "cpu", log=logs.append)
    assert no_training == ["blobs-a"]
    assert logs[0].startswith(f"warning: {path}: unreadable classifier cache (")
    assert logs[0].endswith("; retraining")
    logs.clear()
    load_or_train_classifier(data, "cpu", log=logs.append)  # the replacement is readable
    assert no_training == ["blobs-a"] and "loaded from" in logs[0]


def test_an_unwritable_data_folder_keeps_the_classifier_in_memory(trained, no_training,
                                                                  tmp_path, monkeypatch):
    def refuse(path, write):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(im, "atomic_write", refuse)
    data, logs = Blobs(tmp_path), []
    classifier, _ = load_or_train_classifier(data, "cpu", log=logs.append)
    assert classifier is trained.classifier
    assert logs[0] == (f"warning: {im.cache_path(data)}: cannot cache the classifier "
                       "(Permission denied); it will be retrained next time")
    assert logs[1].endswith("; not cached)")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- ImageMetrics
@pytest.fixture(scope="module")
def metrics(trained):
    return ImageMetrics(trained.classifier, trained.data, chunk=128)


def test_the_real_test_images_match_the_reference(trained, metrics):
    test_images, _ = trained.data.test_split()
    m = metrics(test_images)
    assert m["fd"] < 1e-6 * metrics.cov.trace().item()
    assert m["classes_covered"] == 10
    assert m["classifier_score"] > 8  # ~10 classes, each image confidently one
    assert m["class_kl"] < 0.05 and sum(m["class_histogram"]) == pytest.approx(1.0)
    assert set(m) == {"classifier_score", "fd", "classes_covered", "class_kl",
                      "class_histogram"}
    # the reference: real training images in G's place, near the test images but not equal
    ref, (train_images, labels) = metrics.reference, trained.data.full_train_split()
    assert ref == metrics(train_images[:10_000], labels[:10_000])
    # with their labels, real images' class fidelity is the classifier's per-class accuracy
    assert ref["class_fidelity"] > 0.9 and len(ref["fidelity_by_class"]) == 10
    assert 0 < ref["fd"] < 0.1 * metrics.cov.trace().item() and ref["classes_covered"] == 10
    # chunking changes nothing but memory
    other = ImageMetrics(trained.classifier, trained.data, chunk=1000)(test_images)
    assert other["fd"] < 1e-6 * metrics.cov.trace().item()
    assert other["classifier_score"] == pytest.approx(m["classifier_score"], rel=1e-5)


def test_images_of_one_class_cover_one_class(metrics):
    sevens, _ = blobs(300, seed=3, classes=[7])
    m = metrics(sevens)
    assert m["classes_covered"] == 1
    assert m["class_histogram"][7] > 0.95
    assert m["class_kl"] > math.log(10) - 0.2
    assert m["classifier_score"] < 1.5
    fresh, _ = blobs(300, seed=4)  # new real images: far closer than one class
    assert 0 < metrics(fresh)["fd"] < m["fd"] / 5


def test_too_few_images_is_an_error(metrics):
    with pytest.raises(ValueError, match="at least 2 images"):
        metrics(torch.zeros(1, 1, 16, 16))
