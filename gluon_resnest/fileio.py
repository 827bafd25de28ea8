"""Files users keep: written whole or not at all, and identified by SHA-1."""
import hashlib
import json
import os

__all__ = ['atomic_write', 'write_json', 'sha1_of']


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then move the result onto ``path``: readers see the old or the new file."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, record):
    """Write ``record`` as indented JSON to ``path`` atomically, creating its folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)

    def _write(tmp):
        with open(tmp, 'w') as f:
            json.dump(record, f, indent=2, sort_keys=True)
    atomic_write(path, _write)


def sha1_of(path):
    """Hex SHA-1 of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()
