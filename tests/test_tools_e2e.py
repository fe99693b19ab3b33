"""End-to-end runs of tools/train.py, tools/test.py and tools/dist_train.sh
on the bundled demos, shortened; each bounded in time, processes cleaned
up."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from davarocr_mmcv.serialization import load_checkpoint_file
from procs import run_bounded

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECOGNITION = 'demo/recognition/crnn_lightweight.py'
DETECTION = 'demo/detection/tiny_detector.py'
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
           PYTHON=sys.executable)


def short(epochs):
    return ['--cfg-options', f'runner.max_epochs={epochs}']


def cmd(args, timeout=420, check=True):
    code, out = run_bounded(args, ENV, timeout)
    if check and code != 0:
        raise AssertionError(f'{args} exited {code}:\n{out[-6000:]}')
    return out


def train(config, work_dir, *extra, timeout=420):
    return cmd([sys.executable, 'tools/train.py', config, '--work-dir',
                str(work_dir), '--validate', *extra], timeout=timeout)


def pth(work_dir):
    return sorted(os.path.basename(p)
                  for p in glob.glob(os.path.join(str(work_dir), '*.pth')))


def msgs(path):
    return load_checkpoint_file(str(path))['meta']['hook_msgs']


@pytest.fixture(scope='module')
def recognition_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('rec') / 'work'
    out = train(RECOGNITION, work, *short(3))
    return work, out


def test_train_recognition_lightweight(recognition_run):
    work, out = recognition_run
    assert pth(work) == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    best = msgs(work / 'Best_checkpoint.pth')
    assert best['best_metric'] == 'accuracy'
    history = best['eval_history']
    assert history and all('NED' in h['metrics'] for h in history)
    accuracies = [h['metrics']['accuracy'] for h in history]
    epochs = [h['metrics']['accuracy'] for h in history
              if h['unit'] == 'epoch']
    assert best['best_score'] in accuracies
    assert best['best_score'] >= max(epochs)
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))
    assert latest['meta']['epoch'] == 3
    logs = glob.glob(str(work / '*.log.json'))
    assert logs and 'accuracy' in open(logs[0]).read()


def test_test_py_reproduces_logged_best(recognition_run):
    work, _ = recognition_run
    out = cmd([sys.executable, 'tools/test.py', RECOGNITION,
               str(work / 'Best_checkpoint.pth'), '--eval', 'accuracy',
               'NED'])
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics['accuracy'] == pytest.approx(
        msgs(work / 'Best_checkpoint.pth')['best_score'])


def test_auto_resume_after_interrupted_run(tmp_path):
    work = tmp_path / 'work'
    args = [sys.executable, 'tools/train.py', RECOGNITION, '--work-dir',
            str(work), '--validate', *short(3)]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (
                work / 'latest_model.pth').exists():
            time.sleep(0.2)
        assert (work / 'latest_model.pth').exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    out = cmd(args + ['--auto-resume'])
    assert 'auto-resume from' in out
    assert re.search(r'resumed (from )?epoch:? \d', out)
    final = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert final['epoch'] == 3 and final['epoch'] > first['epoch']
    assert pth(work) == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    # every evaluation of the resumed run (the one of the resumed weights
    # before training included, when it resumed at an epoch's end) has its
    # json 'val' record
    resumed_log = sorted(glob.glob(str(work / '*.log.json')))[-1]
    with open(resumed_log) as f:
        records = [json.loads(line) for line in f if line.strip()]
    history = final['hook_msgs']['eval_history']
    new = history[len(first['hook_msgs'].get('eval_history', [])):]
    assert [r['accuracy'] for r in records if r.get('mode') == 'val'] == \
        [h['metrics']['accuracy'] for h in new]


def test_dist_train_two_gloo_processes(tmp_path):
    work = tmp_path / 'work'
    out = cmd(['bash', 'tools/dist_train.sh', RECOGNITION, '2',
               '--work-dir', str(work), '--validate', *short(2)])
    assert 'Distributed training: True' in out
    names = sorted(os.listdir(work))
    assert pth(work) == ['Best_checkpoint.pth', 'latest.pth', 'latest_model.pth']
    assert not [n for n in names if n.startswith('.davar-tmp')]
    # one text log: only rank 0 writes files
    assert len([n for n in names if n.endswith('.log')]) == 1
    best = msgs(work / 'Best_checkpoint.pth')
    assert best['best_metric'] == 'accuracy'


def test_train_detection_general_mode(tmp_path):
    work = tmp_path / 'work'
    train(DETECTION, work, '--cfg-options', 'runner.max_epochs=2')
    names = pth(work)
    assert 'epoch_2.pth' in names and 'latest.pth' in names
    assert [n for n in names if n.startswith('best_bbox_mAP_epoch_')]


def test_detection_through_mmdet_train_detector(tmp_path):
    code = f'''
import sys
sys.path.insert(0, {ROOT!r})
from mmcv import Config
from mmdet.apis import train_detector
from mmdet.datasets import build_dataset
from mmdet.models import build_detector
cfg = Config.fromfile({os.path.join(ROOT, DETECTION)!r})
cfg.work_dir = {str(tmp_path / 'work')!r}
cfg.runner.max_epochs = 1
cfg.gpu_ids = [0]
cfg.device = 'cpu'
cfg.seed = 0
cfg.evaluation.pop('type', None)
model = build_detector(cfg.model)
model.init_weights()
datasets = [build_dataset(cfg.data.train)]
model.CLASSES = datasets[0].CLASSES
train_detector(model, datasets, cfg, distributed=False, validate=True)
print('done')
'''
    out = cmd([sys.executable, '-c', code])
    assert 'done' in out
    assert 'epoch_1.pth' in pth(tmp_path / 'work')


def test_published_model_round_trips_through_test_py(recognition_run,
                                                     tmp_path):
    work, _ = recognition_run
    out = cmd([sys.executable, 'tools/publish.py', str(work), '--out',
               str(tmp_path / 'release')])
    published = glob.glob(str(tmp_path / 'release' / '*-*.pth'))
    assert len(published) == 1 and glob.glob(
        str(tmp_path / 'release' / '*.tar.gz'))
    assert 'optimizer' not in load_checkpoint_file(published[0])
    out = cmd([sys.executable, 'tools/test.py', RECOGNITION, published[0],
               '--eval', 'accuracy'])
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics['accuracy'] == pytest.approx(
        msgs(work / 'Best_checkpoint.pth')['best_score'])


def test_dist_test_sh_matches_single_process(recognition_run):
    work, _ = recognition_run
    best = str(work / 'Best_checkpoint.pth')
    single = cmd([sys.executable, 'tools/test.py', RECOGNITION, best,
                  '--eval', 'accuracy', 'NED'])
    dist = cmd(['bash', 'tools/dist_test.sh', RECOGNITION, best, '2',
                '--eval', 'accuracy', 'NED'])
    assert json.loads(dist.strip().splitlines()[-1]) == \
        json.loads(single.strip().splitlines()[-1])
