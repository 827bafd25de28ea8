"""SharedBatchLoader: batches in order from reused shared-memory buffers, errors and dead workers reported."""
import os
import signal
import threading

import numpy as np
import pytest

from gluon_resnest.data.shared_batches import SharedBatchLoader


class Keyed(object):
    """Sample ``key`` is an array filled with ``key`` (and its index); its label is ``key % 3``."""

    def __init__(self, fail=None, exit_on=None, unpicklable=None, two_args=None):
        self.fail, self.exit_on, self.unpicklable, self.two_args = fail, exit_on, unpicklable, two_args

    def write(self, key, out):
        if key == self.fail:
            raise ValueError('sample %d is broken' % key)
        if key == self.exit_on:
            os._exit(3)
        if key == self.unpicklable:
            raise _Unpicklable()
        if key == self.two_args:
            raise _TwoArgs('sample', key)
        out[...] = key
        out.reshape(-1)[0] = -key
        return key % 3


class _Unpicklable(Exception):
    def __init__(self):
        super().__init__('holds a lock')
        self.lock = threading.Lock()


class _TwoArgs(Exception):
    # Pickles, but unpickling calls _TwoArgs(message) with one argument and fails.
    def __init__(self, what, key):
        super().__init__('%s %d fails' % (what, key))


def _expected(keys, batch_size, shape):
    batches = []
    for start in range(0, len(keys) - batch_size + 1, batch_size):
        data = np.empty((batch_size,) + shape, dtype=np.float32)
        for i, key in enumerate(keys[start:start + batch_size]):
            data[i] = key
            data[i].reshape(-1)[0] = -key
        batches.append((data, np.array(keys[start:start + batch_size]) % 3))
    return batches


@pytest.mark.parametrize('workers', [0, 1, 3])
@pytest.mark.parametrize('batch_size', [4, 10])  # with 3 workers: chunks of 2 and 2; of 4, 4 and 2
def test_batches_in_sampler_order_whatever_the_workers(workers, batch_size):
    keys = list(np.random.RandomState(0).permutation(50 if batch_size == 4 else 95))
    loader = SharedBatchLoader(Keyed(), keys, batch_size, (2, 3, 3), num_workers=workers)
    assert len(loader) == (12 if batch_size == 4 else 9)
    for _ in range(2):  # a second epoch reuses the buffers
        # Kept until the end: a batch handed out must not change when its buffer makes later batches.
        got = [(d, l) for d, l in loader]
        expected = _expected(keys, batch_size, (2, 3, 3))
        assert len(got) == len(expected) == len(loader)  # the last keys do not fill a batch
        for (data, label), (want, want_label) in zip(got, expected):
            assert data.dtype == np.float32 and data.shape == (batch_size, 2, 3, 3)
            np.testing.assert_array_equal(data.asnumpy(), want)
            np.testing.assert_array_equal(label.asnumpy(), want_label)
    loader.close()


@pytest.mark.parametrize('batch_size, workers, buffers', [(64, 8, 3), (64, 1, 3), (4, 8, 4), (3, 8, 6)])
def test_buffers_do_not_grow_with_the_workers(batch_size, workers, buffers):
    loader = SharedBatchLoader(Keyed(), [], batch_size, (3,), num_workers=workers)
    # Three batches, or at least two chunks per worker where a batch has fewer chunks than that.
    assert loader._buffers.shape == (buffers, batch_size, 3)  # pylint: disable=protected-access
    assert list(loader) == []
    loader.close()


def test_an_epoch_left_early_does_not_leak_into_the_next():
    keys = list(range(40))
    loader = SharedBatchLoader(Keyed(), keys, 2, (5,), num_workers=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    got = [d.asnumpy()[:, 1] for d, _ in loader]
    np.testing.assert_array_equal(np.concatenate(got), np.arange(40, dtype=np.float32))
    loader.close()


@pytest.mark.parametrize('workers', [0, 2])
def test_a_failing_sample_raises_its_error_in_the_training_process(workers):
    loader = SharedBatchLoader(Keyed(fail=9), list(range(16)), 4, (3,), num_workers=workers)
    seen = []
    with pytest.raises(ValueError, match='^sample 9 is broken$'):
        for data, _ in loader:
            seen.append(data)
    assert len(seen) == 2  # the batches before the one holding key 9
    loader.close()


@pytest.mark.parametrize('fault, text', [('unpicklable', '_Unpicklable: holds a lock'),
                                         ('two_args', '_TwoArgs: sample 2 fails')])
def test_an_error_that_does_not_pickle_arrives_as_its_text(fault, text):
    loader = SharedBatchLoader(Keyed(**{fault: 2}), list(range(8)), 4, (3,), num_workers=1)
    with pytest.raises(RuntimeError, match='^%s$' % text):
        list(loader)
    loader.close()


def test_a_worker_that_dies_is_reported():
    loader = SharedBatchLoader(Keyed(exit_on=5), list(range(16)), 4, (3,), num_workers=1)
    with pytest.raises(RuntimeError, match=r'^data loader process \d+ exited with code 3 while making batches$'):
        list(loader)


def test_workers_leave_ctrl_c_to_the_training_process():
    loader = SharedBatchLoader(Keyed(), list(range(8)), 4, (3,), num_workers=1)
    worker = loader._workers[0]  # pylint: disable=protected-access
    assert len(list(loader)) == 2  # the worker is up and running its loop
    os.kill(worker.pid, signal.SIGINT)
    assert [l.asnumpy().tolist() for _, l in loader] == [[0, 1, 2, 0], [1, 2, 0, 1]]
    assert worker.is_alive()
    loader.close()
    assert not worker.is_alive() and worker.exitcode == 0


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match='^batch size must be >= 1, got 0$'):
        SharedBatchLoader(Keyed(), [1], 0, (3,))
    with pytest.raises(ValueError, match='^number of data workers must be >= 0, got -1$'):
        SharedBatchLoader(Keyed(), [1], 1, (3,), num_workers=-1)


@pytest.mark.parametrize('workers', [0, 1, 3])
def test_keep_mode_hands_out_the_last_partial_batch(workers):
    keys = list(np.random.RandomState(1).permutation(23))  # batches of 5: 4 whole and one of 3
    loader = SharedBatchLoader(Keyed(), keys, 5, (2, 3), num_workers=workers, last_batch='keep', dtype='int32')
    assert len(loader) == 5
    for _ in range(2):
        got = [(d.asnumpy(), l.asnumpy()) for d, l in loader]
        assert [len(d) for d, _ in got] == [5, 5, 5, 5, 3]
        want = _expected(keys + [0, 0], 5, (2, 3))  # padded to whole batches; the padding is cut below
        for (data, label), (want_data, want_label) in zip(got, want):
            assert data.dtype == np.int32
            np.testing.assert_array_equal(data, want_data[:len(data)])
            np.testing.assert_array_equal(label, want_label[:len(label)])
    loader.close()


def test_last_batch_mode_is_checked():
    with pytest.raises(ValueError, match="last_batch must be 'discard' or 'keep'"):
        SharedBatchLoader(Keyed(), [1], 1, (3,), last_batch='rollover')
