"""Run an ONNX model in onnxruntime on saved inputs: ``python ort_run.py MODEL.onnx OUT.npz IN.npy...``.

Standalone on purpose (imports only numpy and onnxruntime): onnxruntime wheels for Python 3.11 need
numpy >= 1.24, which mxnet 1.9 cannot import, so the export self-check runs this file with the
interpreter of a second venv (``scripts/setup.d/40-onnxruntime.sh`` makes ``.venv-ort``).
"""
import sys

import numpy as np


def run(model_path, input_paths):
    """Outputs of the model's first output for each input file, in order."""
    import onnxruntime  # pylint: disable=import-outside-toplevel
    # Initializers that are also graph inputs make onnxruntime warn once per tensor.
    onnxruntime.set_default_logger_severity(3)
    session = onnxruntime.InferenceSession(model_path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: np.load(path)})[0] for path in input_paths]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        sys.exit('usage: ort_run.py MODEL.onnx OUT.npz IN.npy [IN.npy ...]')
    outputs = run(argv[0], argv[2:])
    np.savez(argv[1], *outputs)


if __name__ == '__main__':
    main()
