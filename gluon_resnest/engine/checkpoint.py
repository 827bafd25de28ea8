"""Crash-safe checkpoints: parameters, trainer states and a JSON record, written atomically.

A checkpoint ``{save_dir}/{model}-{epoch:04d}`` (or ``...-{epoch:04d}-b{batch:06d}`` when saved in the
middle of an epoch, e.g. on Ctrl-C) is three files:

- ``.params``: ``net.save_parameters`` (loadable with ``get_model(name, classes=N, pretrained=path)``);
- ``.states``: ``trainer.save_states`` (optimizer with its momentum and update count);
- ``.json``: epoch, batch, update count, learning rate, seed, the run's config, the size and SHA-1 of both
  files, and for a mid-epoch checkpoint of one worker its epoch's running loss sum and train-metric counts
  (``epoch_totals``), so the resumed epoch's history entry is the uninterrupted one's. The random streams are re-seeded from (seed, epoch, batch, rank) before every training step,
  so the seed and the position are the whole random state.

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``;
the JSON goes last and is the commit record. ``latest_checkpoint`` only returns a checkpoint whose JSON
parses and whose two files match the recorded size and SHA-1, so a crash mid-write (or a truncated copy)
is never picked and the previous checkpoint stays the one resumed from. A failed write (a full disk) removes
the files of its own set; ``remove_incomplete`` clears what a killed writer left (``--resume`` runs it).
"""
import glob
import json
import os
import pickle
import re

from ..fileio import atomic_write, sha1_of

__all__ = ['checkpoint_prefix', 'checkpoint_files', 'save_checkpoint', 'latest_checkpoint', 'read_checkpoint',
           'remove_incomplete', 'atomic_write', 'check_states']

_NAME = re.compile(r'^-(\d{4,})(?:-b(\d{6,}))?\.json$')
# Any file of a checkpoint set, or a temporary file of one being written: (extension, writer's pid or None).
_FILE = re.compile(r'^-\d{4,}(?:-b\d{6,})?\.(params|states|json)(?:\.tmp-(\d+))?$')


def checkpoint_prefix(save_dir, model, epoch, batch=0):
    """Path prefix of the checkpoint after ``epoch`` complete epochs and ``batch`` batches of the next."""
    name = '%s-%04d' % (model, epoch) if batch == 0 else '%s-%04d-b%06d' % (model, epoch, batch)
    return os.path.join(save_dir, name)


def checkpoint_files(save_dir, model, ext):
    """Paths of every ``{model}-*.{ext}`` checkpoint file in ``save_dir`` (complete or not), sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(save_dir), '%s-*.%s' % (glob.escape(model), ext))))


def _digest(path):
    return {'size': os.path.getsize(path), 'sha1': sha1_of(path)}


def save_checkpoint(prefix, net, trainer, meta):
    """Write ``prefix.params``, ``prefix.states`` and (last) ``prefix.json`` atomically.

    Parameters
    ----------
    prefix : str
        From ``checkpoint_prefix``.
    net : HybridBlock
    trainer : gluon.Trainer
    meta : dict
        JSON-serialisable record (epoch, batch, num_update, ...); file digests are added to it.

    Returns
    -------
    str
        Path of the JSON record.
    """
    files = {}

    def _write_json(tmp):
        with open(tmp, 'w') as f:
            json.dump(dict(meta, files=files), f, indent=1, sort_keys=True)
    written = []
    try:
        for ext, write in (('params', net.save_parameters), ('states', trainer.save_states)):
            path = '%s.%s' % (prefix, ext)
            atomic_write(path, write)
            written.append(path)
            files[ext] = dict(_digest(path), name=os.path.basename(path))
        atomic_write(prefix + '.json', _write_json)
    except BaseException:
        # Without its JSON record the set is never resumed from: don't leave it taking space (a full disk).
        for path in written:
            os.remove(path)
        raise
    return prefix + '.json'


def read_checkpoint(json_path, verify=True):
    """Load and check a checkpoint record; returns it with the ``params``/``states``/``json`` paths added.

    Raises
    ------
    ValueError
        The record does not parse or a file is missing, truncated or altered (one line).
    """
    try:
        with open(json_path) as f:
            record = json.load(f)
        files = record['files']
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError('checkpoint %s is unreadable: %s' % (json_path, err)) from err
    folder = os.path.dirname(os.path.abspath(json_path))
    for ext in ('params', 'states'):
        path = os.path.join(folder, files[ext]['name'])
        if not os.path.isfile(path):
            raise ValueError('checkpoint %s: missing %s' % (json_path, path))
        if verify and _digest(path) != {k: files[ext][k] for k in ('size', 'sha1')}:
            raise ValueError('checkpoint %s: %s is truncated or altered (size/SHA-1 mismatch)'
                             % (json_path, path))
        record[ext] = path
    record['json'] = json_path
    return record


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_incomplete(save_dir, model):
    """Delete what interrupted writes of ``model``'s checkpoints left in ``save_dir``; returns the paths.

    That is ``{model}-NNNN[-bNNNNNN].params``/``.states`` files without the ``.json`` record their writer
    writes last (a killed writer, a full disk), and their ``*.tmp-PID`` files whose writer no longer runs on
    this machine. Complete checkpoints (even damaged ones), other models' files and any other file stay.
    """
    removed = []
    base = os.path.join(save_dir, model)
    for path in glob.glob(glob.escape(base) + '-*'):
        match = _FILE.match(path[len(base):])
        if not match or not os.path.isfile(path):
            continue
        ext, pid = match.group(1), match.group(2)
        if pid is not None:
            orphan = not _pid_alive(int(pid))
        else:
            orphan = ext != 'json' and not os.path.exists(path[:-len(ext)] + 'json')
        if orphan:
            os.remove(path)
            removed.append(path)
    return sorted(removed)


def latest_checkpoint(save_dir, model, log=None, clean=False):
    """The newest complete checkpoint of ``model`` in ``save_dir``, or None.

    Incomplete ones (crash mid-write, truncated files) are skipped, with a warning through ``log``.
    ``clean=True`` first deletes the files of interrupted writes (:func:`remove_incomplete`) and says so.
    """
    if clean:
        removed = remove_incomplete(save_dir, model)
        if removed and log is not None:
            log.warning('removed %d file(s) of incomplete checkpoints (interrupted write or full disk): %s',
                        len(removed), ', '.join(os.path.basename(p) for p in removed))
    found = []
    for path in checkpoint_files(save_dir, model, 'json'):
        match = _NAME.match(path[len(os.path.join(save_dir, model)):])
        if match:
            found.append((int(match.group(1)), int(match.group(2) or 0), path))
    for _, _, path in sorted(found, reverse=True):
        try:
            return read_checkpoint(path)
        except ValueError as err:
            if log is not None:
                log.warning('skipping incomplete checkpoint: %s', err)
    return None


def _arrays(state):
    """The NDArrays of one parameter's optimizer state (an NDArray, a tuple of them, nested, or None)."""
    if isinstance(state, (tuple, list)):
        return [a for part in state for a in _arrays(part)]
    return [] if state is None else [state]


def check_states(path, params):
    """Check that the trainer states file ``path`` fits ``params`` (the trainer's parameters, in its order).

    ``gluon.Trainer.load_states`` places each saved state by parameter index and checks nothing: a file
    of another network, or of one whose parameters are ordered otherwise, fails at the first step with an
    MXNet shape error or, where shapes agree, trains with another parameter's momentum. Raises ValueError
    naming the first state that does not fit.
    """
    with open(path, 'rb') as f:
        try:
            saved = pickle.load(f)
        except Exception as err:  # pickle raises many types for a file that is not a pickle
            raise ValueError('%s is not a trainer states file (%s: %s)' % (path, type(err).__name__, err)) from err
    states = saved[0] if isinstance(saved, tuple) and len(saved) == 2 else saved  # (states, optimizer)
    if not isinstance(states, dict):
        raise ValueError('%s is not a trainer states file (it holds a %s)' % (path, type(states).__name__))
    for index, state in states.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            raise ValueError('%s holds a state for parameter %r; this trainer has %d parameters'
                             % (path, index, len(params)))
        if params[index].shape is None:  # not known before the first forward pass
            continue
        expected = tuple(params[index].shape)  # 0: a dimension not known before the first forward pass
        for array in _arrays(state):
            if len(array.shape) != len(expected) or any(e > 0 and a != e for a, e in zip(array.shape, expected)):
                raise ValueError('%s does not fit this network: its state %d has shape %s, parameter %s has '
                                 'shape %s' % (path, index, tuple(array.shape), params[index].name, expected))
