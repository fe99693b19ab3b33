"""Opt-in: DavarOCR's own source imports on mmcv-full 1.7.1, mmdet 2.28 and
torch 2.

DavarOCR (head of hikopensource/DAVAR-Lab-OCR) was written for mmcv 1.3,
mmdet 2.11 and torch 1.x; on this stack ``import davarocr`` (any of its
modules imports all of its sub-packages) stops at four places. Put this
module in a DavarOCR config's ``custom_imports``, *before* DavarOCR's
modules (mmcv imports them in list order)::

    custom_imports = dict(
        imports=['davarocr_mmcv.compat.davarocr',
                 'davarocr.davar_common', 'davarocr.davar_rcg'],
        allow_failed_imports=False)

Importing it imports davarocr_mmcv first (its package), so davarocr_mmcv's
hooks and runners keep their names (see ``compat/registry.py``).

Importing it changes exactly these four things, and nothing else (nothing
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
   computes warp-ctc's loss with torch's ``ctc_loss``, on any device:
   ``acts`` are unnormalised scores (T, N, C), the loss is summed over the
   batch and divided by the batch size (``size_average``) or else by the
   total number of frames (``length_average``), as warp-ctc does. Building
   it warns once that the stand-in is in use. So a config with
   ``WarpCTCHead`` / ``WarpCTCLoss`` trains unchanged (DavarOCR's
   ``WarpCTCLoss.forward`` still moves the loss to CUDA itself).
4. In mmdet's ``MODELS`` (``BACKBONES``, ``HEADS``, ``LOSSES``, ...),
   ``DATASETS`` and ``PIPELINES`` registries, a DavarOCR class (module
   ``davarocr.*``) registering a name that an mmdet class holds takes the
   name, with a ``UserWarning`` naming both classes, where mmcv would raise
   ``KeyError``. mmdet 2.11, which DavarOCR was written for, had no class
   of those names, so DavarOCR's configs mean DavarOCR's; on mmdet 2.28 the
   one such name is ``DiceLoss`` (``davar_det``'s replaces mmdet's, so an
   mmdet config in the same process that uses ``DiceLoss`` gets
   DavarOCR's). Any other clash is mmcv's ``KeyError`` as before.

The stand-ins of 2 and 3 are found by a finder placed last in
``sys.meta_path``: an installed ``torch._six`` or ``warpctc_pytorch``
always wins, and the stand-in module is made only when something imports
it. ``STAND_INS`` lists them. The rule of 4 is added to the registries
through :func:`davarocr_mmcv.compat.registry.add_rule`.
"""
import importlib.abc
import importlib.machinery
import math
import sys
import warnings

import mmdet.datasets.builder
import mmdet.models.builder
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


class _WarpCTCLoss(nn.Module):
    """Stand-in for ``warpctc_pytorch.CTCLoss``, computed with torch's
    ``ctc_loss``: same arguments, same reductions, a loss of shape (1,)."""

    def __init__(self, blank=0, size_average=False, length_average=False):
        super().__init__()
        warnings.warn(WARPCTC_MESSAGE, stacklevel=2)
        self.blank = blank
        self.size_average = size_average
        self.length_average = length_average

    def forward(self, acts, labels, act_lens, label_lens):
        log_probs = acts.float().log_softmax(2)
        costs = nn.functional.ctc_loss(
            log_probs, labels.long().to(acts.device),
            act_lens.long(), label_lens.long(), blank=self.blank,
            reduction='none', zero_infinity=True).sum()
        if self.size_average:
            costs = costs / acts.size(1)
        elif self.length_average:
            costs = costs / act_lens.sum().item()
        return costs.reshape(1)


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


def install():
    """Apply the four changes; calling it again changes nothing."""
    if not hasattr(mmdet.models.builder, 'build'):
        mmdet.models.builder.build = build
    if not any(isinstance(f, StandInFinder) for f in sys.meta_path):
        sys.meta_path.append(StandInFinder())
    for registry in MMDET_REGISTRIES:
        add_rule(registry, davarocr_over_mmdet)


install()
