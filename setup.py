"""gluon_resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon, in the GluonCV style."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'", (HERE / 'gluon_resnest' / '__init__.py').read_text()).group(1)

setup(
    name='gluon_resnest',
    version=VERSION,
    description='ResNeSt split-attention networks for MXNet Gluon and GluonCV',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_resnest', 'gluon_resnest.*']),
    # The paper's recipes, which --config reads by name.
    package_data={'gluon_resnest': ['recipes/*/*.yaml']},
    # Tested on 3.11 only; the tools find their own command line through sys.orig_argv (3.10+).
    python_requires='>=3.11',
    install_requires=[
        # mxnet 1.9.1 is the last MXNet release; it uses numpy aliases removed in numpy 1.24.
        'mxnet==1.9.1',
        'numpy<1.24',
        # The last GluonCV release (it reports itself as 0.11.0).
        'gluoncv==0.10.5.post0',
        # The training loader decodes and augments with OpenCV (GluonCV depends on it too).
        'opencv-python',
        # Recipe files (--config) are YAML, as detectron2's configs (GluonCV's yacs installs it too).
        'pyyaml',
    ],
    extras_require={
        # scikit-learn ships the digits images the offline demo dataset is made from.
        'demo': ['scikit-learn'],
        # onnx 1.14 is the last release with the onnx.mapping module mxnet's exporter uses.
        'onnx': ['onnx==1.14.1'],
        'test': ['pytest', 'scikit-learn', 'onnx==1.14.1'],
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
