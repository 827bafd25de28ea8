"""Run ONNX models in onnxruntime, in an interpreter that has it.

Standalone on purpose (imports only numpy and onnxruntime): onnxruntime's wheels need numpy >= 1.24.2;
beside an older numpy, this file runs under the interpreter of a second venv
(``scripts/setup.d/40-onnxruntime.sh`` makes ``.venv-ort`` there). Three uses:

- ``python ort_run.py MODEL.onnx OUT.npz IN.npy [IN.npy ...]``: the model's outputs on saved inputs
  (the export self-check);
- ``python ort_run.py --quantize FP32.onnx INT8.onnx CALIB.npy BATCH MODE GRANULARITY``: onnxruntime's own
  static INT8 (QDQ) of an fp32 model, calibrated on saved images (``--format onnx-int8``; needs ``onnx``);
- ``python ort_run.py --serve THREADS``: a persistent process answering one JSON request per line,
  ``{"op": "inference", "model": PATH, "batch": N, "iters": K}`` -> ``{"seconds": S}``, so benchmarks
  interleave onnxruntime timings with MXNet's in one run.
"""
import json
import os
import sys
import time

import numpy as np


def session(model_path, threads=0):
    """An onnxruntime CPU session with all graph optimisations; ``threads=0`` lets onnxruntime choose."""
    import onnxruntime  # pylint: disable=import-outside-toplevel
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_path, options, providers=['CPUExecutionProvider'])


def run(model_path, input_paths):
    """Outputs of the model's first output for each input file, in order."""
    return run_arrays(model_path, [np.load(path) for path in input_paths])


def run_arrays(model_path, arrays):
    """Outputs of the model's first output for each input array, in order."""
    sess = session(model_path)
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: array})[0] for array in arrays]


def errors():
    """The exceptions onnxruntime raises for a bad model or input (its own derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # pylint: disable=import-outside-toplevel
    return (KeyError, ValueError, RuntimeError) + tuple(getattr(state, name) for name in (
        'Fail', 'InvalidArgument', 'InvalidGraph', 'InvalidProtobuf', 'NoSuchFile', 'RuntimeException'))


class _Batches:  # the duck type of onnxruntime.quantization.CalibrationDataReader
    """Consecutive batches of ``images`` as ``{input name: array}``, then None."""

    def __init__(self, name, images, batch):
        self._feeds = iter([{name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self._feeds, None)


def quantize(fp32_path, int8_path, calib_path, batch=1, mode='naive', granularity='tensor-wise'):
    """onnxruntime's static INT8 of ``fp32_path``, calibrated on the images saved in ``calib_path``.

    The model is prepared by ``quant_pre_process`` (shape inference and graph optimisation), then
    quantized by ``quantize_static`` in the QDQ format: QUInt8 activations, QInt8 weights (one scale per
    output channel with ``granularity='channel-wise'``), ranges from min/max (``mode='naive'``) or the
    entropy (KL) method (``'entropy'``), the project's two calibration modes.
    """
    import tempfile  # pylint: disable=import-outside-toplevel
    from onnxruntime import quantization as q  # pylint: disable=import-outside-toplevel
    from onnxruntime.quantization.shape_inference import quant_pre_process  # pylint: disable=import-outside-toplevel
    methods = {'naive': q.CalibrationMethod.MinMax, 'entropy': q.CalibrationMethod.Entropy}
    images = np.load(calib_path)
    with tempfile.TemporaryDirectory(prefix='.quantize-', dir=os.path.dirname(os.path.abspath(int8_path))) as tmp:
        prepared = os.path.join(tmp, 'prepared.onnx')
        quant_pre_process(fp32_path, prepared)
        name = session(prepared).get_inputs()[0].name
        q.quantize_static(prepared, int8_path, _Batches(name, images, batch), quant_format=q.QuantFormat.QDQ,
                          per_channel=granularity == 'channel-wise', activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=methods[mode])


def random_batch(sess, batch):
    """A random input for ``sess`` with ``batch`` rows: uint8 images or N(0, 1) floats by input type."""
    spec = sess.get_inputs()[0]
    shape = [batch] + [int(d) for d in spec.shape[1:]]
    rng = np.random.RandomState(0)
    if spec.type == 'tensor(uint8)':
        return rng.randint(0, 256, size=shape).astype(np.uint8)
    return rng.standard_normal(shape).astype(np.float32)


def _serve(threads):
    import onnxruntime  # pylint: disable=import-outside-toplevel
    caught = errors()
    sessions = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req['op'] == 'hello':
                reply = {'onnxruntime': onnxruntime.__version__, 'threads': threads}
            elif req['op'] == 'inference':
                if req['model'] not in sessions:
                    sessions[req['model']] = session(req['model'], threads)
                sess = sessions[req['model']]
                feed = {sess.get_inputs()[0].name: random_batch(sess, req['batch'])}
                start = time.perf_counter()
                for _ in range(req['iters']):
                    sess.run(None, feed)
                reply = {'seconds': time.perf_counter() - start}
            else:
                reply = {'error': 'unknown op %r' % req['op']}
        except caught as err:
            reply = {'error': '%s: %s' % (type(err).__name__, str(err).strip().splitlines()[0])}
        sys.stdout.write(json.dumps(reply) + '\n')
        sys.stdout.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == '--serve':
        _serve(int(argv[1]))
        return
    if len(argv) == 7 and argv[0] == '--quantize':
        quantize(argv[1], argv[2], argv[3], int(argv[4]), argv[5], argv[6])
        return
    if len(argv) < 3 or argv[0].startswith('--'):
        sys.exit('usage: ort_run.py MODEL.onnx OUT.npz IN.npy [IN.npy ...] | ort_run.py --serve THREADS | '
                 'ort_run.py --quantize FP32.onnx INT8.onnx CALIB.npy BATCH MODE GRANULARITY')
    outputs = run(argv[0], argv[2:])
    np.savez(argv[1], *outputs)


if __name__ == '__main__':
    main()
