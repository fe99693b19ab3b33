"""Moving Python objects between ranks through the process group, arrays
packed.

Pickling many small numpy arrays (or tensors) one by one is slow, and
pickling a whole result set at once doubles the memory it takes. Here the
arrays and CPU tensors of an object are left out of its pickle: each is
replaced by a reference, its bytes are copied into one contiguous buffer
per ``chunk_bytes``, and its (buffer, offset, dtype, shape) are pickled
apart. The receiver rebuilds them as views of the buffers it received, so
what arrives is stored once. Works with gloo (CPU tensors) and NCCL (the
current GPU).
"""
import contextlib
import functools
import gc
import io
import pickle

import numpy as np
import torch
import torch.distributed as dist

#: Bytes of arrays per buffer; a larger single array gets a buffer alone.
CHUNK_BYTES = 32 * 2 ** 20
#: Items pickled between two checks of the chunk size in ``gather_lists``.
_SLICE = 2048


def comm_device():
    """The device of collective tensors: the current GPU with NCCL."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


@contextlib.contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: building many small containers
    triggers collections whose cost grows with the objects alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Packer(pickle.Pickler):
    """Pickles objects with their arrays and CPU tensors left out.

    ``persistent_id`` only records each array (cheap: it runs for every
    object pickled); ``pack`` then lays the arrays out in buffers of about
    ``chunk_bytes`` and describes each by (buffer, offset, dtype, shape).
    """

    def __init__(self, chunk_bytes=CHUNK_BYTES):
        self.file = io.BytesIO()
        super().__init__(self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.chunk_bytes = chunk_bytes
        self.arrays = []
        self.tensor_align = {}  # index -> element size, for tensors
        self.nbytes = 0

    def persistent_id(self, obj):
        kind = type(obj)
        if kind is np.ndarray:
            self.arrays.append(obj)
            self.nbytes += obj.nbytes
            return len(self.arrays) - 1
        if kind is torch.Tensor and obj.device.type == 'cpu' and \
                obj.layout == torch.strided and not obj.requires_grad and \
                not obj.is_quantized:
            index = len(self.arrays)
            flat = obj.detach().resolve_conj().resolve_neg().contiguous()
            self.arrays.append(flat.reshape(-1).view(torch.uint8).numpy())
            self.tensor_align[index] = obj.element_size()
            self.nbytes += obj.nbytes
            return (index, str(obj.dtype).rpartition('.')[2], obj.shape)
        return None

    def size(self):
        """Bytes pickled so far, arrays included."""
        return self.file.tell() + self.nbytes

    def pack(self):
        """Lay the arrays out in buffers.

        Returns:
            tuple: (skeleton bytes, meta bytes, per-buffer piece lists)
        """
        groups, meta, offset = [[]], [], 0
        align = self.tensor_align
        for index, array in enumerate(self.arrays):
            dtype = array.dtype
            if dtype.hasobject or dtype.fields is not None:
                meta.append(pickle.dumps(array, pickle.HIGHEST_PROTOCOL))
                continue
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            size = array.nbytes
            if offset and offset + size > self.chunk_bytes:
                groups.append([])
                offset = 0
            pad = -offset % align.get(index, dtype.alignment)
            if pad:
                groups[-1].append(bytes(pad))
                offset += pad
            groups[-1].append(array)
            meta.append((len(groups) - 1, offset, dtype.str, array.shape))
            offset += size
        return (self.file.getvalue(),
                pickle.dumps(meta, pickle.HIGHEST_PROTOCOL), groups)


def _join(pieces):
    """One buffer of the pieces, as a writable uint8 array."""
    return np.frombuffer(bytearray().join(pieces), dtype=np.uint8)


def _rebuild(meta, buffers):
    """The arrays described by ``meta``, as views of ``buffers``."""
    arrays = []
    for entry in meta:
        if type(entry) is bytes:
            arrays.append(pickle.loads(entry))
            continue
        index, offset, dtype, shape = entry
        dtype = np.dtype(dtype)
        count = 1
        for dim in shape:
            count *= dim
        arrays.append(np.frombuffer(buffers[index], dtype, count,
                                    offset).reshape(shape))
    return arrays


class _Unpacker(pickle.Unpickler):
    """Reads what ``_Packer`` wrote; arrays are views of the buffers."""

    def __init__(self, skeleton, arrays):
        self.stream = io.BytesIO(skeleton)
        super().__init__(self.stream)
        self.arrays = arrays

    def persistent_load(self, pid):
        if type(pid) is int:
            return self.arrays[pid]
        index, dtype, shape = pid
        return torch.from_numpy(self.arrays[index]).view(
            getattr(torch, dtype)).reshape(shape)


def _to_wire(array, device):
    tensor = torch.from_numpy(array)
    return tensor if device.type == 'cpu' else tensor.to(device)


def _from_wire(tensor):
    return tensor.numpy() if tensor.device.type == 'cpu' else \
        tensor.cpu().numpy()


#: Buffer sizes carried by the fixed-size header of a message; more are
#: sent in a second tensor.
_SLOTS = 28


def _encode(packer, more=False):
    """A packed object as a message: a fixed-size int64 header (more
    messages follow, meta length, skeleton length, buffer count, buffer
    sizes), the meta and skeleton in one piece, then one function per
    buffer that builds it (so that only one exists at a time)."""
    skeleton, meta, groups = packer.pack()
    groups = [g for g in groups if g]
    sizes = [sum(len(p) if type(p) is bytes else p.nbytes for p in g)
             for g in groups]
    header = [int(more), len(meta), len(skeleton), len(sizes)] + \
        sizes[:_SLOTS] + [0] * (_SLOTS - len(sizes[:_SLOTS]))
    pieces = [np.array(header, dtype=np.int64)]
    if len(sizes) > _SLOTS:
        pieces.append(np.array(sizes[_SLOTS:], dtype=np.int64))
    pieces.append(np.frombuffer(bytearray(meta + skeleton), dtype=np.uint8))
    pieces += [functools.partial(_join, g) for g in groups]
    return pieces


def _put(pieces, move, device):
    """Hand every piece of a message to ``move`` (send or broadcast)."""
    for piece in pieces:
        data = piece if isinstance(piece, np.ndarray) else piece()
        if data.size:
            move(_to_wire(data, device))
        del data


def _take(move, device):
    """Receive one message through ``move`` (recv or broadcast).

    Returns:
        tuple: (more messages follow, meta bytes, skeleton bytes, buffers)
    """
    header = torch.empty(4 + _SLOTS, dtype=torch.int64, device=device)
    move(header)
    more, meta_len, skel_len, count, *sizes = header.tolist()
    sizes = sizes[:count]
    if count > _SLOTS:
        extra = torch.empty(count - _SLOTS, dtype=torch.int64, device=device)
        move(extra)
        sizes += extra.tolist()
    arrays = []
    for size in [meta_len + skel_len] + sizes:
        wire = torch.empty(size, dtype=torch.uint8, device=device)
        if size:
            move(wire)
        arrays.append(_from_wire(wire))
    head = arrays[0].tobytes()
    return bool(more), head[:meta_len], head[meta_len:], arrays[1:]


def _decode(meta, skeleton, buffers, items=False):
    """The object of a message (or, with ``items``, the concatenation of
    the lists pickled one after the other in it)."""
    with _no_gc():
        unpacker = _Unpacker(skeleton, _rebuild(pickle.loads(meta),
                                                buffers))
        if not items:
            return unpacker.load()
        out = []
        while unpacker.stream.tell() < len(skeleton):
            out.extend(unpacker.load())
        return out


def gather_lists(items, dst=0, chunk_bytes=CHUNK_BYTES):
    """Gather the list ``items`` of every rank on rank ``dst``.

    Other ranks send their list in messages of about ``chunk_bytes``, one
    rank after the other, so ``dst`` holds at most one message beside what
    it has already rebuilt; the arrays of a message arrive in one buffer
    and are rebuilt as views of it, so they are stored once.

    Returns:
        list[list] | None: one list per rank on ``dst``, None elsewhere.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = comm_device()
    if rank != dst:
        def send(tensor):
            dist.send(tensor, dst)
        start = 0
        while True:
            packer = _Packer(chunk_bytes)
            with _no_gc():
                while start < len(items) and packer.size() < chunk_bytes:
                    packer.dump(items[start:start + _SLICE])
                    start += _SLICE
                message = _encode(packer, more=start < len(items))
            del packer
            _put(message, send, device)
            del message
            if start >= len(items):
                return None
    parts = []
    for src in range(world_size):
        if src == dst:
            parts.append(items)
            continue

        def recv(tensor, src=src):
            dist.recv(tensor, src)
        part, more = [], True
        while more:
            more, meta, skeleton, buffers = _take(recv, device)
            part.extend(_decode(meta, skeleton, buffers, items=True))
            del buffers
        parts.append(part)
    return parts


# ------------------------------------------------------------ broadcast
def broadcast_object(obj=None, src=0, chunk_bytes=CHUNK_BYTES):
    """Send ``obj`` from rank ``src`` to every rank, its arrays and CPU
    tensors packed in buffers of about ``chunk_bytes`` (built one at a time
    on ``src``). Tensors arrive on the CPU.

    Returns:
        the object, on every rank (``obj`` itself on ``src``).
    """
    device = comm_device()

    def move(tensor):
        dist.broadcast(tensor, src)
    if dist.get_rank() == src:
        packer = _Packer(chunk_bytes)
        with _no_gc():
            packer.dump(obj)
            message = _encode(packer)
        del packer
        _put(message, move, device)
        return obj
    _, meta, skeleton, buffers = _take(move, device)
    return _decode(meta, skeleton, buffers)
