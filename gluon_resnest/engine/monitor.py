"""What a user watching a weeks-long run sees: log file, progress bar, history JSON and training-curve PNG.

Only rank 0 writes files; other ranks log warnings and errors to the console.
"""
import json
import logging
import os
import sys

from gluoncv.utils import TrainingHistory

from ..progress import progress_bar
from .checkpoint import atomic_write

__all__ = ['setup_logger', 'ProgressBar', 'History']


def setup_logger(log_path=None, is_root=True):
    """The ``gluon_resnest.train`` logger: console (INFO on rank 0, WARNING elsewhere) and ``log_path``."""
    logger = logging.getLogger('gluon_resnest.train')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s')
    console = _TqdmHandler(sys.stderr)
    console.setLevel(logging.INFO if is_root else logging.WARNING)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_path and is_root:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


class _TqdmHandler(logging.StreamHandler):
    # Console lines go through tqdm.write so they print above the progress bar instead of through it.
    def emit(self, record):
        try:
            from tqdm import tqdm  # pylint: disable=import-outside-toplevel
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pylint: disable=broad-except
            self.handleError(record)  # logging's own policy for failing handlers


class ProgressBar(object):
    """A per-epoch tqdm bar (rank 0 only) showing throughput, loss and learning rate.

    ``enabled`` None shows it only when stderr is a terminal, so redirected logs hold no bar frames.
    """

    def __init__(self, total, epoch, num_epochs, enabled=None, initial=0):
        self._bar = None
        if enabled is not False:
            bar = progress_bar(enabled, total=total, initial=initial, unit='batch', dynamic_ncols=True,
                               leave=True, desc='epoch %d/%d' % (epoch + 1, num_epochs))
            self._bar = None if bar.disable else bar

    def update(self, samples_per_sec, loss, lr):
        """Advance one batch and refresh the displayed numbers."""
        if self._bar is not None:
            self._bar.set_postfix_str('%.1f img/s loss=%.4f lr=%.5f' % (samples_per_sec, loss, lr),
                                      refresh=False)
            self._bar.update(1)

    def close(self):
        """Finish the bar's line."""
        if self._bar is not None:
            self._bar.close()


class History(object):
    """Per-epoch metrics kept in ``history.json`` (rewritten atomically) and plotted to ``curve.png``.

    Parameters
    ----------
    save_dir : str
    enabled : bool
        False on ranks other than 0: nothing is written.
    name : str
        The JSON file's name without ``.json``.
    plot : bool
        Also plot train/val top-1 error (classification records) to ``curve.png``.
    """
    KEYS = ('train-top1', 'train-top5', 'val-top1', 'val-top5')

    def __init__(self, save_dir, enabled=True, name='history', plot=True):
        self.json_path = os.path.join(save_dir, name + '.json')
        self.png_path = os.path.join(save_dir, 'curve.png') if plot else None
        self.enabled = enabled
        self.records = []

    def load(self, upto_epoch):
        """Keep the records of epochs before ``upto_epoch`` from an earlier run (for resume)."""
        if os.path.isfile(self.json_path):
            with open(self.json_path) as f:
                self.records = [r for r in json.load(f) if r['epoch'] < upto_epoch]

    def add(self, record):
        """Append one epoch's record (dict with 'epoch' and metric keys), then rewrite JSON and PNG."""
        self.records = [r for r in self.records if r['epoch'] != record['epoch']] + [record]
        if not self.enabled:
            return

        def _write(tmp):
            with open(tmp, 'w') as f:
                json.dump(self.records, f, indent=1)
        atomic_write(self.json_path, _write)
        if self.png_path:
            self._plot()

    def _plot(self):
        # GluonCV's TrainingHistory plots error curves; we give it 1 - top-1 per epoch.
        labels = ['train-err', 'val-err']
        plot = TrainingHistory(labels)
        last_val = None
        for record in self.records:
            last_val = record.get('val-top1', last_val)
            plot.update([1 - record['train-top1'], 1 - (last_val if last_val is not None else 0.0)])
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use('Agg')  # no display on training machines
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

        def _write(tmp):
            # savefig picks the format from the extension; the temporary name has none.
            plot.plot(labels, save_path=tmp + '.png')
            plt.close('all')  # TrainingHistory draws on the current figure and never closes it
            os.replace(tmp + '.png', tmp)
        atomic_write(self.png_path, _write)
