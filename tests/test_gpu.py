"""The GPU paths, on an NVIDIA GPU with mmcv-full built with CUDA ops
(``tools/gpu_check.sh`` runs them; ``pytest -m gpu``): mmcv's CUDA kernels
under the detection demo, CUDA checkpoints read where no GPU is seen,
NCCL through tools/dist_train.sh, multi_gpu_test on CUDA results, and with
two GPUs NCCL training with evaluation and an elastic restart.

Skipped, with the reason, where torch sees no GPU or mmcv-full has CPU ops
only. The CPU twins of these tests are in test_tools_e2e.py,
test_distributed.py, test_elastic.py and test_test_loops.py.
"""
import glob
import json
import os
import sys

import pytest
import torch

from davarocr_mmcv.serialization import load_checkpoint_file
from dist_workers import dist_loader, launch
from procs import run_bounded
from toy import ScriptedDataset


def missing_gpu():
    """Why the GPU tests cannot run here, or None."""
    if not torch.cuda.is_available():
        return 'torch sees no GPU (torch.cuda.is_available() is False)'
    from mmcv.ops import get_compiling_cuda_version
    if get_compiling_cuda_version() == 'not available':
        return ('mmcv-full was built with CPU ops only: no CUDA compiler '
                'when tools/setup_env.sh ran (its output says how to fix it)')
    return None


MISSING = missing_gpu()
GPUS = torch.cuda.device_count() if MISSING is None else 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]
two_gpus = pytest.mark.skipif(
    GPUS < 2, reason=str(MISSING or f'needs 2 GPUs, torch sees {GPUS}'))

RECOGNITION = 'demo/recognition/crnn_lightweight.py'
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
           PYTHON=sys.executable)
NO_GPU = dict(ENV, CUDA_VISIBLE_DEVICES='')
SHORT = ['--cfg-options', 'runner.max_epochs=2']


def cmd(args, env=ENV, timeout=600):
    code, out = run_bounded(args, env, timeout)
    assert code == 0, f'{args} exited {code}:\n{out[-6000:]}'
    return out


def json_records(work):
    """Every record of the json logs of ``work`` (first lines: configs)."""
    found = []
    for path in sorted(glob.glob(os.path.join(str(work), '*.log.json'))):
        with open(path) as f:
            found += [json.loads(line) for line in f if line.strip()][1:]
    return found


def dumped_backend(work, config):
    """The dist_params.backend of the config tools/train.py dumped."""
    from mmcv import Config
    return Config.fromfile(os.path.join(
        str(work), os.path.basename(config))).dist_params['backend']


# ------------------------------------------------------- mmcv's CUDA kernels
def test_mmcv_cuda_kernels_agree_with_the_cpu_ones():
    from mmcv.ops import RoIAlign, batched_nms, nms
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 30],
                      1)
    scores = torch.rand(200, generator=gen)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep_gpu.is_cuda and keep_gpu.cpu().tolist() == keep_cpu.tolist()
    labels = torch.randint(0, 3, (200, ), generator=gen)
    cfg = dict(type='nms', iou_threshold=0.5)
    _, kept_cpu = batched_nms(boxes, scores, labels, cfg)
    _, kept_gpu = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), cfg)
    assert kept_gpu.cpu().tolist() == kept_cpu.tolist()

    feats = torch.rand(2, 8, 32, 32, generator=gen)
    rois = torch.tensor([[0, 1., 1., 20., 20.], [1, 4., 2., 30., 12.]])
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)
    out_cpu = align(feats, rois)
    feats_gpu = feats.cuda().requires_grad_()
    out_gpu = align(feats_gpu, rois.cuda())
    assert out_gpu.is_cuda
    assert torch.allclose(out_gpu.cpu(), out_cpu, atol=1e-5)
    out_gpu.sum().backward()  # the backward kernel too
    assert feats_gpu.grad.is_cuda and float(feats_gpu.grad.abs().sum()) > 0


def test_detection_demo_trains_and_validates_on_cuda(tmp_path):
    # mmdet's RetinaNet: its validation runs mmcv's nms on CUDA tensors
    work = tmp_path / 'work'
    out = cmd([sys.executable, 'demo/run_demo.py', '--detection', '--quick',
               '--work-dir', str(work)])
    assert 'Summary' in out
    logged = json_records(work)
    train = [r for r in logged if r.get('mode') == 'train']
    # mmcv logs the GPU memory the training took: it ran on cuda:0
    assert train and all(r.get('memory', 0) > 0 for r in train)
    maps = [r['bbox_mAP'] for r in logged if 'bbox_mAP' in r]
    assert len(maps) == 2
    assert glob.glob(str(work / 'best_bbox_mAP_epoch_*.pth'))


# ------------------------------------- a CUDA checkpoint where no GPU is seen
@pytest.fixture(scope='module')
def cuda_run(tmp_path_factory):
    """The recognition demo trained on cuda:0 (Davar mode: a
    Best_checkpoint.pth)."""
    work = tmp_path_factory.mktemp('cuda') / 'work'
    cmd([sys.executable, 'tools/train.py', RECOGNITION, '--work-dir',
         str(work), '--validate', '--gpu-id', '0', *SHORT])
    return work


LOAD = r'''
import sys, torch
assert not torch.cuda.is_available()
ckpt = torch.load(sys.argv[1])  # torch's defaults, no map_location
devices = {t.device.type for t in ckpt['state_dict'].values()}
print(sorted(devices), ckpt['meta']['hook_msgs']['best_score'])
'''


def test_cuda_best_checkpoint_loads_and_retests_without_a_gpu(cuda_run):
    best = cuda_run / 'Best_checkpoint.pth'
    logged = load_checkpoint_file(str(best))['meta']['hook_msgs']
    train = [r for r in json_records(cuda_run) if r.get('mode') == 'train']
    assert train and all(r.get('memory', 0) > 0 for r in train)

    out = cmd([sys.executable, '-c', LOAD, str(best)], NO_GPU)
    devices, score = out.strip().splitlines()[-1].rsplit(' ', 1)
    assert devices == "['cpu']"
    assert float(score) == logged['best_score']

    out = cmd([sys.executable, 'tools/test.py', RECOGNITION, str(best),
               '--eval', 'accuracy', 'NED'], NO_GPU)
    metrics = json.loads(out.strip().splitlines()[-1])
    # the CPU's kernels may round a borderline prediction otherwise than
    # the GPU's did: within one word in fifty
    assert metrics['accuracy'] == pytest.approx(logged['best_score'],
                                                abs=0.02)


# ------------------------------------------------------------------- NCCL
def test_dist_train_sh_one_process_on_nccl(tmp_path):
    work = tmp_path / 'work'
    out = cmd(['bash', 'tools/dist_train.sh', RECOGNITION, '1', '--work-dir',
               str(work), '--validate', *SHORT])
    assert 'Distributed training: True' in out
    assert dumped_backend(work, RECOGNITION) == 'nccl'
    assert sorted(os.path.basename(p) for p in glob.glob(
        str(work / '*.pth'))) == ['Best_checkpoint.pth', 'latest.pth',
                                  'latest_model.pth']


class CudaResults(torch.nn.Module):
    """Predicts each sample's index as a tensor on this rank's GPU."""

    def forward(self, x, return_loss=False, **kwargs):
        device = torch.cuda.current_device()
        return [torch.tensor([float(v)], device=device) for v in x[:, 0]]


def collect_cuda_results(rank, world_size, out, size, how):
    from davarocr_mmcv.apis import multi_gpu_test
    results = multi_gpu_test(
        CudaResults(), dist_loader(ScriptedDataset(size=size)),
        tmpdir=None if how == 'group' else os.path.join(out, 'tmp'),
        gpu_collect=how == 'gpu_collect', model_type='RECOGNIZOR')
    if results is not None:
        results = [[float(r), r.device.type] for r in results]
    with open(os.path.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f)


@pytest.mark.parametrize('how', ['group', 'files', 'gpu_collect'])
def test_multi_gpu_test_gathers_cuda_results_on_nccl(tmp_path, how):
    # one rank per GPU (NCCL allows no two on one GPU), two at most
    world = min(GPUS, 2)
    launch(collect_cuda_results, world, 180, str(tmp_path), 7, how,
           backend='nccl')
    with open(tmp_path / 'rank0.json') as f:
        assert json.load(f) == [[float(i), 'cuda'] for i in range(7)]
    if world == 2:
        with open(tmp_path / 'rank1.json') as f:
            assert json.load(f) is None
    assert not (tmp_path / 'tmp').exists() or not os.listdir(tmp_path / 'tmp')


@two_gpus
def test_two_nccl_processes_train_with_evaluation(tmp_path):
    work = tmp_path / 'work'
    out = cmd(['bash', 'tools/dist_train.sh', RECOGNITION, '2', '--work-dir',
               str(work), '--validate', *SHORT])
    assert 'Distributed training: True' in out
    assert dumped_backend(work, RECOGNITION) == 'nccl'
    names = sorted(os.listdir(work))
    assert len([n for n in names if n.endswith('.log')]) == 1  # rank 0's
    best = load_checkpoint_file(str(work / 'Best_checkpoint.pth'))
    scores = [r['accuracy'] for r in json_records(work)
              if r.get('mode') == 'val' and 'accuracy' in r]
    assert scores
    assert best['meta']['hook_msgs']['best_score'] == max(scores)


@two_gpus
def test_kill9_of_an_nccl_rank_restarts_and_ends_with_the_best(tmp_path):
    # test_elastic.py's run, on NCCL: rank 1 dies by SIGKILL in training,
    # torchrun restarts both, the run continues from the newest checkpoint
    from test_elastic import ENV as ELASTIC_ENV
    from test_elastic import write_config
    config = write_config(tmp_path, 'train')
    with open(config) as f:
        text = f.read()
    with open(config, 'w') as f:
        f.write(text.replace("backend='gloo'", "backend='nccl'"))
    probe = tmp_path / 'probe'
    probe.mkdir()
    work = tmp_path / 'work'
    out = cmd(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
               str(work)], dict(ELASTIC_ENV, MAX_RESTARTS='1',
                                DAVAR_PROBE_DIR=str(probe)))
    assert dumped_backend(work, config) == 'nccl'
    assert json.loads((probe / 'killed.json').read_text())['where'] == \
        'train'
    assert out.count('exitcode: -9') == 1
    assert 'torchrun restart 1 of at most 1: auto-resume from' in out
    scores = [r['accuracy'] for r in json_records(work)
              if r.get('mode') == 'val' and 'accuracy' in r]
    latest = load_checkpoint_file(str(work / 'latest_model.pth'))['meta']
    assert latest['epoch'] == 2
    assert latest['hook_msgs']['best_score'] == max(scores)
