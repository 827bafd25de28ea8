"""The official PyTorch ResNeSt, timed in a persistent subprocess, for side-by-side benchmarks.

Benchmarks that take ``--torch-python PATH`` compare against the official implementation: PATH is an
interpreter that has ``torch`` and the official ``resnest`` package, for example a separate venv made with
``pip install torch`` and then ``pip install --no-deps resnest==0.0.5``. Neither is a dependency of this
project, and torch never shares a process with MXNet: :class:`TorchOfficial` starts this file under that
interpreter once and sends it one JSON request per line, so that timings of the PyTorch model can be
interleaved with MXNet's in the same run, at the same thread count::

    with TorchOfficial('/path/to/venv/bin/python', threads=2) as official:
        seconds = official.seconds('inference', 'resnest50', batch=8, size=224, iters=3)
        print(official.peak_rss_mib())

Inference runs the model in ``eval()`` mode under ``torch.no_grad()``; a training step is forward,
cross-entropy, backward and a Nesterov SGD update, as the MXNet benchmarks time it. The official models
are built as their functions build them: without DropBlock, the only setting they support (their
``DropBlock2D`` raises ``NotImplementedError``), so MXNet networks compared with them in training must
be built with ``dropblock_prob=0``.
"""
import json
import os
import subprocess
import sys

__all__ = ['JsonLinesProcess', 'TorchOfficial']


class JsonLinesProcess(object):
    """A persistent subprocess that answers one JSON request per line with one JSON line.

    Parameters
    ----------
    argv : list of str
        Command of the server (this file's ``--serve``, or ``gluon_resnest/export/ort_run.py --serve``).
    env : dict
        Its environment.
    label : str
        How errors name the server (the option that chose its interpreter).
    """

    def __init__(self, argv, env, label):
        # Here, not at the top: the server side of this file runs where gluon_resnest is not importable.
        from gluon_resnest.procs import preexec_die_with_this_process  # pylint: disable=import-outside-toplevel
        self._label = label
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      universal_newlines=True, bufsize=1,
                                      preexec_fn=preexec_die_with_this_process())

    def _request(self, message):
        self._proc.stdin.write(json.dumps(message) + '\n')
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise RuntimeError('the %s process exited (status %s); its error is above' % (self._label, code))
        reply = json.loads(line)
        if 'error' in reply:
            raise RuntimeError('%s: %s' % (self._label, reply['error']))
        return reply

    def close(self):
        """Stop the subprocess."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TorchOfficial(JsonLinesProcess):
    """Client of a persistent torch subprocess that times the official ResNeSt models.

    Parameters
    ----------
    python : str
        Interpreter with ``torch`` and the official ``resnest`` package.
    threads : int
        Intra-op threads of the torch process (``torch.set_num_threads`` and ``OMP_NUM_THREADS``).
    """

    def __init__(self, python, threads):
        if not os.path.isfile(python):
            raise FileNotFoundError('--torch-python %s: no such interpreter' % python)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.pop('PYTHONPATH', None)  # the torch venv resolves its own packages only
        super(TorchOfficial, self).__init__(
            [python, os.path.abspath(__file__), '--serve', str(threads)], env, '--torch-python')
        self.versions = self._request({'op': 'hello'})

    def seconds(self, op, model, batch, size, iters=1):
        """Wall seconds of ``iters`` consecutive ``op`` calls ('inference' or 'training') on one batch."""
        return self._request({'op': op, 'model': model, 'batch': batch, 'size': size, 'iters': iters})['seconds']

    def rate(self, op, model, batch, size, iters=1):
        """Images/s of ``iters`` consecutive calls (one timing; the caller takes medians)."""
        return batch * iters / self.seconds(op, model, batch, size, iters)

    def peak_rss_mib(self):
        """Peak resident memory of the torch process so far, in MiB."""
        return self._request({'op': 'peak_rss'})['mib']


def peak_rss_mib():
    """This process's peak resident memory in MiB (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over from the parent a process was forked from, so a process
    started by a large benchmark would report the benchmark's own size.
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError('no VmHWM in /proc/self/status (peak memory needs Linux)')


# ---- the server side: runs under the --torch-python interpreter, never imported by MXNet code ----

def _installed_version(dist):
    """The installed distribution's version ('?' when its metadata is missing)."""
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return '?'


def _serve(threads):
    import time  # pylint: disable=import-outside-toplevel
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import resnest.torch as official  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        sys.stdout.write(json.dumps({'error': 'cannot import torch and resnest (%s)' % err}) + '\n')
        return
    torch.set_num_threads(threads)
    cache = {}

    def step_fn(op, model, batch, size):
        key = (op, model, batch, size)
        if key not in cache:
            net = getattr(official, model)(pretrained=False)
            x = torch.rand(batch, 3, size, size)
            if op == 'inference':
                net.eval()

                def step():
                    with torch.no_grad():
                        net(x)
            else:
                net.train()
                y = torch.arange(batch) % 1000
                loss_fn = torch.nn.CrossEntropyLoss()
                opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

                def step():
                    opt.zero_grad()
                    loss_fn(net(x), y).backward()
                    opt.step()
            cache.clear()  # one network at a time keeps the peak memory that of the current case
            cache[key] = step
        return cache[key]

    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req['op'] == 'hello':
                reply = {'torch': torch.__version__, 'resnest': _installed_version('resnest'),
                         'threads': torch.get_num_threads()}
            elif req['op'] == 'peak_rss':
                reply = {'mib': peak_rss_mib()}
            else:
                step = step_fn(req['op'], req['model'], req['batch'], req['size'])
                start = time.perf_counter()
                for _ in range(req['iters']):
                    step()
                reply = {'seconds': time.perf_counter() - start}
        except (KeyError, AttributeError, ValueError, RuntimeError) as err:
            reply = {'error': '%s: %s' % (type(err).__name__, err)}
        sys.stdout.write(json.dumps(reply) + '\n')
        sys.stdout.flush()


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--serve':
        _serve(int(sys.argv[2]))
    else:
        sys.exit('usage: started by TorchOfficial (benchmarks), not by hand')
