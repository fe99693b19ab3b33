"""Opt-in: DavarOCR's own source imports and runs on mmcv-full 1.7.1,
mmdet 2.28, torch 2 and numpy 1.24 or later.

DavarOCR (head of hikopensource/DAVAR-Lab-OCR) was written for mmcv 1.3,
mmdet 2.11, torch 1.x and numpy < 1.24; on this stack ``import davarocr``
(any of its modules imports all of its sub-packages) stops at four places,
and its code meets numpy's removed aliases at run time. Put this
module in a DavarOCR config's ``custom_imports``, *before* DavarOCR's
modules (mmcv imports them in list order)::

    custom_imports = dict(
        imports=['davarocr_mmcv.compat.davarocr',
                 'davarocr.davar_common', 'davarocr.davar_rcg'],
        allow_failed_imports=False)

Importing it imports davarocr_mmcv first (its package), so davarocr_mmcv's
hooks and runners keep their names (see ``compat/registry.py``).

Importing it changes exactly these five things, and nothing else (nothing
is written to disk; a process that does not import it sees none of them):

1. ``mmdet.models.builder.build`` (removed in mmdet 2.12; DavarOCR's
   ``davar_common``, ``davar_rcg``, ``davar_ner`` and ``davar_spotting``
   builders import it) is defined as mmdet 2.11 behaved: a config is built
   by ``registry.build(cfg, default_args=...)``, a list of configs into an
   ``nn.Sequential``.
2. ``torch._six`` (removed in torch 2.0; ``davarocr.mmcv``'s
   ``ReduceonplateauLrUpdaterHook`` imports ``inf`` from it) becomes
   importable, holding ``inf`` (``math.inf``) and nothing else.
3. ``warpctc_pytorch`` (Baidu's warp-ctc bindings, a compiled extension
   that ``davar_rcg``'s ``WarpCTCLoss`` imports whenever ``davar_rcg`` is
   imported) becomes importable where it is not installed. Its ``CTCLoss``
   gives warp-ctc's costs and gradients, computed with torch's
   ``ctc_loss`` on any device: ``acts`` are unnormalised scores (T, N, C)
   and ``labels`` the batch's targets one after the other (1-D); the loss
   (shape (1,)) is summed over the batch, then divided by the total number
   of frames with ``length_average``, which supersedes ``size_average``,
   or else by the batch size with ``size_average``; the gradients are
   divided alike. As in warp-ctc, the cost is taken from the log of
   float32 probabilities (so very large scores cost what warp-ctc says),
   a sample whose frames are too few for its labels (fewer than its label
   count plus its repeated neighbours) costs 0 with zero gradients, and a
   sample whose path meets a probability of 0 (an activation 1e30 below
   the others, say) costs ``inf``, with the softmax of its frames as
   gradients. Building it warns once that the stand-in is in use. So a
   config with ``WarpCTCHead`` / ``WarpCTCLoss`` trains unchanged,
   DavarOCR's ``res32_bilstm_ctc.py`` (both flags: the loss per frame)
   included; DavarOCR's ``WarpCTCLoss.forward`` still moves the loss to
   CUDA itself.
4. In mmdet's ``MODELS`` (``BACKBONES``, ``HEADS``, ``LOSSES``, ...),
   ``DATASETS`` and ``PIPELINES`` registries, a DavarOCR class (module
   ``davarocr.*``) registering a name that an mmdet class holds takes the
   name, with a ``UserWarning`` naming both classes, where mmcv would raise
   ``KeyError``. mmdet 2.11, which DavarOCR was written for, had no class
   of those names, so DavarOCR's configs mean DavarOCR's; on mmdet 2.28 the
   one such name is ``DiceLoss`` (``davar_det``'s replaces mmdet's, so an
   mmdet config in the same process that uses ``DiceLoss`` gets
   DavarOCR's). Any other clash is mmcv's ``KeyError`` as before.
5. numpy's aliases of Python's types, deprecated in numpy 1.20 and gone
   from numpy 1.24 on, which DavarOCR calls at run time: ``np.int`` in
   ``davar_det``'s and ``davar_spotting``'s ``PostMaskRCNN``, in
   ``davar_rcg``'s loading utilities, ``davar_layout`` and
   ``davar_videotext``; ``np.float`` in ``davar_spotting`` and
   ``davar_videotext``; ``np.long`` in ``davar_rcg``'s attention
   converter. Set on the ``numpy`` module as numpy 1.20 - 1.23 had them:
   ``np.bool``, ``np.int``, ``np.float``, ``np.complex``, ``np.object``
   and ``np.str`` are the builtins of those names, ``np.long`` is
   ``int``, ``np.unicode`` is ``str``. Each is set only where the
   installed numpy lacks it (numpy 2's own ``np.bool`` and ``np.long``
   stay); ``NUMPY_ALIASES`` lists them.

The stand-ins of 2 and 3 are found by a finder placed last in
``sys.meta_path``: an installed ``torch._six`` or ``warpctc_pytorch``
always wins, and the stand-in module is made only when something imports
it. ``STAND_INS`` lists them. The rule of 4 is added to the registries
through :func:`davarocr_mmcv.compat.registry.add_rule`.
"""
import functools
import importlib.abc
import importlib.machinery
import math
import sys
import warnings

import mmdet.datasets.builder
import mmdet.models.builder
import numpy as np
import torch
from torch import nn

from .registry import add_rule

WARPCTC_MESSAGE = (
    "warpctc_pytorch is not installed: davarocr_mmcv's stand-in "
    "(davarocr_mmcv.compat.davarocr) computes WarpCTCLoss with torch's "
    "ctc_loss. Install warp-ctc's PyTorch bindings to use the original.")


def build(cfg, registry, default_args=None):
    """mmdet 2.11's ``mmdet.models.builder.build``: ``cfg`` built from
    ``registry``; a list of configs gives an ``nn.Sequential``."""
    if isinstance(cfg, list):
        return nn.Sequential(*(registry.build(c, default_args=default_args)
                               for c in cfg))
    return registry.build(cfg, default_args=default_args)


def _repeats(labels, label_lens):
    """Per sample, how many of its labels equal the label before them."""
    owner = torch.repeat_interleave(
        torch.arange(len(label_lens), device=labels.device), label_lens)
    same = (labels[1:] == labels[:-1]) & (owner[1:] == owner[:-1])
    return torch.zeros(len(label_lens), dtype=torch.long,
                       device=labels.device).index_add_(
        0, owner[1:][same], torch.ones_like(owner[1:][same]))


class _WarpCTCLoss(nn.Module):
    """Stand-in for ``warpctc_pytorch.CTCLoss``, computed with torch's
    ``ctc_loss``: warp-ctc's arguments, costs and gradients (see change 3
    above), a loss of shape (1,).

    Args:
        blank (int): the blank label. Default: 0.
        size_average (bool): divide by the batch size. Default: False.
        length_average (bool): divide by the batch's total number of
            frames; supersedes ``size_average``. Default: False.
    """

    def __init__(self, blank=0, size_average=False, length_average=False):
        super().__init__()
        warnings.warn(WARPCTC_MESSAGE, stacklevel=2)
        self.blank = blank
        self.size_average = size_average
        self.length_average = length_average

    def forward(self, acts, labels, act_lens, label_lens):
        if labels.dim() != 1:
            raise ValueError(
                f'labels must be 1-D, the targets of the batch one after the '
                f'other (as warp-ctc takes them), got shape '
                f'{tuple(labels.shape)}')
        scores = acts.float()
        labels = labels.long().to(acts.device)
        act_lens, label_lens = act_lens.long().cpu(), label_lens.long().cpu()
        ctc = functools.partial(
            nn.functional.ctc_loss, targets=labels, input_lengths=act_lens,
            target_lengths=label_lens, blank=self.blank, reduction='none')
        with torch.no_grad():  # warp-ctc's costs: the log of its softmax
            costs = ctc(scores.softmax(2).log()).cpu()
        too_short = label_lens + _repeats(labels.cpu(), label_lens) > act_lens
        costs[too_short] = 0.  # no gradient either
        dead = torch.isinf(costs)  # a label of probability 0 on its path
        # the gradients where the cost is finite, computed in log space
        graded = (ctc(scores.log_softmax(2), zero_infinity=True) *
                  (~dead).to(acts.device)).sum()
        # ... and the softmax of the frames where it is inf
        frames = (torch.arange(scores.size(0))[:, None] < act_lens) & dead
        graded = graded + scores.logsumexp(2)[frames.to(acts.device)].sum()
        loss = costs.sum().to(acts.device) + (graded - graded.detach())
        if self.length_average:
            loss = loss / act_lens.sum().item()
        elif self.size_average:
            loss = loss / acts.size(1)
        return loss.reshape(1)


def _torch_six(module):
    module.inf = math.inf


def _warpctc_pytorch(module):
    module.CTCLoss = _WarpCTCLoss


#: Stand-in modules: name -> function filling the new module.
STAND_INS = {'torch._six': _torch_six, 'warpctc_pytorch': _warpctc_pytorch}


class StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the modules of :data:`STAND_INS`, asked only after every other
    finder of ``sys.meta_path`` found nothing."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in STAND_INS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=__name__)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        module.__doc__ = (f"davarocr_mmcv's stand-in for {module.__name__} "
                          f"(see {__name__}).")
        STAND_INS[module.__name__](module)


def davarocr_over_mmdet(registry, name, holder, new):
    """The rule of change 4 (see :func:`~.registry.add_rule`)."""
    if new.__module__.partition('.')[0] != 'davarocr' or \
            holder.__module__.partition('.')[0] != 'mmdet':
        return None
    warnings.warn(
        f"{name!r} in mmdet's {registry.name} registry builds DavarOCR's "
        f"{new.__module__}.{new.__qualname__}, not mmdet's "
        f"{holder.__module__}.{holder.__qualname__} ({__name__}): mmdet "
        f"2.11, which DavarOCR was written for, had no class of that name.",
        stacklevel=4)  # the line that registers
    return 'replace'


#: The registries of change 4.
MMDET_REGISTRIES = (mmdet.models.builder.MODELS,
                    mmdet.datasets.builder.DATASETS,
                    mmdet.datasets.builder.PIPELINES)


#: Change 5: numpy's removed aliases -> what numpy 1.20 - 1.23 gave.
NUMPY_ALIASES = {'bool': bool, 'int': int, 'float': float,
                 'complex': complex, 'object': object, 'str': str,
                 'long': int, 'unicode': str}


def _numpy_lacks(name):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # numpy's FutureWarning on 'bool'
        try:
            getattr(np, name)
        except AttributeError:
            return True
    return False


def install():
    """Apply the five changes; calling it again changes nothing."""
    if not hasattr(mmdet.models.builder, 'build'):
        mmdet.models.builder.build = build
    for name, value in NUMPY_ALIASES.items():
        if _numpy_lacks(name):
            setattr(np, name, value)
    if not any(isinstance(f, StandInFinder) for f in sys.meta_path):
        sys.meta_path.append(StandInFinder())
    for registry in MMDET_REGISTRIES:
        add_rule(registry, davarocr_over_mmdet)


install()
