"""The documentation says only what is true.

README.md, CHANGELOG.md and docs/*.md are read as a newcomer would use
them:

- every repository path, test name and ``davarocr_mmcv.*`` name they quote
  exists;
- every relative link resolves, anchors included (GitHub's heading slugs);
- every flag quoted after ``tools/*.py`` (or a ``.sh`` tool, whose extra
  arguments go to ``train.py`` / ``test.py``) is one the tool's ``--help``
  lists, so tools may gain flags without a change here;
- the version they quote is the package's;
- the README's two config snippets train: the DavarOCR one through
  ``train_model`` (what ``tools/train.py`` runs), the mmdet one through
  mmdet's own ``train_detector``, and each keeps the best.

It also checks the tools' own side of the promise: ``--help`` with a text
for every option, ``--version``, and the ``.sh`` tools' usage.
"""
import functools
import glob
import importlib
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from procs import run_bounded, tool_env  # noqa: E402

DOCS = sorted(['README.md', 'CHANGELOG.md'] + [
    osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs', '*.md'))])
#: A .sh tool passes its extra arguments to this Python tool.
SH_TOOLS = {'tools/dist_train.sh': 'tools/train.py',
            'tools/dist_test.sh': 'tools/test.py'}
TOOL = re.compile(r'(?<![\w./$-])((?:tools/\w+|demo/run_demo)\.(?:py|sh))\b')
FLAG = re.compile(r'(?<![\w-])--[A-Za-z][\w-]*')
#: Tools whose every option has a help text.
HELP_COMPLETE = ('tools/train.py', 'tools/test.py', 'tools/status.py',
                 'tools/publish.py', 'tools/plot_metrics.py',
                 'demo/run_demo.py')
SNIPPET = re.compile(
    r'<!--\s*docs-test:\s*(\w+)\s*-->\s*\n```python\n(.*?)```', re.S)


def read(doc):
    with open(osp.join(ROOT, doc), encoding='utf-8') as f:
        return f.read()


def split_fences(text):
    """(prose with the fenced blocks blanked, [(lang, body), ...])."""
    prose, blocks, lang, body = [], [], None, []
    for line in text.split('\n'):
        fence = re.match(r'^\s*```(\w*)', line)
        if lang is None and fence:
            lang, body = fence.group(1), []
            prose.append('')
        elif lang is not None and line.strip().startswith('```'):
            blocks.append((lang, '\n'.join(body)))
            lang = None
            prose.append('')
        elif lang is not None:
            body.append(line)
        else:
            prose.append(line)
    return '\n'.join(prose), blocks


def code_spans(prose):
    """Inline code spans of ``prose`` (they may wrap across lines)."""
    return [m.group(2).replace('\n', ' ')
            for m in re.finditer(r'(`+)(.+?)\1', prose, re.S)]


def quoted(doc):
    """Every piece of code ``doc`` quotes: inline spans and fenced blocks
    (shell continuation lines joined)."""
    prose, blocks = split_fences(read(doc))
    return code_spans(prose) + [body.replace('\\\n', ' ')
                                for _, body in blocks]


@functools.lru_cache()
def tracked_top():
    """Top-level names of the repository, and those of the package."""
    top = {n for n in os.listdir(ROOT) if n not in (
        '.git', '.venv', 'work_dirs', 'build', '.pytest_cache')}
    package = set(os.listdir(osp.join(ROOT, 'davarocr_mmcv')))
    return top, package


def path_problems(token):
    """Why ``token``, if it names a path of this repository, does not
    exist; None when it exists or names no path here."""
    token = token.strip('.,;:()"\'')
    if '::' in token:
        token = token.split('::')[0]
    if not token or re.search(r'[*<>{}$~\[\]=@]|://|^[-/]', token):
        return None
    parts = token.rstrip('/').split('/')
    top, package = tracked_top()
    if parts[0] in top and (len(parts) > 1 or token.endswith('/') or
                            '.' in parts[0]):
        return None if osp.exists(osp.join(ROOT, token)) else \
            f'{token} does not exist'
    if parts[0] in package and len(parts) > 1:
        where = osp.join(ROOT, 'davarocr_mmcv', token)
        return None if osp.exists(where) else \
            f'{token} is not in davarocr_mmcv/'
    return None


def tokens(piece):
    return re.split(r'[\s,;()\[\]|`"]+', piece)


@pytest.mark.parametrize('doc', DOCS)
def test_every_path_named_exists(doc):
    missing = {problem for piece in quoted(doc) for token in tokens(piece)
               for problem in [path_problems(token)] if problem}
    assert not missing, f'{doc}: {sorted(missing)}'


@functools.lru_cache()
def defined_tests():
    names = set()
    for path in glob.glob(osp.join(ROOT, 'tests', '**', '*.py'),
                          recursive=True):
        with open(path) as f:
            names.update(re.findall(r'^\s*def (test_\w+)', f.read(), re.M))
    return names


@pytest.mark.parametrize('doc', DOCS)
def test_every_test_named_exists(doc):
    named = {m for piece in quoted(doc)
             for m in re.findall(r'::(test_\w+)', piece)}
    missing = named - defined_tests()
    assert not missing, f'{doc}: {sorted(missing)}'


def is_module(dotted):
    try:
        return importlib.util.find_spec(dotted) is not None
    except ImportError:
        return False


def resolve_name(dotted):
    """Check that ``dotted`` names a module, or an attribute of one. A
    module is found without being imported (``compat.davarocr`` changes
    the process that imports it); an attribute's module is imported."""
    parts = dotted.split('.')
    for cut in range(len(parts), 0, -1):
        module = '.'.join(parts[:cut])
        if not is_module(module):
            continue
        if cut == len(parts):
            return module
        obj = importlib.import_module(module)
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize('doc', DOCS)
def test_every_package_name_resolves(doc):
    names = {m for piece in quoted(doc)
             for m in re.findall(r'\bdavarocr_mmcv(?:\.\w+)+', piece)}
    bad = []
    for name in sorted(names):
        try:
            resolve_name(name)
        except (ImportError, AttributeError) as exc:
            bad.append(f'{name}: {exc!r}')
    assert not bad, f'{doc}: {bad}'


# ------------------------------------------------------------------ links
def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


@functools.lru_cache()
def anchors(doc):
    prose, _ = split_fences(read(doc))
    seen, out = {}, set()
    for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', prose, re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f'{base}-{n}')
    return out


def links(doc):
    prose, _ = split_fences(read(doc))
    prose = re.sub(r'(`+)(.+?)\1', '', prose, flags=re.S)
    return re.findall(r'!?\[[^\]]*\]\(([^)\s]+)\)', prose)


@pytest.mark.parametrize('doc', DOCS)
def test_every_relative_link_resolves(doc):
    bad = []
    for target in links(doc):
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(osp.dirname(doc), path)) if path \
            else doc
        if not osp.exists(osp.join(ROOT, dest)):
            bad.append(f'{target}: {dest} does not exist')
        elif anchor and dest.endswith('.md') and \
                anchor not in anchors(dest):
            bad.append(f'{target}: no heading #{anchor} in {dest}')
    assert not bad, f'{doc}: {bad}'


def test_docs_are_linked_from_the_readme():
    """Every page of docs/ is reachable from the front page."""
    linked = {osp.normpath(t.partition('#')[0]) for t in links('README.md')}
    pages = {d for d in DOCS if d.startswith('docs/')} | {'CHANGELOG.md'}
    assert pages <= linked, sorted(pages - linked)


def test_readme_is_a_short_front_page():
    text = read('README.md')
    assert len(text.encode()) <= 15 * 1024
    # "what do I change in my config" on its first screen
    first_screen = '\n'.join(text.split('\n')[:45])
    assert 'What to change in your config' in first_screen
    assert "type='DavarCheckpointHook'" in first_screen


# ------------------------------------------------------------------ flags
@functools.lru_cache()
def help_text(tool):
    code, out = run_bounded([sys.executable, tool, '--help'], tool_env(ROOT),
                            timeout=180)
    assert code == 0, f'{tool} --help exited {code}:\n{out[-3000:]}'
    return out


def quoted_flags(doc):
    """{tool: {flags quoted after it}} for the commands ``doc`` quotes."""
    found = {}
    for piece in quoted(doc):
        piece = piece.replace('\\|', ' ')
        for command in re.split(r'\n|;|&&|\|\||(?<!\\)\|', piece):
            matches = list(TOOL.finditer(command))
            for i, m in enumerate(matches):
                end = matches[i + 1].start() if i + 1 < len(matches) \
                    else len(command)
                tool = SH_TOOLS.get(m.group(1), m.group(1))
                flags = set(FLAG.findall(command[m.end():end]))
                found.setdefault(tool, set()).update(flags)
    return found


@pytest.mark.parametrize('doc', DOCS)
def test_every_quoted_flag_is_accepted(doc):
    bad = []
    for tool, flags in sorted(quoted_flags(doc).items()):
        if not osp.exists(osp.join(ROOT, tool)):
            bad.append(f'{tool} does not exist')
            continue
        if tool.endswith('.sh'):
            continue  # its own options are environment variables
        accepted = set(FLAG.findall(help_text(tool)))
        bad += [f'{tool} {flag}' for flag in sorted(flags - accepted)]
    assert not bad, f'{doc} quotes flags the tools refuse: {bad}'


def options_without_help(text):
    """Options of an argparse ``--help`` listing that have no help text."""
    lines = text.split('\n')
    missing = []
    for i, line in enumerate(lines):
        if not re.match(r'^  -', line):
            continue
        if re.search(r'\S\s{2,}\S', line.strip()):
            continue  # help on the same line
        following = lines[i + 1] if i + 1 < len(lines) else ''
        if not re.match(r'^\s{4,}\S', following) or \
                re.match(r'^  -', following):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize('tool', HELP_COMPLETE)
def test_every_option_has_a_help_text(tool):
    text = help_text(tool)
    assert '--version' in text
    assert options_without_help(text) == [], text


@pytest.mark.parametrize('tool', HELP_COMPLETE)
def test_version(tool):
    from davarocr_mmcv import __version__
    code, out = run_bounded([sys.executable, tool, '--version'],
                            tool_env(ROOT), timeout=180)
    assert code == 0 and out.strip().endswith(__version__), out


def test_quoted_version_is_the_packages():
    from davarocr_mmcv import __version__
    pattern = (r'(?:[Vv]ersion|davarocr-mmcv|davarocr_mmcv-)\s*'
               r'(\d+\.\d+\.\d+)')
    quoted_versions = {(doc, v) for doc in DOCS
                       for v in re.findall(pattern, read(doc))}
    assert ('README.md', __version__) in quoted_versions
    assert {v for _, v in quoted_versions} == {__version__}


@pytest.mark.parametrize('script,expected', [
    ('tools/dist_train.sh', 'CONFIG NUM_PROCS'),
    ('tools/dist_test.sh', 'CONFIG CHECKPOINT NUM_PROCS'),
])
def test_sh_tools_print_their_usage(script, expected):
    run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    shown = run(['bash', script, '--help'])
    assert shown.returncode == 0 and shown.stdout.startswith(
        f'Usage: bash {script}'), shown
    for argv in ([], ['only-a-config']):
        wrong = run(['bash', script, *argv])
        assert wrong.returncode == 2, wrong
        assert f'Usage: bash {script}' in wrong.stderr
        assert 'unbound variable' not in wrong.stderr
        assert f'expected {expected} ' in wrong.stderr


# --------------------------------------------------------------- snippets
def snippets():
    found = dict(SNIPPET.findall(read('README.md')))
    assert set(found) == {'davarocr', 'mmdet'}, found.keys()
    return found


#: metric of the evaluation after each training step: the best, 0.9,
#: comes after 6 steps (epoch 3 of 6, 2 steps per epoch)
SCORES = {2: 0.1, 4: 0.5, 6: 0.9, 8: 0.3, 10: 0.7, 12: 0.2}


def snippet_config(name, tmp_path, rest):
    """The README's snippet ``name`` as a config file, loaded as the tools
    load one, completed with ``rest`` (which it must not set)."""
    from mmcv import Config
    path = tmp_path / f'{name}_snippet.py'
    path.write_text(snippets()[name])
    cfg = Config.fromfile(str(path))  # imports custom_imports
    assert not set(cfg) & set(rest), set(cfg) & set(rest)
    cfg.merge_from_dict(rest)
    return cfg


def register_dataset(keys):
    from mmdet.datasets import DATASETS
    from toy import ScriptedDataset

    class DocsScriptedDataset(ScriptedDataset):
        def __init__(self, test_mode=False, **kwargs):
            super().__init__(scores=SCORES, keys=keys, **kwargs)
            self.flag = np.zeros(self.size, dtype=np.uint8)

    DATASETS.register_module(name='DocsScriptedDataset', force=True,
                             module=DocsScriptedDataset)
    return DocsScriptedDataset


def rest_of_config(work_dir):
    return dict(
        work_dir=str(work_dir), gpu_ids=[0], device='cpu', seed=0,
        log_level='INFO', dist_params=dict(backend=None),
        data=dict(samples_per_gpu=2, workers_per_gpu=0,
                  train=dict(type='DocsScriptedDataset'),
                  val=dict(type='DocsScriptedDataset'),
                  test=dict(type='DocsScriptedDataset')),
        optimizer=dict(type='SGD', lr=0.01), optimizer_config=dict(),
        lr_config=dict(policy='fixed'),
        runner=dict(type='EpochBasedRunner', max_epochs=6),
        log_config=dict(interval=1, hooks=[dict(type='TextLoggerHook')]),
        workflow=[('train', 1)], resume_from=None, load_from=None)


def assert_best(work_dir, score, steps):
    files = sorted(os.listdir(work_dir))
    assert 'Best_checkpoint.pth' in files and 'latest_model.pth' in files
    assert not [f for f in files if re.match(r'(epoch|iter|best)_', f)]
    best = torch.load(osp.join(work_dir, 'Best_checkpoint.pth'),
                      map_location='cpu')
    assert best['meta']['hook_msgs']['best_score'] == score
    assert int(best['state_dict']['steps']) == steps


def test_davarocr_snippet_trains_and_keeps_the_best(tmp_path):
    """The README's DavarOCR snippet, trained by train_model as
    tools/train.py trains it: Best_checkpoint.pth holds the best."""
    from davarocr_mmcv.apis import train_model
    from toy import ToyModel
    dataset = register_dataset(keys=('accuracy', 'NED'))
    work = tmp_path / 'work'
    cfg = snippet_config('davarocr', tmp_path, rest_of_config(work))
    train_model(ToyModel(), [dataset()], cfg, validate=True,
                meta=dict(exp_name='docs'))
    assert_best(work, 0.9, 6)


@pytest.mark.parametrize('trainer', ['train_detector', 'train_model'])
def test_mmdet_snippet_trains_and_keeps_the_best(tmp_path, trainer):
    """The README's mmdet snippet, trained by mmdet 2.28's own
    train_detector (mmdet's EvalHook evaluates) and by train_model
    (tools/train.py's; DavarEvalHook evaluates): DavarCheckpointHook keeps
    the best, TrainStatusHook writes status.json."""
    from mmdet.apis import train_detector
    from davarocr_mmcv.apis import train_model
    from toy import ToyModel
    train = dict(train_detector=train_detector, train_model=train_model)
    dataset = register_dataset(keys=('bbox_mAP', ))
    work = tmp_path / 'work'
    cfg = snippet_config('mmdet', tmp_path, rest_of_config(work))
    train[trainer](ToyModel(), [dataset()], cfg, validate=True,
                   meta=dict(exp_name='docs'))
    assert_best(work, 0.9, 6)
    with open(work / 'status.json') as f:
        assert json.load(f)['state'] == 'finished'
