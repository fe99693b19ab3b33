"""The inference loops: ``single_gpu_test`` / ``multi_gpu_test`` for
detectors, recognizers, spotters and any mmcv-style model, on CPU and GPU,
with or without torch.distributed.

They sit below the hooks (the eval hooks run them) and above the gathers
(:mod:`.comm` through the process group, :mod:`.filegather` through
files). ``davarocr_mmcv.apis`` re-exports them, as DavarOCR's ``apis``
did."""
import inspect
import os.path as osp

import torch
from mmcv.runner import get_dist_info

from ..constants import MODEL_TYPES
from ..utils.checks import check_choice
from ..utils.progressbar import DavarProgressBar
from .comm import gather_lists, interleave
from .filegather import collect_results_files


def format_results(result, model_type):
    """Per-sample results of one batch, as DavarOCR formats them.

    DETECTOR: mask results RLE-encoded; RECOGNIZOR: the texts (or
    ``(text, length)`` pairs, or lengths) of a result dict; SPOTTER: as is.
    """
    if model_type == 'DETECTOR':
        if isinstance(result, list) and result and \
                isinstance(result[0], tuple):
            from mmdet.core import encode_mask_results
            return [(bbox, encode_mask_results(mask))
                    for bbox, mask in result]
        return list(result)
    if model_type == 'RECOGNIZOR':
        if not isinstance(result, dict):
            return list(result)
        if 'text' in result and 'length' in result and 'prob' not in result:
            return list(zip(result['text'], result['length']))
        texts = result['text'] if 'text' in result else result['length']
        if texts and isinstance(texts[0], list) and len(texts) == 1:
            texts = texts[0]
        return list(texts)
    return list(result)


#: Keyword arguments a test loop passes to ``model(return_loss=False, ...)``
#: when the model's test path names them (mmdet's and mmseg's
#: ``simple_test(..., rescale=False)``), and leaves out otherwise (mmcls's
#: heads fail on an unknown ``rescale``).
OPTIONAL_TEST_KWARGS = {'rescale': True}
#: The methods a call ``model(return_loss=False, **kwargs)`` goes through.
TEST_PATH = ('forward', 'forward_test', 'simple_test', 'aug_test')


def _named_params(method):
    try:
        return set(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return set()


def inference_kwargs(model):
    """The keyword arguments of the test loops' ``model(**data, ...)`` call.

    ``return_loss=False`` always; each of :data:`OPTIONAL_TEST_KWARGS` only
    when a method of the unwrapped model's test path (:data:`TEST_PATH`)
    names it: a ``**kwargs`` that merely passes it on is no promise that
    something down the line takes it.
    """
    module = getattr(model, 'module', model)  # MM(Distributed)DataParallel
    named = set()
    for name in TEST_PATH:
        method = getattr(module, name, None)
        if callable(method):
            named |= _named_params(method)
    kwargs = {'return_loss': False}
    kwargs.update((k, v) for k, v in OPTIONAL_TEST_KWARGS.items()
                  if k in named)
    return kwargs


def _inference(model, data_loader, model_type, on_batch, on_result=None):
    """Run ``model`` over ``data_loader``; ``on_batch(n)`` after each batch
    of ``n`` samples, ``on_result(data, result)`` before its formatting."""
    model.eval()
    kwargs = inference_kwargs(model)
    results = []
    for data in data_loader:
        with torch.no_grad():
            result = model(**kwargs, **data)
        if on_result is not None:
            on_result(data, result)
        batch = format_results(result, model_type)
        results.extend(batch)
        on_batch(len(batch))
    return results


def single_gpu_test(model, data_loader, show=False, out_dir=None,
                    show_score_thr=0.3, model_type='DETECTOR',
                    min_time_interval=1):
    """Run ``model`` over ``data_loader`` in this process.

    The model is called as ``model(return_loss=False, **data)``, with
    ``rescale=True`` where its test path takes it (:func:`inference_kwargs`).
    ``show`` / ``out_dir`` draw a detector's results, as mmdet does.

    Returns:
        list: one formatted result per sample, in dataset order.
    """
    check_choice(model_type, MODEL_TYPES, 'model_type')
    bar = DavarProgressBar(len(data_loader.dataset), min_time_interval)
    on_result = None
    if (show or out_dir) and model_type == 'DETECTOR':
        def on_result(data, result):
            _show_detections(model, data, result, show, out_dir,
                             show_score_thr)
    return _inference(model, data_loader, model_type, bar.update, on_result)


def _show_detections(model, data, result, show, out_dir, score_thr):
    import mmcv
    from mmcv.image import tensor2imgs
    img = data['img'][0]
    img_tensor = img if isinstance(img, torch.Tensor) else img.data[0]
    img_metas = data['img_metas'][0].data[0]
    imgs = tensor2imgs(img_tensor, **img_metas[0]['img_norm_cfg'])
    module = getattr(model, 'module', model)
    for i, (image, meta) in enumerate(zip(imgs, img_metas)):
        h, w, _ = meta['img_shape']
        ori_h, ori_w = meta['ori_shape'][:-1]
        image = mmcv.imresize(image[:h, :w, :], (ori_w, ori_h))
        out_file = osp.join(out_dir, meta['ori_filename']) if out_dir \
            else None
        module.show_result(image, result[i], show=show, out_file=out_file,
                           score_thr=score_thr)


def multi_gpu_test(model, data_loader, tmpdir=None, gpu_collect=False,
                   model_type='DETECTOR', min_time_interval=1):
    """Run ``model`` on this rank's share of ``data_loader`` and gather every
    rank's results on rank 0.

    The loader is expected to use a non-shuffling DistributedSampler (rank r
    gets samples r, r + world_size, ...). Works with gloo on CPU and NCCL on
    GPU; with ``world_size == 1`` it is ``single_gpu_test``.

    Args:
        tmpdir (str | None): None (default) gathers the results through the
            process group, so no folder has to be shared between machines.
            A folder exchanges them through files instead, as mmcv does: a
            unique sub-folder is made in it per call, then removed; every
            rank must see it.
        gpu_collect (bool): mmcv's argument: True uses the process group
            even when ``tmpdir`` is given. Default: False.

    Returns:
        list | None: the results in dataset order on rank 0, None elsewhere.
    """
    check_choice(model_type, MODEL_TYPES, 'model_type')
    rank, world_size = get_dist_info()
    if world_size == 1:
        return single_gpu_test(model, data_loader, model_type=model_type,
                               min_time_interval=min_time_interval)
    size = len(data_loader.dataset)
    bar = DavarProgressBar(size, min_time_interval) if rank == 0 else None
    results = _inference(
        model, data_loader, model_type,
        # rank 0 counts every rank's batch; the sampler's padding is not
        # counted, so the bar ends at the dataset's size
        (lambda n: bar.update(min(n * world_size, size - bar.done)))
        if bar else (lambda n: None))
    return collect_results(results, size, tmpdir, gpu_collect)


def collect_results(results, size, tmpdir=None, gpu_collect=False):
    """Gather the per-rank ``results`` on rank 0, in dataset order.

    Args:
        results (list): this rank's results (samples rank, rank + n, ...).
        size (int): the dataset size; padding beyond it is dropped.
        tmpdir (str | None): None gathers through the process group; a
            folder gathers through files in a unique sub-folder of it.
        gpu_collect (bool): use the process group whatever ``tmpdir``.

    Returns:
        list | None: the results in dataset order on rank 0, None elsewhere.
    """
    if tmpdir is None or gpu_collect:
        parts = gather_lists(results, dst=0)
    else:
        parts = collect_results_files(results, tmpdir)
    return None if parts is None else interleave(parts, size)
