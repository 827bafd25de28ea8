"""Progress bars only where a person watches them."""
import sys

__all__ = ['progress_bar']


def progress_bar(enabled=None, **kwargs):
    """A tqdm bar on stderr: ``enabled`` True/False forces it on/off; None shows it only on a terminal.

    A redirected log (``> log 2>&1``, CI) thus gets no bar frames; the caller's log lines say the same.
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    disable = None if enabled is None else not enabled
    if disable is None and not sys.stderr.isatty():
        disable = True  # tqdm's own None test looks at the file it is given; be explicit about stderr
    return tqdm(disable=disable, file=sys.stderr, **kwargs)
