"""core/packing.py: what is packed comes back exactly as pickle gives it
back, for any nesting of results (property test with hypothesis), and
through a real 2-process gloo gather."""
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from davarocr_mmcv.core.comm import interleave, pack_messages
from davarocr_mmcv.core.packing import Packer, pack, unpack
from dist_workers import comm_drawn_sample, comm_senders_in_turn, launch


def exact(value):
    """A form of ``value`` that two objects share only when they are equal
    exactly: types, dtypes with byte order, shapes, memory order, strides
    of tensors, bytes (NaN included), key order. As with pickle, a non-contiguous array
    is expected back C-contiguous; unlike pickle 5, arrays arrive writable
    (as with mmcv and ``gather_object``) and big-endian datetimes keep
    their byte order."""
    kind = type(value)
    if kind in (list, tuple):
        return kind.__name__, [exact(v) for v in value]
    if kind is dict:
        return 'dict', [(exact(k), exact(v)) for k, v in value.items()]
    if kind is np.ndarray:
        if value.dtype.hasobject:
            return 'objects', value.shape, exact(value.tolist())
        if not (value.flags.c_contiguous or value.flags.f_contiguous):
            value = np.ascontiguousarray(value)  # as pickle gives it back
        return ('ndarray', value.dtype, value.dtype.str, value.shape,
                _fortran(value), value.tobytes())
    if kind is torch.Tensor:
        flat = value.detach().resolve_conj().reshape(-1).clone()
        return ('tensor', str(value.dtype), tuple(value.shape),
                value.stride(), value.requires_grad,
                flat.view(torch.uint8).tolist() if flat.numel() else [])
    if isinstance(value, np.generic):
        return 'scalar', value.dtype, value.tobytes()
    if kind is float:
        return 'float', struct.pack('<d', value)
    if kind in (set, frozenset):
        return kind.__name__, sorted(map(repr, value))
    return kind.__name__, value


def _fortran(array):
    return array.flags.f_contiguous and not array.flags.c_contiguous


def standard_strides(value):
    """Every array in ``value`` has the strides of a fresh array of its
    shape in its order, as pickle gives it back."""
    if isinstance(value, (list, tuple)):
        return all(map(standard_strides, value))
    if isinstance(value, dict):
        return all(map(standard_strides, value.values()))
    if isinstance(value, np.ndarray) and value.size:
        return value.strides == np.empty(value.shape, value.dtype, order=(
            'F' if _fortran(value) else 'C')).strides
    return True


def aliasing(value, seen=None, out=None):
    """The pattern of shared arrays, tensors, lists and dicts in ``value``:
    for each, the index of its first occurrence."""
    if seen is None:
        seen, out = {}, []
    if isinstance(value, (np.ndarray, torch.Tensor, list, dict)):
        if id(value) in seen:
            out.append(seen[id(value)])
            return out
        seen[id(value)] = len(seen)
        out.append(seen[id(value)])
    if isinstance(value, (list, tuple)):
        for v in value:
            aliasing(v, seen, out)
    elif isinstance(value, dict):
        for v in value.values():
            aliasing(v, seen, out)
    return out


# ------------------------------------------------------------ strategies
_DTYPES = (hnp.scalar_dtypes() | hnp.byte_string_dtypes(max_len=3) |
           hnp.unicode_string_dtypes(max_len=3) |
           hnp.array_dtypes(hnp.scalar_dtypes(), max_size=3))


@st.composite
def arrays(draw):
    """Arrays as results hold them, and as they may be laid out."""
    dtype = draw(_DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                  max_side=4))
    array = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(['c', 'fortran', 'strided', 'swapped',
                                   'readonly', 'objects']))
    if layout == 'fortran':
        array = np.asfortranarray(array)
    elif layout == 'strided' and array.ndim:
        array = array[::2]
    elif layout == 'swapped' and array.dtype.fields is None:
        array = array.astype(array.dtype.newbyteorder())
    elif layout == 'readonly':
        array.flags.writeable = False
    elif layout == 'objects':
        array = np.array([draw(st.text(max_size=3)), None, 1.5],
                         dtype=object)
    return array


_TORCH_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32,
                 torch.int64, torch.float16, torch.bfloat16, torch.float32,
                 torch.float64, torch.complex64]


@st.composite
def tensors(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                  max_side=4))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(
        -1e3, 1e3, allow_nan=False)))
    tensor = torch.from_numpy(values).to(draw(st.sampled_from(
        _TORCH_DTYPES)))
    layout = draw(st.sampled_from(['c', 'transposed', 'sliced', 'grad']))
    if layout == 'transposed' and tensor.dim() >= 2:
        tensor = tensor.transpose(0, 1)
    elif layout == 'sliced' and tensor.dim():
        tensor = tensor[1:]
    elif layout == 'grad' and tensor.is_floating_point():
        tensor = tensor.clone().requires_grad_()
    return tensor


_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() |
           st.text(max_size=8) | st.binary(max_size=8) |
           st.floats(width=32).map(np.float32) | st.integers(
               -2 ** 15, 2 ** 15 - 1).map(np.int16) | arrays() | tensors())
RESULTS = st.recursive(
    _LEAVES,
    lambda children: (st.lists(children, max_size=5) |
                      st.lists(children, max_size=5).map(tuple) |
                      st.dictionaries(st.text(max_size=4), children,
                                      max_size=4) |
                      st.frozensets(st.integers(), max_size=3)),
    max_leaves=16)


def check_round_trip(value, got):
    assert exact(got) == exact(value)
    assert aliasing(got) == aliasing(value)
    assert standard_strides(got)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(RESULTS, st.sampled_from([1, 64, 2 ** 20]))
def test_pack_unpack_round_trip(value, chunk_bytes):
    check_round_trip(value, unpack(*pack(value, chunk_bytes)))


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RESULTS, max_size=12), st.sampled_from([1, 256, 2 ** 20]))
def test_messages_of_a_list_round_trip(items, chunk_bytes):
    got = []
    for packer in pack_messages(items, chunk_bytes):
        got += unpack(bytes(packer.skeleton()),
                      [b.join() for b in packer.buffers], items=True)
    check_round_trip(items, got)


def test_shared_and_empty_arrays_stay_distinct_or_shared():
    boxes = np.ones((2, 5), np.float32)
    empties = [np.zeros((0, 5), np.float32) for _ in range(3)]
    value = [boxes, empties, boxes, np.zeros((0, 5), np.float64)]
    got = unpack(*pack(value))
    assert got[0] is got[2]
    assert len({id(a) for a in got[1]}) == 3
    assert got[3].dtype == np.float64 and got[1][0].dtype == np.float32
    check_round_trip(value, got)


def test_arrays_are_views_of_one_buffer_and_writable():
    value = [np.arange(5, dtype=np.int16), np.ones((2, 2), np.float64)]
    skeleton, buffers = pack(value)
    assert len(buffers) == 1
    got = unpack(skeleton, buffers)
    assert all(a.base is not None and a.flags.writeable for a in got)
    assert all(a.ctypes.data % a.dtype.alignment == 0 for a in got)
    got[0][0] = 7  # writes the received buffer, not the sender's array
    assert value[0][0] == 0


def test_strings_pay_no_array_machinery():
    packer = Packer()
    packer.dump([f'word{i}' for i in range(100)])
    assert packer.buffers == [] and packer.data_bytes == 0


def test_a_large_array_gets_a_buffer_alone():
    value = [np.zeros(10, np.uint8), np.zeros(100, np.uint8),
             np.zeros(10, np.uint8)]
    skeleton, buffers = pack(value, chunk_bytes=50)
    assert [len(b) for b in buffers] == [10, 100, 10]
    check_round_trip(value, unpack(skeleton, buffers))


def test_interleave_fast_path_matches_the_general_order():
    parts = [list(range(r, 11, 3)) for r in range(3)]
    assert interleave(parts, 11) == list(range(11))
    assert interleave(parts, 9) == list(range(9))
    # not as a sampler shares them: the general order
    assert interleave([[0], [1, 3], [2]], 4) == [0, 1, 2, 3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_tensors_keep_their_device():
    value = [torch.arange(6, device='cuda').reshape(2, 3), torch.ones(2)]
    got = unpack(*pack(value))
    assert got[0].device == value[0].device and got[1].device.type == 'cpu'
    assert torch.equal(got[0], value[0])


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(RESULTS, min_size=3, max_size=12))
def test_a_drawn_result_set_through_a_real_gloo_gather(tmp_path, items):
    # rank r sends items[r::2] in messages of at most 64 bytes
    with open(tmp_path / 'items.pkl', 'wb') as f:
        pickle.dump(items, f, protocol=5)
    launch(comm_drawn_sample, 2, 120, str(tmp_path))
    with open(tmp_path / 'gathered.pkl', 'rb') as f:
        got = pickle.load(f)
    check_round_trip(items, got)
    with open(tmp_path / 'rank1.json') as f:
        assert json.load(f) is None  # only rank 0 gets the results


def test_three_ranks_with_different_counts(tmp_path):
    launch(comm_senders_in_turn, 3, 180, str(tmp_path))
    with open(tmp_path / 'turns.json') as f:
        parts = json.load(f)
    assert parts == [[[i, [i] * (i % 4)] for i in range(r, 30 + 7 * r, 3)]
                     for r in range(3)]
