"""Moving Python objects between ranks through the process group, arrays
packed (:mod:`.packing`).

A message is a fixed-size header, the pickle, then the array buffers, one
tensor each; a list is sent in several messages, so that its receiver
rebuilds one while the sender packs the next. Works with gloo (CPU
tensors) and NCCL (the current GPU).
"""
import time

import numpy as np
import torch
import torch.distributed as dist

from .packing import CHUNK_BYTES, Packer, no_gc, unpack

__all__ = ['CHUNK_BYTES', 'comm_device', 'gather_lists', 'broadcast_object',
           'interleave']

#: Buffer sizes carried by the fixed-size header of a message; more are
#: sent in a second tensor.
_SLOTS = 28
#: Items packed first, to estimate how long the whole list takes.
_FIRST_SLICE = 32
#: A list is sent in about this many messages, so that packing and
#: rebuilding overlap...
_MESSAGES = 8
#: ...each taking at least this long to pack (a message costs a few sends).
_MIN_MESSAGE_S = 0.002


def comm_device():
    """The device of collective tensors: the current GPU with NCCL."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _to_wire(array, device):
    tensor = torch.from_numpy(array)
    return tensor if device.type == 'cpu' else tensor.to(device)


def _from_wire(tensor):
    return tensor.numpy() if tensor.device.type == 'cpu' else \
        tensor.cpu().numpy()


def _encode(packer, more=False):
    """The pieces of a message, in sending order: the int64 header (more
    messages follow, pickle length, buffer count, buffer sizes), extra
    sizes, the pickle, then one function per buffer that joins it (so that
    only one joined buffer exists at a time)."""
    sizes = [b.size for b in packer.buffers]
    skeleton = np.frombuffer(packer.skeleton(), dtype=np.uint8)
    head = sizes[:_SLOTS]
    pieces = [np.array([int(more), skeleton.size, len(sizes)] + head +
                       [0] * (_SLOTS - len(head)), dtype=np.int64)]
    if len(sizes) > _SLOTS:
        pieces.append(np.array(sizes[_SLOTS:], dtype=np.int64))
    pieces.append(skeleton)
    pieces += [b.join for b in packer.buffers]
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
        tuple: (more messages follow, pickle bytes, buffers)
    """
    header = torch.empty(3 + _SLOTS, dtype=torch.int64, device=device)
    move(header)
    more, skeleton_len, count, *sizes = header.tolist()
    sizes = sizes[:count]
    if count > _SLOTS:
        extra = torch.empty(count - _SLOTS, dtype=torch.int64, device=device)
        move(extra)
        sizes += extra.tolist()
    arrays = []
    for size in [skeleton_len] + sizes:
        wire = torch.empty(size, dtype=torch.uint8, device=device)
        if size:
            move(wire)
        arrays.append(_from_wire(wire))
    return bool(more), arrays[0].tobytes(), arrays[1:]


def pack_messages(items, chunk_bytes=CHUNK_BYTES):
    """Pack the list ``items`` in messages, lazily.

    A message ends at ``chunk_bytes`` or after about 1/:data:`_MESSAGES`
    of the time the whole list takes to pack (estimated on its first
    items), whichever comes first.

    Yields:
        Packer: each holding some items, dumped as lists; its attribute
        ``more`` says whether more messages follow.
    """
    start, count = 0, len(items)
    step, budget = _FIRST_SLICE, None
    while True:
        packer = Packer(chunk_bytes)
        began = time.perf_counter()
        with no_gc():
            while start < count:
                packer.dump(items[start:start + step])
                start += step
                if packer.size() >= chunk_bytes:
                    break
                spent = time.perf_counter() - began
                if budget is None:
                    per_item = spent / step
                    budget = max(_MIN_MESSAGE_S,
                                 per_item * count / _MESSAGES)
                    step = max(1, int(budget / 4 / max(per_item, 1e-9)))
                if spent >= budget:
                    break
        packer.more = start < count
        yield packer
        if not packer.more:
            return


def gather_lists(items, dst=0, chunk_bytes=CHUNK_BYTES):
    """Gather the list ``items`` of every rank on rank ``dst``.

    Each other rank sends its list in messages of at most about
    ``chunk_bytes``; ``dst`` takes one message from each sender in turn and
    rebuilds it while the senders pack their next, so it holds at most one
    message beside what it has rebuilt. The arrays of a message are views
    of the buffers received, so they are stored once.

    Returns:
        list[list] | None: one list per rank on ``dst``, None elsewhere.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = comm_device()
    if rank != dst:
        def send(tensor):
            dist.send(tensor, dst)
        for packer in pack_messages(items, chunk_bytes):
            message = _encode(packer, packer.more)
            del packer
            _put(message, send, device)
            del message
        return None
    parts = [[] for _ in range(world_size)]
    parts[dst] = items
    senders = [src for src in range(world_size) if src != dst]
    while senders:
        for src in list(senders):
            def recv(tensor, src=src):
                dist.recv(tensor, src)
            more, skeleton, buffers = _take(recv, device)
            parts[src] += unpack(skeleton, buffers, items=True)
            del skeleton, buffers
            if not more:
                senders.remove(src)
    return parts


def interleave(parts, size):
    """Put per-rank results back in dataset order.

    Rank r holds samples r, r + n, r + 2n, ... of the (padded) sampler
    order; ranks may hold different counts. Padding is dropped by ``size``.
    """
    lengths = [len(p) for p in parts]
    if not parts:
        return []
    if lengths == sorted(lengths, reverse=True) and \
            lengths[0] - lengths[-1] <= 1:
        # as a sampler shares them: strided slices take each rank's part
        ordered = [None] * sum(lengths)
        for rank, part in enumerate(parts):
            ordered[rank::len(parts)] = part
        del ordered[size:]
        return ordered
    ordered = []
    for i in range(max(lengths)):
        for part in parts:
            if i < len(part):
                ordered.append(part[i])
    return ordered[:size]


# ------------------------------------------------------------ broadcast
def broadcast_object(obj=None, src=0, chunk_bytes=CHUNK_BYTES):
    """Send ``obj`` from rank ``src`` to every rank, the data of its arrays
    and CPU tensors packed in buffers of about ``chunk_bytes`` (joined one
    at a time on ``src``). CPU tensors arrive on the CPU.

    Returns:
        the object, on every rank (``obj`` itself on ``src``).
    """
    device = comm_device()

    def move(tensor):
        dist.broadcast(tensor, src)
    if dist.get_rank() == src:
        packer = Packer(chunk_bytes)
        with no_gc():
            packer.dump(obj)
        message = _encode(packer)
        del packer
        _put(message, move, device)
        return obj
    _, skeleton, buffers = _take(move, device)
    return unpack(skeleton, buffers)
