"""Whether a checkpoint given by the user is accepted, in one place.

Every checkpoint a user names (``resume_from`` / ``--resume-from``,
``load_from`` / ``--load-from``, the one ``--auto-resume`` picks in the
work_dir, the CHECKPOINT of ``tools/test.py``) goes through
:func:`load_state`, :func:`accept_checkpoint` and
:func:`load_weights_into`:

* a file that does not load, or whose zip archive is damaged in a way
  torch does not check (a record's CRC-32, its headers), stops with one
  line naming it and why;
* its weights are its ``state_dict``, or the checkpoint itself when it has
  none (a bare state dict, as mmcv's ``load_checkpoint`` takes it); one
  with no entry that fills an entry of the model (same name, a tensor of
  the same shape) is refused before anything is applied, naming its
  top-level keys;
* to resume, ``meta`` must say where training stands (``epoch`` and
  ``iter`` counts, a well-formed ``epoch_position``) and an ``optimizer``,
  when there is one, must be an optimizer's state; a ``hook_msgs`` that is
  not a dict is dropped with a warning naming the file;
* the weights are loaded as mmcv loads them (each module may rename an
  old checkpoint's keys), and what did not fill the model is reported with
  counts; where every weight is needed (``complete``: a test scores only
  weights it loaded) a partial match is refused.

The file itself is never changed.
"""
import numbers
import os.path as osp
import re
import warnings
from collections import OrderedDict
from typing import NamedTuple

import torch

from ..serialization import archive_damage, load_checkpoint_file
from .progress import EPOCH_POSITION
from .state import HOOK_MSGS

#: Entries the model's state may lack without a report: BatchNorm's step
#: counters, which mmcv's ``load_state_dict`` does not report either.
UNCOUNTED = re.compile(r'(^|\.)num_batches_tracked$')
#: Names listed per kind in a report.
SHOWN = 5


class CheckpointLoadError(RuntimeError):
    """A checkpoint asked for does not exist, does not load or is refused;
    the message names the file and says why."""


def reason(exc):
    """The first line of an error, short."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    text = lines[0].split('. ')[0].rstrip('.')  # torch adds advice
    return text if len(text) <= 160 else text[:157] + '...'


def load_state(path, what='checkpoint', map_location='cpu'):
    """Load the checkpoint dict at ``path`` (a local file through the
    allow-list of safe types, or any mmcv ``CheckpointLoader`` URL).

    Raises:
        CheckpointLoadError: naming ``what`` and the file, when it is
            missing, damaged or not a checkpoint. The file is never touched.
    """
    if '://' in str(path):
        from mmcv.runner.checkpoint import _load_checkpoint
        try:
            ckpt = _load_checkpoint(path, map_location=map_location)
        except Exception as exc:  # noqa: B902  any loader failure
            raise CheckpointLoadError(
                f'{what}: {path} does not load ({reason(exc)})') from None
    else:
        if not osp.isfile(path):
            raise CheckpointLoadError(f'{what}: {path} does not exist')
        try:
            ckpt = load_checkpoint_file(path, map_location=map_location)
            damage = archive_damage(path)  # torch checks no CRC
            if damage:
                raise RuntimeError(damage)
        except Exception as exc:  # noqa: B902  torch raises many kinds
            raise CheckpointLoadError(
                f'{what}: {path} does not load ({reason(exc)}); the file '
                f'was left as it is') from None
    if not isinstance(ckpt, dict):
        raise CheckpointLoadError(
            f'{what}: {path} is not a checkpoint (it holds a '
            f'{type(ckpt).__name__}, not a dict)')
    return ckpt


# --------------------------------------------------------------- weights
def _names(keys, shown=SHOWN):
    keys = [str(k) for k in keys]
    more = f', ... ({len(keys) - shown} more)' if len(keys) > shown else ''
    return ', '.join(keys[:shown]) + more


class WeightMatch(NamedTuple):
    """How a checkpoint's weights filled a model's state (BatchNorm's
    ``num_batches_tracked`` counters left out).

    Attributes:
        loaded (int): model entries the checkpoint filled.
        missing (tuple[str]): model entries it lacks.
        unexpected (tuple[str]): its entries the model does not have.
        unfit (tuple[tuple[str, str]]): ``(name, why)`` of entries of both
            whose checkpoint value is not a tensor of the model's shape,
            or that a module refused; not loaded.
        total (int): the model's entries.
    """
    loaded: int
    missing: tuple
    unexpected: tuple
    unfit: tuple
    total: int

    @property
    def complete(self):
        return not self.missing and not self.unfit

    def summary(self):
        """``loaded 10 of 12 parameters; missing: ...; unexpected: ...``."""
        parts = [f'loaded {self.loaded} of {self.total} parameters']
        unfit = [f'{key} ({why})' for key, why in self.unfit]
        for label, keys in (('missing', self.missing),
                            ('unexpected', self.unexpected),
                            ('not fitting', unfit)):
            if keys:
                parts.append(f'{label}: {_names(keys)}')
        return '; '.join(parts)


def weights_of(ckpt):
    """The weights of the checkpoint dict ``ckpt``: its ``state_dict``, or
    ``ckpt`` itself when it has none (a bare state dict), with mmcv's
    ``module.`` prefixes dropped (an OrderedDict, ``_metadata`` kept);
    None when its ``state_dict`` is not a dict."""
    state_dict = ckpt.get('state_dict', ckpt)
    if not isinstance(state_dict, dict):
        return None
    out = OrderedDict((re.sub(r'^module\.', '', str(k)), v)
                      for k, v in state_dict.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        out._metadata = metadata
    return out


def _unwrapped(model):
    from mmcv.parallel import is_module_wrapper
    while is_module_wrapper(model):
        model = model.module
    return model


def _unfit(value, target):
    """Why ``value`` cannot fill the model's tensor ``target``; None if it
    can (torch also takes a 1-element vector for a scalar)."""
    if not isinstance(value, torch.Tensor):
        return f'a {type(value).__name__}, not a tensor'
    shape, want = tuple(value.shape), tuple(target.shape)
    if shape == want or (not want and shape == (1, )):
        return None
    return f'shape {list(shape)}, model {list(want)}'


def _own(model):
    """The model's state entries that are counted."""
    return OrderedDict((k, v) for k, v in _unwrapped(model).state_dict()
                       .items() if not UNCOUNTED.search(k))


def _fitting(own, weights):
    """(entries of ``weights`` that can fill those of ``own`` (from
    :func:`_own`) or are not the model's, ``(name, why)`` of the model's
    that cannot)."""
    fitting, unfit = OrderedDict(), []
    for key, value in weights.items():
        why = _unfit(value, own[key]) if key in own else None
        if why is None:
            fitting[key] = value
        else:
            unfit.append((key, why))
    metadata = getattr(weights, '_metadata', None)
    if metadata is not None:
        fitting._metadata = metadata
    return fitting, unfit


def _top_keys(ckpt):
    return _names(sorted(map(str, ckpt)), shown=8) or 'none'


def _check_weights(ckpt, path, what, model):
    """The weights of ``ckpt``, or raise when it holds none that fills an
    entry of ``model`` (by name and shape)."""
    weights = weights_of(ckpt)
    if weights is None:
        raise CheckpointLoadError(
            f'{what}: {path}: its state_dict is a '
            f'{type(ckpt["state_dict"]).__name__}, not a dict of tensors '
            f'(top-level keys: {_top_keys(ckpt)})')
    if model is None:
        return weights
    own = _own(model)
    fitting, _ = _fitting(own, weights)
    if own and not set(own) & set(fitting):
        if 'state_dict' not in ckpt:
            found = (f'has no state_dict, and none of its top-level keys '
                     f'({_top_keys(ckpt)}) is a parameter of the model')
        else:
            found = (f"loads none of the model's {len(own)} parameters "
                     f'(top-level keys: {_top_keys(ckpt)}; state_dict: '
                     f'{_names(weights) or "empty"}; the model\'s: '
                     f'{_names(own)})')
        raise CheckpointLoadError(
            f'{what}: {path} {found}; check that the config is the one '
            f'the checkpoint was trained with')
    return weights


def _load(module, weights):
    """Load ``weights`` into ``module`` as mmcv's ``load_state_dict`` does
    (each module's ``_load_from_state_dict``, which may rename the keys of
    an old checkpoint, wrappers unwrapped); (missing, unexpected,
    errors)."""
    from mmcv.parallel import is_module_wrapper
    missing, unexpected, errors = [], [], []
    metadata = getattr(weights, '_metadata', None)
    metadata = metadata if isinstance(metadata, dict) else None
    weights = OrderedDict(weights)  # the modules may rename entries

    def load(mod, prefix=''):
        if is_module_wrapper(mod):
            mod = mod.module
        local = {} if metadata is None else metadata.get(prefix[:-1], {})
        mod._load_from_state_dict(weights, prefix, local, True, missing,
                                  unexpected, errors)
        for name, child in mod._modules.items():
            if child is not None:
                load(child, prefix + name + '.')

    load(module)
    return missing, unexpected, errors


# ------------------------------------------------------------------ meta
def _count(value):
    return isinstance(value, numbers.Integral) and \
        not isinstance(value, bool) and value >= 0


def _show(value):
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + '...'
    return f'{text} (a {type(value).__name__})'


def _optimizer_state(value):
    """Whether ``value`` is an optimizer's state, or a dict of them."""
    def one(state):
        return isinstance(state, dict) and 'param_groups' in state
    return one(value) or (isinstance(value, dict) and bool(value) and
                          all(map(one, value.values())))


def _check_state(ckpt, path, what, resume):
    """(the checkpoint's ``meta`` fit for its use, a copy or None,
    warnings), or raise; to resume, its optimizer state is checked too."""
    meta = ckpt.get('meta')
    if meta is not None and not isinstance(meta, dict):
        if not resume:
            return None, [f'{what}: {path}: meta is {_show(meta)}, not a '
                          f'dict: ignored']
        meta = None
    if not resume:
        return meta, []
    if meta is None or 'epoch' not in meta or 'iter' not in meta:
        held = '' if ckpt.get('meta') is None or isinstance(
            ckpt['meta'], dict) else f' (its meta is {_show(ckpt["meta"])})'
        raise CheckpointLoadError(
            f'{what}: {path} has no meta.epoch / meta.iter{held}, so '
            f'training cannot continue from it; load its weights with '
            f'load_from (--load-from) instead')
    meta = dict(meta)
    for key in ('epoch', 'iter'):
        if not _count(meta[key]):
            raise CheckpointLoadError(
                f'{what}: {path}: meta.{key} is {_show(meta[key])}, not a '
                f'count of {key}s, so training cannot continue from it')
        meta[key] = int(meta[key])
    position = meta.get(EPOCH_POSITION)
    if position is not None and not (
            isinstance(position, dict) and
            _count(position.get('batches_done'))):
        raise CheckpointLoadError(
            f'{what}: {path}: meta.{EPOCH_POSITION} is {_show(position)}, '
            f'not a position inside an epoch (a dict with batches_done), '
            f'so training cannot continue from it')
    if 'optimizer' in ckpt and not _optimizer_state(ckpt['optimizer']):
        raise CheckpointLoadError(
            f'{what}: {path}: its optimizer is {_show(ckpt["optimizer"])}, '
            f'not the state of an optimizer (a dict with param_groups, or '
            f'a dict of them), so training cannot continue from it; load '
            f'its weights with load_from (--load-from) instead')
    msgs = meta.get(HOOK_MSGS, {})
    if not isinstance(msgs, dict):
        del meta[HOOK_MSGS]
        return meta, [f'{what}: {path}: meta.{HOOK_MSGS} is {_show(msgs)}, '
                      f'not a dict: ignored (the best, the kept checkpoints '
                      f'and the evaluation history start empty)']
    return meta, []


def _warn(logger, message):
    if logger is not None:
        logger.warning(message)
    else:
        warnings.warn(message, stacklevel=3)


# ---------------------------------------------------------------- public
def accept_checkpoint(ckpt, path, what, model=None, logger=None,
                      resume=False):
    """Check the loaded checkpoint dict ``ckpt`` (read from ``path``) that
    the user gave as ``what`` (``resume_from``, ``load_from``,
    ``auto-resume``, ``checkpoint``), before anything is applied.

    Args:
        model (nn.Module | None): the model the weights are for (wrappers
            unwrapped); None checks only the checkpoint's structure.
        logger (logging.Logger | None): where warnings go (else
            ``warnings.warn``).
        resume (bool): training continues from it: ``meta`` must say
            where, and an ``optimizer`` entry must be an optimizer's state.

    Returns:
        dict: a shallow copy of ``ckpt`` whose ``state_dict`` holds its
        weights (:func:`weights_of`) and whose ``meta`` is fit for its
        use; :func:`load_weights_into` applies it.

    Raises:
        CheckpointLoadError: one line naming ``what``, the file and why.
    """
    weights = _check_weights(ckpt, path, what, model)
    meta, notes = _check_state(ckpt, path, what, resume)
    for note in notes:  # accepted: say what was not taken
        _warn(logger, note)
    # a bare state dict's entries are its weights, not top-level keys
    accepted = dict(ckpt) if 'state_dict' in ckpt else {}
    accepted['state_dict'] = weights
    if meta is None:
        accepted.pop('meta', None)
    else:
        accepted['meta'] = meta
    return accepted


def load_accepted(path, what, model=None, logger=None, resume=False,
                  map_location='cpu'):
    """:func:`load_state` then :func:`accept_checkpoint`."""
    return accept_checkpoint(load_state(path, what, map_location), path,
                             what, model, logger, resume)


def load_weights_into(model, ckpt, source='checkpoint', logger=None,
                      complete=False):
    """Load the weights of an accepted checkpoint ``ckpt`` into ``model``
    as mmcv's ``load_checkpoint`` does (non-strict, wrappers unwrapped),
    less the entries that cannot fill the model's, and report what did
    not fill it, with counts, instead of mmcv's list of keys.

    Args:
        source (str): how messages name the checkpoint, e.g.
            ``'load_from: PATH'``.
        complete (bool): refuse a checkpoint that leaves any of the
            model's entries unfilled (a test scores only weights it
            loaded).

    Returns:
        WeightMatch: what was loaded.

    Raises:
        CheckpointLoadError: ``complete`` and an entry was not filled.
    """
    own = _own(model)
    fitting, unfit = _fitting(own, ckpt['state_dict'])
    missing, unexpected, errors = _load(model, fitting)
    for error in errors:  # a module's own refusal, after a rename
        named = re.match(r'size mismatch for (\S+):', error)
        unfit.append((named.group(1) if named else
                      reason(RuntimeError(error)), 'refused by its module'))
    unfit_keys = {k for k, _ in unfit}
    missing = tuple(k for k in missing
                    if not UNCOUNTED.search(k) and k not in unfit_keys)
    match = WeightMatch(
        loaded=max(0, len(own) - len(missing) - len(unfit_keys & set(own))),
        missing=missing,
        unexpected=tuple(k for k in unexpected if not UNCOUNTED.search(k)),
        unfit=tuple(unfit), total=len(own))
    if complete and not match.complete:
        raise CheckpointLoadError(
            f'{source}: {match.summary()}; refused: the model would be '
            f'scored with weights the checkpoint does not give')
    if match.missing or match.unexpected or match.unfit:
        _warn(logger, f'{source}: {match.summary()}')
    return match
