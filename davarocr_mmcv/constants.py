"""File names the hooks write, kept in one place."""

#: Lightweight mode: the weights that produced the best score (DavarOCR's name).
BEST_CKPT_NAME = 'Best_checkpoint.pth'
#: Lightweight mode: the newest state, refreshed at every save point.
LATEST_MODEL_NAME = 'latest_model.pth'
#: General mode: pointer to the newest regular checkpoint (mmcv's name).
LATEST_LINK_NAME = 'latest.pth'
#: Plain-text pointer to the newest checkpoint, written beside ``latest.pth``
#: and readable where symlinks are refused (mmengine's name).
LAST_CHECKPOINT_FILE = 'last_checkpoint'
#: Default templates of regular checkpoints.
EPOCH_TMPL = 'epoch_{}.pth'
ITER_TMPL = 'iter_{}.pth'
#: Prefix of temporary files; a name under it is never a finished file.
TMP_PREFIX = '.davar-tmp-'
#: TrainStatusHook's file in ``work_dir`` (``tools/status.py``).
STATUS_FILE = 'status.json'
#: DavarOCR's top-level model types whose results the inference loops
#: format (``model_type``); the first names mmdet's detectors, also for the
#: resolver.
MODEL_TYPES = ('DETECTOR', 'RECOGNIZOR', 'SPOTTER')
DETECTOR = MODEL_TYPES[0]
