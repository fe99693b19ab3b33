"""Packing Python objects for the process group: a pickle (protocol 5) of
the object, with the data of its numpy arrays and CPU tensors laid out apart
in a few flat buffers.

The pickle keeps everything but that data: pure-Python objects (strings,
lists, dicts, ``bytes``) go through pickle's C code alone. An array costs
one call of :meth:`Packer.reducer_override`, which records where its bytes
go; the receiver rebuilds it with a single C call, ``np.ndarray(shape,
dtype, buffer, offset)``, as a view of the buffer it received, so the data
is stored once and no Python runs per array on that side. Empty arrays
(most of mmdet's per-class lists) carry no data, and share one cached
reduction per shape.

What arrives equals what was sent: dtypes (byte order included), shapes,
Fortran order, ``bytes`` and strings, nested containers and shared
references. Non-contiguous arrays arrive C-contiguous, as pickle gives them.
Anything else (object arrays, subclasses, CUDA or non-contiguous tensors)
is pickled as pickle does it.
"""
import contextlib
import gc
import io
import pickle

import numpy as np
import torch

#: Bytes of array data per buffer; a larger single array gets one alone.
CHUNK_BYTES = 32 * 2 ** 20

_ndarray = np.ndarray
_Tensor = torch.Tensor
_PADS = [bytes(n) for n in range(64)]
_TORCH_DTYPES = {}  # torch.dtype -> its name, pickled instead of the dtype
#: numpy's own rebuilder of scalars (``numpy.core.multiarray.scalar``)
_scalar = np.float32(0).__reduce__()[0]
#: numpy's numeric scalar types (np.float32 confidences, np.int64 labels)
_SCALARS = frozenset(t for t in np.sctypeDict.values()
                     if issubclass(t, (np.number, np.bool_)))


@contextlib.contextmanager
def no_gc():
    """Pause the cyclic garbage collector: building many small containers
    triggers collections whose cost grows with the objects alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Buffer:
    """One buffer of a message: the pieces laid out in it, and its size.

    Pickled as a reference that the receiver resolves to the buffer it
    received (an out-of-band pickle buffer)."""
    __slots__ = ('pieces', 'size')

    def __init__(self):
        self.pieces = []
        self.size = 0

    def join(self):
        """The buffer's bytes, as a writable uint8 array."""
        return np.frombuffer(bytearray().join(self.pieces), dtype=np.uint8)


def _tensor_from(buffer, offset, nbytes, dtype, shape, stride):
    """A CPU tensor rebuilt as a view of ``buffer``."""
    dtype = getattr(torch, dtype)
    if not nbytes:
        return torch.empty_strided(shape, stride, dtype=dtype)
    data = torch.from_numpy(buffer[offset:offset + nbytes])
    return data.view(dtype).as_strided(shape, stride)


def _torch_dtype_name(dtype):
    name = _TORCH_DTYPES.get(dtype)
    if name is None:
        name = _TORCH_DTYPES[dtype] = str(dtype).rpartition('.')[2]
    return name


class Packer(pickle.Pickler):
    """Pickles objects with the data of their arrays and CPU tensors laid
    out in :class:`Buffer` s of about ``chunk_bytes``.

    ``dump`` may be called several times; :meth:`skeleton` and
    :attr:`buffers` then describe all that was dumped.
    """

    def __init__(self, chunk_bytes=CHUNK_BYTES):
        self.file = io.BytesIO()
        super().__init__(self.file, protocol=5,
                         buffer_callback=self._in_band)
        self.chunk_bytes = chunk_bytes
        self.buffers = []
        self.data_bytes = 0
        self._empty = {}  # shape -> reduction of an empty array
        self._placeholder = None

    def reducer_override(self, obj):
        """Called by pickle for objects of non-builtin types only."""
        kind = type(obj)
        if kind is _ndarray:
            if obj.size:
                return self._array(obj)
            reduced = self._empty.get(obj.shape)
            if reduced is None or reduced[1][1] is not obj.dtype:
                reduced = (_ndarray, (obj.shape, obj.dtype))
                self._empty.setdefault(obj.shape, reduced)
            return reduced
        if kind is Buffer:
            # resolved on load to the received buffer (out of band)
            self._placeholder = pickle.PickleBuffer(bytearray())
            return np.asarray, (self._placeholder,)
        if kind is _Tensor:
            return self._tensor(obj)
        if kind in _SCALARS:
            # numpy's own reduction, without its per-call import
            return _scalar, (obj.dtype, obj.tobytes())
        return NotImplemented

    def _in_band(self, buffer):
        """Only the placeholders of buffers go out of band; other pickle
        buffers (from third-party reductions) stay in the pickle."""
        return buffer is not self._placeholder

    def _place(self, piece, nbytes, align):
        """Lay ``piece`` out in the current buffer (a new one when it is
        full). Returns (buffer, offset)."""
        buffer = self.buffers[-1] if self.buffers else None
        if buffer is None or \
                buffer.size and buffer.size + nbytes > self.chunk_bytes:
            buffer = Buffer()
            self.buffers.append(buffer)
        offset = buffer.size
        pad = -offset % align
        if pad:
            buffer.pieces.append(_PADS[pad])
            offset += pad
        buffer.pieces.append(piece)
        buffer.size = offset + nbytes
        self.data_bytes += pad + nbytes
        return buffer, offset

    def _array(self, obj):
        dtype = obj.dtype
        if dtype.hasobject:
            return NotImplemented
        flags = obj.flags
        if flags.c_contiguous:
            piece = obj
        elif flags.f_contiguous:
            buffer, offset = self._place(obj.T, obj.nbytes, dtype.alignment)
            return _ndarray, (obj.shape, dtype, buffer, offset, None, 'F')
        else:
            piece = np.ascontiguousarray(obj)
        buffer, offset = self._place(piece, obj.nbytes, dtype.alignment)
        return _ndarray, (obj.shape, dtype, buffer, offset)

    def _tensor(self, obj):
        if obj.device.type != 'cpu' or obj.layout != torch.strided or \
                obj.requires_grad or obj.is_quantized or \
                not obj.is_contiguous():
            return NotImplemented
        # contiguous: its elements are in order, whatever the strides of
        # its dimensions of size 1 (kept, as pickle keeps them)
        obj = obj.resolve_conj().resolve_neg()
        layout = (_torch_dtype_name(obj.dtype), tuple(obj.shape),
                  obj.stride())
        nbytes = obj.nelement() * obj.element_size()
        if not nbytes:
            return _tensor_from, (None, 0, 0) + layout
        piece = obj.reshape(-1).view(torch.uint8).numpy()
        buffer, offset = self._place(piece, nbytes, obj.element_size())
        return _tensor_from, (buffer, offset, nbytes) + layout

    def size(self):
        """Bytes packed so far: the pickle and the array data."""
        return self.file.tell() + self.data_bytes

    def skeleton(self):
        """The pickle, without the array data (a view: dump no more)."""
        return self.file.getbuffer()


def unpack(skeleton, buffers, items=False):
    """Rebuild what a :class:`Packer` dumped.

    Args:
        skeleton (bytes-like): the pickle.
        buffers (list[np.ndarray]): the joined buffers, uint8; the arrays
            rebuilt are views of them.
        items (bool): the packer dumped lists, one after the other; return
            their concatenation. Default: False (one object).
    """
    stream = io.BytesIO(skeleton)
    unpickler = pickle.Unpickler(stream, buffers=buffers)
    with no_gc():
        if not items:
            return unpickler.load()
        out = []
        end = len(skeleton)
        while stream.tell() < end:
            out += unpickler.load()
        return out


def pack(obj, chunk_bytes=CHUNK_BYTES):
    """``obj`` packed in this process.

    Returns:
        tuple: (pickle bytes, list of uint8 buffers), for :func:`unpack`.
    """
    packer = Packer(chunk_bytes)
    with no_gc():
        packer.dump(obj)
    return bytes(packer.skeleton()), [b.join() for b in packer.buffers]
