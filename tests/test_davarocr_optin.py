"""The opt-in line's run-time changes, each checked in a fresh interpreter
so that this process never imports it:

- its ``warpctc_pytorch.CTCLoss`` against warp-ctc's own published test
  cases (baidu-research/warp-ctc ``tests/test_cpu.cpp`` and the torch7
  bindings' reference costs that SeanNaren/warp-ctc's ``pytorch_binding``
  tests carry): costs and gradients, with ``size_average``,
  ``length_average`` and both (DavarOCR's ``res32_bilstm_ctc.py``), an
  impossible alignment and a label of probability 0. The expected numbers
  are those tests' facts, never computed here with torch's ``ctc_loss``;
- numpy's removed aliases (``np.int``, ...), which DavarOCR calls at run
  time.
"""
import ast
import json
import math
import os
import sys

import pytest

from procs import ROOT, run_bounded

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    filter(None, [ROOT, os.environ.get('PYTHONPATH')])))

# ---------------------------------------------- warp-ctc's published cases
# acts are (T, N, C); labels of the batch one after the other.
SIMPLE = dict(acts=[[[0.1, 0.6, 0.1, 0.1, 0.1]], [[0.1, 0.1, 0.6, 0.1, 0.1]]],
              labels=[1, 2], act_lens=[2], label_lens=[2])
MEDIUM_ACTS = [[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1]],
               [[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1]]]
MEDIUM = dict(acts=MEDIUM_ACTS, labels=[1, 2, 1, 2], act_lens=[2, 2],
              label_lens=[2, 2])
STABILITY = dict(MEDIUM, acts=[[[200 * a for a in row] for row in frame]
                               for frame in MEDIUM_ACTS])
EMPTY_LABEL = dict(acts=MEDIUM_ACTS, labels=[1, 2], act_lens=[2, 2],
                   label_lens=[2, 0])
# test_cpu.cpp's options_test: probabilities (their log is passed), blank 5
OPTIONS_PROBS = [
    [[0.633766, 0.221185, 0.0917319, 0.0129757, 0.0142857, 0.0260553],
     [0.30176, 0.28562, 0.0831517, 0.0862751, 0.0816851, 0.161508]],
    [[0.111121, 0.588392, 0.278779, 0.0055756, 0.00569609, 0.010436],
     [0.24082, 0.397533, 0.0557226, 0.0546814, 0.0557528, 0.19549]],
    [[0.0357786, 0.633813, 0.321418, 0.00249248, 0.00272882, 0.0037688],
     [0.230246, 0.450868, 0.0389607, 0.038309, 0.0391602, 0.202456]],
    [[0.0663296, 0.643849, 0.280111, 0.00283995, 0.0035545, 0.00331533],
     [0.280884, 0.429522, 0.0326593, 0.0339046, 0.0326856, 0.190345]],
    [[0.458235, 0.396634, 0.123377, 0.00648837, 0.00903441, 0.00623107],
     [0.423286, 0.315517, 0.0338439, 0.0393744, 0.0339315, 0.154046]]]
OPTIONS_GRADS = [
    [[-0.366234, 0.221185, 0.0917319, 0.0129757, 0.0142857, 0.0260553],
     [-0.69824, 0.28562, 0.0831517, 0.0862751, 0.0816851, 0.161508]],
    [[0.111121, -0.411608, 0.278779, 0.0055756, 0.00569609, 0.010436],
     [0.24082, -0.602467, 0.0557226, 0.0546814, 0.0557528, 0.19549]],
    [[0.0357786, 0.633813, -0.678582, 0.00249248, 0.00272882, 0.0037688],
     [0.230246, 0.450868, 0.0389607, 0.038309, 0.0391602, -0.797544]],
    [[0.0663296, -0.356151, 0.280111, 0.00283995, 0.0035545, 0.00331533],
     [0.280884, -0.570478, 0.0326593, 0.0339046, 0.0326856, 0.190345]],
    [[-0.541765, 0.396634, 0.123377, 0.00648837, 0.00903441, 0.00623107],
     [-0.576714, 0.315517, 0.0338439, 0.0393744, 0.0339315, 0.154046]]]
OPTIONS = dict(acts=OPTIONS_PROBS, log=True, blank=5,
               labels=[0, 1, 2, 1, 0, 0, 1, 1, 0], act_lens=[5, 5],
               label_lens=[5, 4])
# sample 0 has one alignment (5 labels, 5 frames): its probabilities' product
OPTIONS_COSTS = [-math.log(OPTIONS_PROBS[0][0][0] * OPTIONS_PROBS[1][0][1] *
                           OPTIONS_PROBS[2][0][2] * OPTIONS_PROBS[3][0][1] *
                           OPTIONS_PROBS[4][0][0]), 5.42262]
# SIMPLE beside a sample whose 2 frames cannot hold labels [3, 3] (a blank
# must separate the repeat): warp-ctc's cpu_ctc.h costs it 0, no gradient
IMPOSSIBLE = dict(acts=[[SIMPLE['acts'][0][0], [0.1, 0.1, 0.6, 0.1, 0.1]],
                        [SIMPLE['acts'][1][0], [0.6, 0.1, 0.1, 0.1, 0.1]]],
                  labels=[1, 2, 3, 3], act_lens=[2, 2], label_lens=[2, 2])
# test_cpu.cpp's inf_test: label 2 first, its activation -1e30 everywhere
ZERO_PROB_ACTS = [[[-1e30 if c == 2 else ((7 * t + 3 * c) % 5) / 5
                    for c in range(5)]] for t in range(8)]
ZERO_PROB = dict(acts=ZERO_PROB_ACTS, labels=[2, 3, 1], act_lens=[8],
                 label_lens=[3])

# (size_average, length_average) -> what warp-ctc divides by
FLAGS = {'none': (False, False), 'size_average': (True, False),
         'length_average': (False, True), 'both': (True, True)}


def divisor(flags, case):
    size_average, length_average = FLAGS[flags]
    if length_average:  # supersedes size_average
        return sum(case['act_lens'])
    return len(case['act_lens']) if size_average else 1


CASES = {'simple': SIMPLE, 'medium': MEDIUM, 'stability': STABILITY,
         'empty_label': EMPTY_LABEL, 'options': OPTIONS,
         'impossible': IMPOSSIBLE, 'zero_prob': ZERO_PROB}


@pytest.fixture(scope='module')
def probed(tmp_path_factory):
    """Every case under every flag setting, from one fresh interpreter."""
    cases = {}
    for name, case in CASES.items():
        for flags, (size_average, length_average) in FLAGS.items():
            cases[f'{name}/{flags}'] = dict(case, size_average=size_average,
                                            length_average=length_average)
    path = tmp_path_factory.mktemp('warpctc') / 'cases.json'
    path.write_text(json.dumps(cases))
    code, out = run_bounded(
        [sys.executable, os.path.join(HERE, 'warpctc_probe.py'), str(path)],
        ENV)
    assert code == 0, out
    [line] = [x for x in out.splitlines() if x.startswith('PROBE ')]
    return json.loads(line[len('PROBE '):])


def cost(result):
    return float(result['cost'])


def assert_close(actual, expected, tol):
    flat_a, flat_e = flatten(actual), flatten(expected)
    assert len(flat_a) == len(flat_e)
    for a, e in zip(flat_a, flat_e):
        assert a == pytest.approx(e, abs=tol), (a, e)


def flatten(nested):
    if isinstance(nested, list):
        return [x for item in nested for x in flatten(item)]
    return [nested]


def scaled(nested, by):
    return [scaled(x, by) for x in nested] if isinstance(nested, list) \
        else nested / by


def softmax(row):
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize('flags', sorted(FLAGS))
@pytest.mark.parametrize('name, expected', [
    ('simple', 2.4628584384918), ('medium', 6.0165174007416),
    ('stability', 199.96618652344), ('empty_label', 6.416517496109),
    ('options', sum(OPTIONS_COSTS)),
    ('impossible', 2.4628584384918)])  # the impossible sample costs 0
def test_warp_ctc_costs(probed, name, expected, flags):
    result = probed[f'{name}/{flags}']
    assert cost(result) == pytest.approx(
        expected / divisor(flags, CASES[name]), abs=1e-4)


def test_length_average_supersedes_size_average(probed):
    """DavarOCR's res32_bilstm_ctc.py sets both: the loss per frame."""
    both, frames = probed['medium/both'], probed['medium/length_average']
    assert cost(both) == cost(frames) == pytest.approx(6.0165174007416 / 4,
                                                       abs=1e-5)
    assert both['grad'] == frames['grad']
    assert cost(probed['medium/size_average']) == pytest.approx(
        6.0165174007416 / 2, abs=1e-5)


@pytest.mark.parametrize('flags', sorted(FLAGS))
def test_warp_ctc_gradients(probed, flags):
    """test_cpu.cpp's options_test gradients (from TensorFlow), and SIMPLE's
    single alignment: the softmax less 1 on the aligned labels."""
    result = probed[f'options/{flags}']
    assert_close(result['grad'], scaled(OPTIONS_GRADS,
                                        divisor(flags, OPTIONS)), 1e-4)
    simple = [[softmax(frame[0])] for frame in SIMPLE['acts']]
    simple[0][0][1] -= 1
    simple[1][0][2] -= 1
    assert_close(probed[f'simple/{flags}']['grad'],
                 scaled(simple, divisor(flags, SIMPLE)), 1e-6)


@pytest.mark.parametrize('flags', sorted(FLAGS))
def test_impossible_alignment_costs_nothing_and_moves_nothing(probed,
                                                              flags):
    result = probed[f'impossible/{flags}']
    assert [frame[1] for frame in result['grad']] == [[0.0] * 5] * 2
    # the possible sample's gradient is SIMPLE's, divided over the batch
    simple = probed['simple/none']['grad']
    assert_close([[frame[0]] for frame in result['grad']],
                 scaled(simple, divisor(flags, IMPOSSIBLE)), 1e-6)


@pytest.mark.parametrize('flags', sorted(FLAGS))
def test_label_of_probability_zero_costs_inf_with_finite_gradients(
        probed, flags):
    """inf_test: the cost is inf and no gradient is NaN; in cpu_ctc.h no
    alignment reaches any label, so each gradient is the probability."""
    result = probed[f'zero_prob/{flags}']
    assert math.isinf(cost(result)) and cost(result) > 0
    expected = [[softmax(frame[0])] for frame in ZERO_PROB_ACTS]
    assert_close(result['grad'], scaled(expected, divisor(flags, ZERO_PROB)),
                 1e-6)


def test_two_dimensional_labels_are_refused_by_name():
    code, out = run_bounded([sys.executable, '-c', (
        'import davarocr_mmcv.compat.davarocr, torch, warpctc_pytorch\n'
        'warpctc_pytorch.CTCLoss()(torch.zeros(2, 1, 5), '
        'torch.tensor([[1, 2]]), torch.tensor([2]), torch.tensor([2]))')],
        ENV)
    assert code != 0
    assert 'ValueError: labels must be 1-D, the targets of the batch one ' \
        'after the other (as warp-ctc takes them), got shape (1, 2)' in out


# ------------------------------------------------------ numpy's aliases
NUMPY = r"""
import warnings
import numpy as np
NAMES = ('bool', 'int', 'float', 'complex', 'object', 'str', 'long',
         'unicode')
def has(name):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return hasattr(np, name)
before = {name: has(name) for name in NAMES}
import davarocr_mmcv.compat.davarocr
after = {name: getattr(np, name).__name__ for name in NAMES}
# DavarOCR's run-time calls: PostMaskRCNN, loading_utils, att_converter
poly = np.array([[1.7, 2.2], [3.9, 4.1]]).astype(np.int)
print('NUMPY', {'before': before, 'after': after,
                'poly': poly.tolist(), 'dtype': str(poly.dtype),
                'zeros': str(np.zeros((4, 2), dtype=np.int).dtype),
                'long': str(np.full((1, 2), 3, dtype=np.long).dtype),
                'float': str(np.zeros(1, np.float).dtype)})
"""


def test_opt_in_restores_numpy_aliases_davarocr_calls():
    code, out = run_bounded([sys.executable, '-c', NUMPY], ENV)
    assert code == 0, out
    [line] = [x for x in out.splitlines() if x.startswith('NUMPY ')]
    result = ast.literal_eval(line[len('NUMPY '):])
    lacking = [name for name, had in result['before'].items() if not had]
    expected = dict(bool='bool', int='int', float='float', complex='complex',
                    object='object', str='str', long='int', unicode='str')
    for name in lacking:
        assert result['after'][name] == expected[name], name
    assert result['poly'] == [[1, 2], [3, 4]]
    assert result['dtype'] == result['zeros'] == result['long'] == 'int64'
    assert result['float'] == 'float64'
    # this process never imported the opt-in line
    assert 'davarocr_mmcv.compat.davarocr' not in sys.modules
