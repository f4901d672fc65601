import os

import numpy as np
import pytest

import kcompress as kc
from kcompress.data import loading

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _valid(n=20, shape=(28, 28)):
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        y_train=rng.integers(0, 10, n).astype(np.uint8),
        x_test=rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8),
        y_test=rng.integers(0, 10, n // 2).astype(np.uint8),
    )


class TestRealMnist:
    def test_shapes_dtypes_and_range(self, mnist):
        assert mnist.x_train.shape == (60000, 28, 28, 1)
        assert mnist.x_test.shape == (10000, 28, 28, 1)
        assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
        assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
        assert mnist.input_shape == (28, 28, 1) and mnist.num_classes == 10
        # Mean pixel of the official training set is 33.318 / 255.
        assert abs(float(mnist.x_train.mean()) * 255 - 33.318) < 0.01

    def test_label_counts_match_the_official_test_set(self, mnist):
        assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS

    def test_fashion_mnist_loads(self):
        ds = kc.data.load("fashion_mnist")
        assert np.bincount(ds.y_test).tolist() == [1000] * 10
        assert ds.source.endswith("fashion_mnist.npz")

    def test_representative_is_seeded_and_shaped(self, mnist):
        a, b = mnist.representative(50, seed=3), mnist.representative(50, seed=3)
        assert a.shape == (50, 28, 28, 1) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, mnist.representative(50, seed=4))

    @pytest.mark.parametrize("n, error", [(0, ValueError), (-1, ValueError), (60001, ValueError), (2.5, TypeError),
                                          (True, TypeError)])
    def test_representative_rejects_bad_n(self, mnist, n, error):
        with pytest.raises(error, match=r"n must be an int in \[1, 60000\]"):
            mnist.representative(n)

    def test_tf_data_pipelines(self, mnist_small):
        x, y = next(iter(mnist_small.train(batch_size=32, seed=1)))
        assert tuple(x.shape) == (32, 28, 28, 1) and tuple(y.shape) == (32,)
        batches = list(mnist_small.test(batch_size=300))
        assert [len(b[1]) for b in batches] == [300, 300, 300, 100]
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), mnist_small.y_test)
        with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
            mnist_small.train(batch_size=0)

    def test_take_rejects_bad_sizes(self, mnist):
        with pytest.raises(ValueError, match=r"train must be an int in \[1, 60000\] or None, got 0"):
            mnist.take(train=0)


class TestSources:
    def test_data_dir_wins_over_env(self, tmp_path, monkeypatch):
        _write(tmp_path / "mnist.npz", **_valid())
        ds = kc.data.load("mnist", data_dir=tmp_path)
        assert len(ds.x_train) == 20 and ds.source == str(tmp_path / "mnist.npz")

    def test_env_var_is_used(self, tmp_path, monkeypatch):
        _write(tmp_path / "cifar10.npz", **_valid(shape=(32, 32, 3)))
        monkeypatch.setenv("KCOMPRESS_DATA_DIR", str(tmp_path))
        ds = kc.data.load("cifar10", use_tfds=False)
        assert ds.input_shape == (32, 32, 3)

    def test_labels_of_shape_n_by_1_are_flattened(self, tmp_path):
        arrays = _valid(shape=(32, 32, 3))
        arrays["y_train"] = arrays["y_train"][:, None]
        _write(tmp_path / "svhn_cropped.npz", **arrays)
        assert kc.data.load("svhn_cropped", data_dir=tmp_path).y_train.shape == (20,)

    def test_unknown_name(self):
        with pytest.raises(ValueError, match=r"name must be one of \['cifar10', .*got 'imagenet'"):
            kc.data.load("imagenet")

    def test_missing_everywhere_lists_what_was_tried(self, tmp_path, monkeypatch):
        monkeypatch.setenv("KCOMPRESS_DATA_DIR", str(tmp_path))

        def offline(name):
            raise ConnectionError("no network")

        monkeypatch.setattr(loading, "_read_tfds", offline)
        with pytest.raises(kc.data.DataNotFoundError) as err:
            kc.data.load("cifar100")
        msg = str(err.value)
        assert str(tmp_path / "cifar100.npz") in msg
        assert "tensorflow-datasets 'cifar100': ConnectionError: no network" in msg
        assert "Fix:" in msg and "KCOMPRESS_DATA_DIR" in msg

    def test_data_dir_that_is_not_a_folder(self, tmp_path):
        with pytest.raises(kc.data.DataNotFoundError, match="is not a folder"):
            kc.data.load("mnist", data_dir=tmp_path / "nope")


class TestBadArchives:
    def test_corrupt_file(self, tmp_path):
        (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
        with pytest.raises(ValueError, match="not a readable .npz archive"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_missing_keys(self, tmp_path):
        arrays = _valid()
        del arrays["y_test"]
        _write(tmp_path / "mnist.npz", **arrays)
        with pytest.raises(ValueError, match=r"lacks the keys \['y_test'\]"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_wrong_image_shape(self, tmp_path):
        _write(tmp_path / "mnist.npz", **_valid(shape=(27, 28)))
        with pytest.raises(ValueError, match=r"x_train has shape \(20, 27, 28, 1\); expected \(n, 28, 28, 1\)"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_label_count_mismatch(self, tmp_path):
        arrays = _valid()
        arrays["y_train"] = arrays["y_train"][:-1]
        _write(tmp_path / "mnist.npz", **arrays)
        with pytest.raises(ValueError, match=r"y_train has shape \(19,\); expected \(20,\)"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_labels_out_of_range(self, tmp_path):
        arrays = _valid()
        arrays["y_test"][0] = 12
        _write(tmp_path / "mnist.npz", **arrays)
        with pytest.raises(ValueError, match=r"labels in \[\d+, 12\]; expected \[0, 9\]"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_float_images_outside_unit_range(self, tmp_path):
        arrays = _valid()
        arrays["x_train"] = arrays["x_train"].astype(np.float32)
        _write(tmp_path / "mnist.npz", **arrays)
        with pytest.raises(ValueError, match=r"float x_train must lie in \[0, 1\]"):
            kc.data.load("mnist", data_dir=tmp_path)

    def test_nothing_is_left_behind(self, tmp_path):
        (tmp_path / "mnist.npz").write_bytes(b"garbage")
        with pytest.raises(ValueError):
            kc.data.load("mnist", data_dir=tmp_path)
        assert os.listdir(tmp_path) == ["mnist.npz"]
