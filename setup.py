"""gluon_resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon, in the GluonCV style."""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: no PEP 660 editable installs
    editable_wheel = None

HERE = Path(__file__).parent
# MXNet's ONNX exporter uses onnx.mapping, which onnx 1.14 is the last to have; it has wheels up to
# CPython 3.11. Newer Pythons get a current onnx, and gluon_resnest/compat.py restores the two tables
# of onnx.mapping the exporter reads.
ONNX = ['onnx==1.14.1; python_version<"3.12"', 'onnx>=1.15; python_version>="3.12"']
# Runs gluon_resnest_compat's import hook at interpreter start (as setuptools' distutils-precedence.pth
# does its shim), so scripts that import mxnet before gluon_resnest work. Its name sorts after the
# __editable__ .pth files, which make the module importable in editable installs.
PTH = 'gluon_resnest_compat.pth'
# onnxruntime's quantizer (--format onnx-int8) imports onnx; current releases need onnx >= 1.16
# (TensorProto.INT4), so beside onnx 1.14.1 it stays at 1.17.3, whose quantizer works with it. Its
# pre-processing (quant_pre_process) needs sympy, which current releases no longer install.
ONNXRUNTIME = ['onnxruntime==1.17.3; python_version<"3.12"', 'onnxruntime; python_version>="3.12"', 'sympy']
VERSION = re.search(r"__version__ = '([^']+)'", (HERE / 'gluon_resnest' / '__init__.py').read_text()).group(1)



class BuildPyWithPth(build_py):
    """build_py that also puts the .pth file at the top of the wheel (installed into site-packages)."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / PTH), str(Path(self.build_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / PTH)]


class _StrategyWithPth:
    """Wraps setuptools' editable-install strategy to add the .pth file to the editable wheel too."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH, (HERE / PTH).read_bytes())

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self.strategy.__exit__(*exc)


CMDCLASS = {'build_py': BuildPyWithPth}
# setuptools' editable installs write only their own files; _select_strategy is where they are chosen.
# Without it (another setuptools), the docs' one-line fix applies: import gluon_resnest before mxnet.
if editable_wheel is not None and hasattr(editable_wheel, '_select_strategy'):
    class EditableWheelWithPth(editable_wheel):  # noqa: D101  pylint: disable=missing-class-docstring
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    CMDCLASS['editable_wheel'] = EditableWheelWithPth

setup(
    name='gluon_resnest',
    version=VERSION,
    description='ResNeSt split-attention networks for MXNet Gluon and GluonCV',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_resnest', 'gluon_resnest.*']),
    # Top-level so the .pth file can import it without gluon_resnest/__init__.py, which loads MXNet.
    py_modules=['gluon_resnest_compat'],
    cmdclass=CMDCLASS,
    # The paper's recipes, which --config reads by name.
    package_data={'gluon_resnest': ['recipes/*/*.yaml']},
    # Tested on 3.10-3.13 (docs/install.md); the tools find their own command line through sys.orig_argv
    # (3.10+).
    python_requires='>=3.10',
    # No MXNet here: the CPU build (`mxnet`) and the GPU builds (`mxnet-cu112`, ...) are different
    # distributions of the same `mxnet` package, and a requirement on one makes pip install it over the
    # other. Users pick one: the `cpu` extra, or an mxnet-cuXXX==1.9.1 (GluonCV does the same).
    install_requires=[
        # mxnet 1.9.1's own metadata asks numpy<2. Where numpy 1.x has wheels, stay on it; 3.13+ has only
        # numpy 2, which mxnet runs on with the names gluon_resnest/compat.py restores.
        'numpy>=1.17,<2; python_version<"3.13"',
        'numpy>=2; python_version>="3.13"',
        # mxnet and GluonCV import distutils, gone from the standard library in 3.12: setuptools
        # provides it (its distutils-precedence.pth).
        'setuptools; python_version>="3.12"',
        # The last GluonCV release (it reports itself as 0.11.0).
        'gluoncv==0.10.5.post0',
        # The training loader decodes and augments with OpenCV (GluonCV depends on it too).
        'opencv-python',
        # Recipe files (--config) are YAML, as detectron2's configs (GluonCV's yacs installs it too).
        'pyyaml',
    ],
    extras_require={
        # MXNet's CPU build. On 3.13+ pip cannot resolve it (its metadata asks numpy<2, which has no
        # wheel there): scripts/setup.sh installs it with --no-deps and its two real dependencies.
        'cpu': ['mxnet==1.9.1; python_version<"3.13"'],
        # scikit-learn ships the digits images the offline demo dataset is made from.
        'demo': ['scikit-learn'],
        'onnx': ONNX,
        # In-process ONNX checks and --format onnx-int8 (scripts/setup.d/40-onnxruntime.sh installs it).
        'onnxruntime': ONNX + ONNXRUNTIME,
        'test': ['pytest', 'pytest-xdist', 'scikit-learn'] + ONNX,
    },
    entry_points={
        # Every command; each main(argv=None) returns its exit status (gluon_resnest.cli.run_command).
        'console_scripts': [
            'gluon-resnest-train = gluon_resnest.classification.command:main',
            'gluon-resnest-eval = gluon_resnest.classification.evaluation:main',
            'gluon-resnest-export = gluon_resnest.export.__main__:main',
            'gluon-resnest-convert-torch = gluon_resnest.export.torch_convert:main',
            'gluon-resnest-train-detection = gluon_resnest.detection.command:main',
            'gluon-resnest-summary = gluon_resnest.summary:main',
            'gluon-resnest-make-demo-data = gluon_resnest.data.demo:main',
            'gluon-resnest-make-shapes-data = gluon_resnest.detection.shapes:main',
            'gluon-resnest-run-gluoncv = gluon_resnest.gluoncv.__main__:main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
)
