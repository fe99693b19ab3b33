"""Safe loading of checkpoints written by mmcv 1.x, mmdet 2.x and DavarOCR.

torch>=2.6 loads with ``weights_only=True`` by default. Old checkpoints hold a
few numpy objects in their ``meta`` (``best_score`` as ``numpy.float64`` is the
common one), which that unpickler refuses. Instead of falling back to
``weights_only=False`` (which runs arbitrary code), the numpy types below are
added to torch's allow-list; anything else is still refused.
"""
import zipfile

import numpy as np
import torch


def _numpy_safe_globals():
    from numpy.core.multiarray import _reconstruct, scalar
    types = [scalar, _reconstruct, np.ndarray, np.dtype]
    # numpy>=1.25 pickles dtypes as instances of numpy.dtypes.*DType classes.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes)
                  if name.endswith('DType')]
    return types


SAFE_GLOBALS = _numpy_safe_globals()


def register_safe_globals():
    """Allow the numpy types of old checkpoints in ``weights_only`` loads."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch<2.4 has no weights_only default to satisfy
        add(SAFE_GLOBALS)


def load_checkpoint_file(path, map_location='cpu'):
    """Load a checkpoint through the allow-list; never executes pickled code.

    Raises:
        RuntimeError: naming the file and the refused type, if the file holds
            anything outside the allow-list.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, wrapped variously
        if 'weights_only' in str(exc) or 'Unsupported global' in str(exc):
            raise RuntimeError(
                f'Refused to load {path}: it contains an object outside the '
                f'allow-list of safe types ({exc}). Load it only if you trust '
                'its origin, with torch.load(..., weights_only=False).') from exc
        raise


def archive_damage(path):
    """Why the torch zip archive at ``path`` is damaged, else None.

    torch checks neither the CRC-32 of each record nor the consistency of
    the zip's headers when it reads, so a changed byte inside a tensor, or
    in a record's offset, loads as a changed weight. Here every record is
    read through Python's zip reader, which checks both. Files of torch's
    older, non-zip format are left to torch.
    """
    if not zipfile.is_zipfile(path):
        return None
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: B902  BadZipFile, a name not UTF-8
        return f'its zip directory does not read: {exc}'
    with archive:
        for info in archive.infolist():
            try:
                with archive.open(info) as f:
                    while f.read(1 << 22):
                        pass
            except Exception as exc:  # noqa: B902  the zip reader's kinds
                if str(exc).startswith('Bad CRC-32'):
                    return (f'its record {info.filename} fails its CRC-32 '
                            f'check: bytes of the file changed')
                return f'its record {info.filename} does not read: {exc}'
    return None


def to_plain(value):
    """Turn numpy scalars (and containers of them) into plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
