"""Every example of README.md and docs/*.md runs, and every documented flag exists with its documented default.

Each fenced ```python / ```bash block runs as written, in a fresh folder holding links to this checkout
(``.venv/bin/python train_imagenet.py`` works as in the docs), with ``HOME`` and ``MXNET_HOME`` in a
temporary folder. HTML comments right above a block say what the test changes, so a reader sees it:

- ``<!-- test: substitute OLD => NEW -->``: replace the text OLD (which must occur) by NEW; NEW may name
  files the test makes: ``{params:MODEL}`` (random weights of MODEL, published class count),
  ``{deploy:FORMAT}`` (the demo checkpoint exported as mxnet, int8 or onnx at 32 px), ``{npz:MODEL}``
  (random weights of MODEL in the official PyTorch naming, as .npz), ``{demo:small}`` (the shared
  ``demo_data`` below);
- ``<!-- test: skip (REASON) -->``: not run here (a GPU, ImageNet, several machines);
- ``<!-- test: fresh -->``: without the shared ``demo_data`` and ``runs/demo`` (the block makes its own);
- ``<!-- test: creates PATH ... -->``: files the block must have written;
- ``<!-- test: interpreter PATH -->``: the Python interpreter of the block (default ``.venv/bin/python``);
- ``<!-- test: note ... -->``: a comment.

Every other block gets ``demo_data`` (a small coloured-squares dataset in the demo's layout, folders and
.rec: 3 classes, 18 training and 6 validation images) and ``runs/demo``, both made once: ``runs/demo`` is
what the README's main job (the ``fresh`` block that ``creates runs/demo/...``) wrote when it ran, once, on
``demo_data``; that block's test checks that one run instead of training again.

The pages themselves are checked too: every relative link names a file that exists and a heading it has
(GitHub's anchors); the paragraph before each heading and at the end of a page ends a sentence; in the
benchmark pages every section (heading to heading) that gives a speed, time or memory figure names a date
(YYYY-MM-DD) and a machine (vCPU, EPYC, Xeon, GPU, cores); a block whose substitution swaps a path (a file
or published weights the reader has and the test machine has not) carries a ``note`` saying why; and the
flag vocabulary and layers of docs/design.md match the code.
"""
import argparse
import ast
import glob
import importlib
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SUBPROCESS_TIMEOUT, to_official_names, write_tiny_dataset

DOCS = ['README.md'] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'docs', '*.md')))
LANGUAGES = {'python': 'python', 'bash': 'bash', 'sh': 'bash', 'shell': 'bash', 'console': 'bash'}
MARKER = re.compile(r'^\s*<!-- test: (\w+)\s*(.*?)\s*-->\s*$')
FENCE = re.compile(r'^(\s*)```(\w*)\s*$')
# Blocks that cannot run here; keep this small (each needs a GPU, ImageNet/COCO, or several machines).
MAX_SKIPS = 13
# Checkout entries a block's folder links to.
LINKED = ['.venv-ort', 'train_imagenet.py', 'eval.py', 'gluon_resnest', 'benchmarks', 'scripts',
          'tests', 'setup.py', 'pytest.ini', 'README.md', 'docs']


def read_blocks(doc):
    """``[(id, language, code, markers)]`` of the fenced blocks of ``doc``; markers are ``(kind, text)``."""
    blocks, markers, lines = [], [], open(os.path.join(REPO, doc)).read().split('\n')
    index = 0
    while index < len(lines):
        marker, fence = MARKER.match(lines[index]), FENCE.match(lines[index])
        if marker:
            markers.append(marker.groups())
        elif fence and fence.group(2):
            indent, start = len(fence.group(1)), index
            index += 1
            body = []
            while not lines[index].strip().startswith('```'):
                body.append(lines[index][indent:])
                index += 1
            if fence.group(2) in LANGUAGES:
                blocks.append(('%s:%d' % (doc, start + 1), LANGUAGES[fence.group(2)], '\n'.join(body) + '\n',
                               markers))
            markers = []
        elif lines[index].strip():
            assert not markers, '%s:%d: a test marker must be right above its block' % (doc, index)
        index += 1
    return blocks


BLOCKS = [block for doc in DOCS for block in read_blocks(doc)]


def _skip_reason(markers):
    return next((text for kind, text in markers if kind == 'skip'), None)


def _makes_shared_run(markers):
    """Whether a block is the main job whose ``runs/demo`` every other block gets."""
    kinds = dict(markers)
    return 'fresh' in kinds and any(path.startswith('runs/demo/') for path in kinds.get('creates', '').split())


class Files:
    """Files the examples need, each made once per session (see the module's text)."""

    def __init__(self, root):
        self.root = root
        self.demo = write_tiny_dataset(os.path.join(root, 'demo_data'), train_per_class=6, val_per_class=2)
        self.made = {}
        main_job, = [block for block in BLOCKS if _makes_shared_run(block[3])]
        self.main_job = run_block(main_job, os.path.join(root, 'main_job'), self)  # (cwd, code, done)
        self.run = os.path.join(self.main_job[0], 'runs', 'demo')

    def get(self, kind, name):
        """The path of ``{kind:name}``."""
        if (kind, name) not in self.made:
            self.made[kind, name] = getattr(self, '_' + kind)(name)
        return self.made[kind, name]

    def _demo(self, _):
        return self.demo

    def _params(self, model):
        import mxnet as mx  # pylint: disable=import-outside-toplevel
        import gluon_resnest  # pylint: disable=import-outside-toplevel
        net = gluon_resnest.get_model(model)
        net.initialize(mx.init.Xavier())
        path = os.path.join(self.root, '%s-random.params' % model)
        net.save_parameters(path)
        return path

    def _npz(self, model):
        import gluon_resnest  # pylint: disable=import-outside-toplevel
        params = gluon_resnest.get_model(model)._collect_params_with_prefix()  # pylint: disable=protected-access
        path = os.path.join(self.root, '%s-official.npz' % model)
        np.savez(path, **to_official_names({k: np.zeros(p.shape, 'float32') for k, p in params.items()}))
        return path

    def _deploy(self, fmt):
        from gluon_resnest.export import ExportConfig, export  # pylint: disable=import-outside-toplevel
        out = os.path.join(self.root, 'deploy')
        extra = dict(calib_data=os.path.join(self.demo, 'train'), batch_size=4, num_calib_batches=2) \
            if fmt == 'int8' else {}
        config = ExportConfig(model='resnest14', params_file=os.path.join(self.run, 'resnest14-0005.params'),
                              out=out, input_size=32, format=fmt, **extra)
        export(config)
        prefix = os.path.join(out, config.prefix)
        return prefix + '.onnx' if fmt == 'onnx' else prefix


def block_env(home):
    """The environment of a block: this checkout's venv first on PATH, a private HOME and MXNET_HOME."""
    env = dict(os.environ, HOME=home, MXNET_HOME=os.path.join(home, '.mxnet'), PYTHONPATH=REPO,
               PATH=os.path.join(sys.prefix, 'bin') + os.pathsep + os.environ.get('PATH', ''))
    env.pop('DMLC_ROLE', None)
    # Under pytest-xdist every block keeps its worker's compute threads (one: conftest), as the workers
    # share the cores; otherwise each command sets its own (gluon_resnest.threads).
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        env.pop('OMP_NUM_THREADS', None)
    return env


@pytest.fixture(scope='session')
def files(tmp_path_factory):
    """The shared demo dataset and run, and the files ``{kind:name}`` substitutions name."""
    return Files(str(tmp_path_factory.mktemp('docs')))


def prepare(code, markers, files):
    """``code`` with its substitutions applied (each OLD must occur)."""
    for kind, text in markers:
        if kind != 'substitute':
            continue
        old, _, new = text.partition(' =>')
        old, new = old.strip().replace('\\n', '\n'), new.strip().replace('\\n', '\n')
        assert old in code, 'substitution %r matches nothing in the block' % old
        new = re.sub(r'\{(params|deploy|npz|demo):([\w]+)\}', lambda m: files.get(m.group(1), m.group(2)), new)
        code = code.replace(old, new)
    return code


def workdir(root, fresh, files):
    """A new folder with links to the checkout (and, unless ``fresh``, to the shared demo data and run)."""
    assert fresh or os.path.isdir(files.run), 'no shared runs/demo: the main job failed (see its test)'
    os.makedirs(root)
    for name in LINKED:
        if os.path.exists(os.path.join(REPO, name)):
            os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    # The docs' `.venv` is the venv running the tests (.ci/run runs them in one per interpreter).
    os.symlink(sys.prefix, os.path.join(root, '.venv'))
    if not fresh:
        os.symlink(files.demo, os.path.join(root, 'demo_data'))
        os.makedirs(os.path.join(root, 'runs'))
        os.symlink(files.run, os.path.join(root, 'runs', 'demo'))
    return root


def run_block(block, root, files):
    """Run one block in a new folder under ``root`` (its HOME); returns (its folder, the code run, the
    finished process)."""
    _, language, code, markers = block
    kinds = dict(markers)
    cwd = workdir(os.path.join(root, 'work'), 'fresh' in kinds, files)
    code = prepare(code, markers, files)
    env = block_env(root)
    if language == 'python':
        command = [os.path.join(cwd, kinds.get('interpreter', '.venv/bin/python')), '-']
    else:
        command = ['bash', '-e', '-o', 'pipefail', '-c', code]
    done = subprocess.run(command, input=code if language == 'python' else None, cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=SUBPROCESS_TIMEOUT)
    return cwd, code, done


@pytest.mark.slow
# BLOCKS[0] is the README's main job: in the smoke set CI runs on every other interpreter (.ci/run).
@pytest.mark.parametrize('block', [pytest.param(BLOCKS[0], marks=pytest.mark.smoke)] + BLOCKS[1:],
                         ids=[b[0] for b in BLOCKS])
def test_example_runs(block, files, tmp_path):
    name, _, _, markers = block
    reason = _skip_reason(markers)
    if reason:
        pytest.skip(reason)
    kinds = dict(markers)
    # The main job ran once when the shared files were made: its test checks that run.
    cwd, code, done = files.main_job if _makes_shared_run(markers) else run_block(block, str(tmp_path), files)
    assert done.returncode == 0, '%s failed (%d):\n%s\n--- stdout\n%s\n--- stderr\n%s' % (
        name, done.returncode, code, done.stdout[-3000:], done.stderr[-3000:])
    for path in kinds.get('creates', '').split():
        assert os.path.exists(os.path.join(cwd, path)), '%s did not write %s' % (name, path)


def test_markers_are_known_and_skips_few():
    kinds = {kind for _, _, _, markers in BLOCKS for kind, _ in markers}
    assert kinds <= {'substitute', 'skip', 'fresh', 'creates', 'interpreter', 'note'}
    skips = [name for name, _, _, markers in BLOCKS if _skip_reason(markers)]
    assert len(skips) <= MAX_SKIPS, skips
    assert all(_skip_reason(markers).startswith('(') for _, _, _, markers in BLOCKS if _skip_reason(markers))


def _prose(doc):
    """The text of ``doc`` without its fenced blocks and HTML comments."""
    text = re.sub(r'^\s*```.*?^\s*```', '', open(os.path.join(REPO, doc)).read(), flags=re.S | re.M)
    return re.sub(r'<!--.*?-->', '', text, flags=re.S)


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file: lower case, characters other than letters,
    digits, spaces, '-' and '_' removed, spaces turned into '-'; the n-th repeat of a slug gets '-n'."""
    seen, anchors = {}, set()
    for heading in re.findall(r'^#+ (.*)$', _prose(os.path.relpath(path, REPO)), flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if not count else '%s-%d' % (slug, count))
    return anchors


@pytest.mark.parametrize('doc', DOCS)
def test_links_resolve(doc):
    """Relative links (inline and reference-style) point at files that exist and at headings they have."""
    path = os.path.join(REPO, doc)
    text = _prose(doc)
    links = re.findall(r'\]\((?!https?:|mailto:)([^)#\s]*)(?:#([^)\s]*))?\)', text)
    links += re.findall(r'^\[[^\]]+\]:\s*(?!https?:)([^#\s]*)(?:#(\S*))?', text, flags=re.M)
    for target, anchor in links:
        dest = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        assert os.path.exists(dest), '%s links to missing %s' % (doc, target)
        if anchor:
            assert dest.endswith('.md') and anchor in github_anchors(dest), \
                '%s links to missing heading #%s of %s' % (doc, anchor, target or doc)


# A paragraph ends a sentence: its last character (before closing markup) is one of these.
SENTENCE_END = re.compile(r'[.!?:][)*_`"\']*$')
LIST_ITEM = re.compile(r'^\s*(?:[-*+]|\d+\.)\s')


@pytest.mark.parametrize('doc', DOCS)
def test_no_section_ends_mid_sentence(doc):
    """The prose paragraph before each heading and at the end of the page ends a sentence (tables, lists'
    items, headings and blocks aside)."""
    lines = [line.rstrip() for line in _prose(doc).split('\n')]
    ends = [i for i, line in enumerate(lines) if line.startswith('#')] + [len(lines)]
    for end in ends:
        paragraph = []
        for line in reversed(lines[:end]):
            if not line.strip() and paragraph:
                break
            if line.strip():
                paragraph.insert(0, line)
        if not paragraph or paragraph[-1].startswith(('#', '|', '<', '![')) or LIST_ITEM.match(paragraph[0]):
            continue
        last = paragraph[-1]
        assert SENTENCE_END.search(last), '%s: a section ends mid-sentence: %r' % (doc, last[-80:])


# The rule for the benchmark pages: each section (from one heading to the next) that gives a speed
# (images/s, img/s, a ratio such as 1.52x, a time in ms/s/min, MiB) names its date and machine.
BENCHMARK_PAGES = ['docs/benchmarks.md']
FIGURE = re.compile(r'\d\s*(?:images/s|img/s|ms\b|s\b|min\b|minutes|MiB|GiB)|\d(?:\.\d+)?x\b')
DATE = re.compile(r'20\d\d-\d\d-\d\d')
MACHINE = re.compile(r'vCPU|EPYC|Xeon|GPU|cores?\b')


@pytest.mark.parametrize('doc', BENCHMARK_PAGES)
def test_benchmark_figures_have_date_and_machine(doc):
    sections = re.split(r'^#+ ', _prose(doc), flags=re.M)
    for section in sections[1:]:
        if FIGURE.search(section):
            title = section.split('\n', 1)[0]
            assert DATE.search(section) and MACHINE.search(section), \
                '%s: section %r gives figures without a date (YYYY-MM-DD) and machine' % (doc, title)


def _path_substitution(text):
    old, _, new = text.partition(' =>')
    return bool(re.search(r'\{(params|deploy|npz|demo):', new) or re.search(r'[~/]|\.(rec|params|npz|onnx)\b', old)
                or 'pretrained=True' in old)


@pytest.mark.parametrize('block', BLOCKS, ids=[b[0] for b in BLOCKS])
def test_path_substitutions_say_why(block):
    """A block that runs only because the test swaps a path (a file the reader has, published weights)
    says why beside it (a ``note`` marker), so the page does not show a command that cannot run as written
    without saying so."""
    name, _, _, markers = block
    swapped = [text for kind, text in markers if kind == 'substitute' and _path_substitution(text)]
    if swapped:
        assert any(kind == 'note' for kind, _ in markers), '%s: path substitution without a note: %s' % (
            name, swapped[0])


# ---- the flag vocabulary of docs/design.md against the commands' parsers ----

class _Parsed(Exception):
    """Raised instead of parsing: carries the parser a command built."""


def _load_file(path):
    spec = importlib.util.spec_from_file_location('doc_cmd_' + re.sub(r'\W', '_', path), os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module(name):
    return lambda: importlib.import_module(name)


# Command (as design.md names it) -> (module loader, name of the function that builds and parses).
COMMANDS = {
    'gluon-resnest-train (train_imagenet.py)': (lambda: _load_file('train_imagenet.py'), 'parse_args'),
    'gluon-resnest-eval (eval.py)': (lambda: _load_file('eval.py'), 'parse_args'),
    'gluon-resnest-export': (_module('gluon_resnest.export.__main__'), 'parse_args'),
    'gluon-resnest-convert-torch': (_module('gluon_resnest.export.torch_convert'), 'parse_args'),
    'gluon-resnest-train-detection': (_module('gluon_resnest.detection.train'), 'parse_args'),
    'gluon-resnest-make-shapes-data': (_module('gluon_resnest.detection.shapes'), 'parse_args'),
    'gluon-resnest-make-demo-data': (_module('gluon_resnest.data.demo'), 'parse_args'),
    'gluon-resnest-summary': (_module('gluon_resnest.summary'), 'parse_args'),
    'gluon-resnest-run-gluoncv': (_module('gluon_resnest.gluoncv.__main__'), 'parse_args'),
    'benchmarks/bench_resnest50.py': (lambda: _load_file('benchmarks/bench_resnest50.py'), 'parse_args'),
    'benchmarks/bench_data.py': (lambda: _load_file('benchmarks/bench_data.py'), 'parse_args'),
    'benchmarks/bench_deploy.py': (lambda: _load_file('benchmarks/bench_deploy.py'), 'parse_args'),
    'benchmarks/profile_detection.py': (lambda: _load_file('benchmarks/profile_detection.py'), 'main'),
    'benchmarks/profile_int8.py': (lambda: _load_file('benchmarks/profile_int8.py'), 'parse_args'),
}


@pytest.fixture(scope='module')
def parsers(monkeypatch_module):
    """Command -> its argparse parser, as the command builds it (captured when it parses)."""
    def capture(self, args=None, namespace=None):
        raise _Parsed(self)
    monkeypatch_module.setattr(argparse.ArgumentParser, 'parse_args', capture)
    found = {}
    for command, (load, function) in COMMANDS.items():
        with pytest.raises(_Parsed) as parsed:
            getattr(load(), function)([])
        found[command] = parsed.value.args[0]
    return found


@pytest.fixture(scope='module')
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _actions(parser):
    """Option string (or positional name) -> action, without --help."""
    out = {}
    for action in parser._actions:  # pylint: disable=protected-access
        if action.option_strings == ['-h', '--help']:
            continue
        for key in action.option_strings or [action.dest]:
            out[key] = action
    return out


def _design_section(title):
    text = open(os.path.join(REPO, 'docs', 'design.md')).read()
    return text.split('## ' + title, 1)[1].split('\n## ', 1)[0]


def test_every_command_and_flag_is_listed(parsers):
    """design.md lists each command's flags exactly: nothing missing, nothing that does not exist."""
    listed = dict(re.findall(r'^- \*\*(.+?)\*\*: (.*)$', _design_section('Flag vocabulary'), flags=re.M))
    assert sorted(listed) == sorted(COMMANDS)
    for command, parser in parsers.items():
        groups = [group.split('`/`') for group in re.findall(r'`([^`]+(?:`/`[^`]+)*)`', listed[command])]
        # Hidden options are the switches' opposites (cli.add_switch_opposites), stated once in the text.
        expected = [action.option_strings or [action.dest] for action in parser._actions  # pylint: disable=protected-access
                    if action.option_strings != ['-h', '--help'] and action.help != argparse.SUPPRESS]
        assert sorted(groups) == sorted(expected), command


def _vocabulary_table():
    rows = [line.strip('|').split('|') for line in _design_section('Flag vocabulary').split('\n')
            if line.startswith('|') and not line.startswith('|---')]
    header = [re.sub(r'`', '', cell).strip() for cell in rows[0][1:]]
    return header, [(cells[0].strip(), [c.strip() for c in cells[1:]]) for cells in rows[1:]]


def _default_text(value):
    return '' if value is None else str(value)


def test_vocabulary_table_matches_the_parsers(parsers):
    """Each cell's flags exist in that command (aliases of one flag as one action), with the stated default
    and meaning; a '—' cell means the command has none of the row's flags."""
    header, rows = _vocabulary_table()
    assert set(header) <= set(COMMANDS)
    for what, cells in rows:
        row_flags = {f for cell in cells for f in re.findall(r'`(-[-\w]+)`', cell)}
        for command, cell in zip(header, cells):
            actions = _actions(parsers[command])
            if cell == '—':
                assert not row_flags & set(actions), (what, command, row_flags & set(actions))
                continue
            for names in re.findall(r'`(-[-\w]+(?:`/`-[-\w]+)*)`', cell):
                names = names.split('`/`')
                assert all(n in actions for n in names), (what, command, names)
                assert len({id(actions[n]) for n in names}) == 1, (what, command, 'not one flag', names)
            default = re.search(r'= ([^,(]+)', cell)
            if default:
                flag = re.search(r'`(-[-\w]+)`', cell).group(1)
                assert _default_text(actions[flag].default) == default.group(1).strip(), (what, command)
            for phrase in ('per device', 'over all devices', 'for 8 images'):
                if phrase in cell:
                    flag = re.search(r'`(-[-\w]+)`', cell).group(1)
                    assert phrase in (actions[flag].help or ''), (what, command, phrase)


# ---- the architecture of docs/design.md: each layer imports only itself and the layers below ----

LAYERS = [
    ('base', ['fileio', 'threads', 'progress', 'procs', 'results']),
    ('models', ['layers', 'resnest', 'model_zoo', 'pretrained']),
    ('config', ['config', 'cli']),
    ('services', ['data', 'inference', 'loading', 'metrics', 'devices', 'finetune']),
    ('engine', ['engine']),
    ('jobs', ['train', 'classification', 'export', 'detection']),
    ('integration', ['gluoncv']),
    ('commands', ['summary']),
]


def _layer(module):
    top = module.split('.')[1] if module.count('.') else ''
    return next((rank for rank, (_, names) in enumerate(LAYERS) if top in names), None)


def _project_imports(path, package):
    """(node, target module) of each relative import in one file of the package."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.replace('.__init__', '').split('.')
            base = base[:len(base) - node.level + 1]
            yield node, '.'.join(base + ([node.module] if node.module else []))


def _package_files():
    """(path, dotted name, dotted package) of every module of gluon_resnest."""
    for path in glob.glob(os.path.join(REPO, 'gluon_resnest', '**', '*.py'), recursive=True):
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        yield path, rel, rel if rel.endswith('__init__') else rel.rsplit('.', 1)[0]


def _is_module(dotted):
    path = os.path.join(REPO, *dotted.split('.'))
    return os.path.isfile(path + '.py') or os.path.isdir(path)


def test_each_layer_imports_only_itself_and_lower_layers():
    for path, rel, package in _package_files():
        if rel == 'gluon_resnest.__init__':
            continue
        rank = _layer(rel)
        assert rank is not None, '%s is on no layer of docs/design.md' % rel
        for _, target in _project_imports(path, package):
            imported = _layer(target) if target.count('.') else None
            assert imported is None or imported <= rank, '%s (%s) imports %s (%s)' % (
                rel, LAYERS[rank][0], target, LAYERS[imported][0])


def test_modules_use_only_each_others_public_names():
    """What one module takes from another has a public name: no ``from .x import _y`` and no
    ``x._y`` on an imported project module."""
    found = []
    for path, rel, package in _package_files():
        modules = set()
        for node, target in _project_imports(path, package):
            for alias in node.names:
                if _is_module(target + '.' + alias.name):
                    modules.add(alias.asname or alias.name)
                elif alias.name.startswith('_') and not alias.name.startswith('__'):
                    found.append('%s imports %s from %s' % (rel, alias.name, target))
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in modules and node.attr.startswith('_') and \
                    not node.attr.startswith('__'):
                found.append('%s uses %s.%s' % (rel, node.value.id, node.attr))
    assert not found, found
