"""Run ``warpctc_pytorch.CTCLoss`` as the opt-in line provides it on the
cases of the JSON file given as its argument; print ``PROBE <json>`` with
each case's cost and the gradient of its ``acts``. Run in a fresh interpreter so the test
process never imports the opt-in line.

A case: ``acts`` (T x N x C nested lists), ``labels`` (1-D), ``act_lens``,
``label_lens``, and optionally ``log`` (take the log of ``acts`` first, as
warp-ctc's options test does), ``blank``, ``size_average``,
``length_average``.
"""
import json
import sys
import warnings

import davarocr_mmcv.compat.davarocr  # noqa: F401  the opt-in line
import torch

warnings.simplefilter('ignore')  # the stand-in's warning when built
import warpctc_pytorch  # noqa: E402


def run(case):
    acts = torch.tensor(case['acts'], dtype=torch.float32)
    if case.get('log'):
        acts = acts.log()
    acts.requires_grad_(True)
    loss = warpctc_pytorch.CTCLoss(
        blank=case.get('blank', 0),
        size_average=case.get('size_average', False),
        length_average=case.get('length_average', False))
    cost = loss(acts, torch.tensor(case['labels'], dtype=torch.int32),
                torch.tensor(case['act_lens'], dtype=torch.int32),
                torch.tensor(case['label_lens'], dtype=torch.int32))
    cost.backward()
    assert cost.shape == (1,)
    return dict(cost=repr(cost.item()),  # repr keeps inf
                grad=acts.grad.tolist(),
                softmax=acts.detach().softmax(2).tolist())


if __name__ == '__main__':
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    print('PROBE ' + json.dumps({name: run(case)
                                 for name, case in cases.items()}))
