"""``python -m gluon_resnest.detection.train``: the detection command (:mod:`.command`), and the names of
detection training under the module path its users know (the code is in :mod:`.command`, :mod:`.task`,
:mod:`.data` and :mod:`.evaluation`).
"""
import sys

from ..config import DetectionConfig
from ..results import DetectionResult
from .command import DATASET_DEFAULTS, main, parse_args
from .data import ValTransform, device_shards, load_datasets, val_loader
from .evaluation import COCOEvaluation, VOCEvaluation, evaluate_network
from .task import DETECTORS, DetectionTask, build_detector, build_run, evaluate, fit, load_detector

__all__ = ['parse_args', 'main', 'fit', 'evaluate', 'DetectionConfig', 'DetectionResult', 'DetectionTask',
           'build_detector', 'build_run', 'load_datasets', 'evaluate_network', 'val_loader', 'ValTransform',
           'VOCEvaluation', 'COCOEvaluation', 'load_detector', 'device_shards', 'DATASET_DEFAULTS', 'DETECTORS']

if __name__ == '__main__':
    sys.exit(main())
