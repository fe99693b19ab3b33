"""`make demo`: train the recognition demo for real, then summarize.

    python demo/run_demo.py              # recognition (the main job)
    python demo/run_demo.py --detection  # the mmdet detector demo
    python demo/run_demo.py --quick      # a shortened run (tests)

The summary's commands use the interpreter that ran this script
(``.venv/bin/python`` under ``make demo``), so they work as printed.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

DEMOS = dict(
    recognition=('demo/recognition/crnn_lightweight.py',
                 'work_dirs/demo_recognition', ['accuracy', 'NED']),
    detection=('demo/detection/tiny_detector.py',
               'work_dirs/demo_detection', ['bbox']))


def shown(path):
    """``path`` as the printed commands use it: relative to the repository
    (they run from there), absolute outside it."""
    if not path:
        return path
    path = osp.abspath(osp.join(ROOT, path))
    inside = osp.commonpath([path, ROOT]) == ROOT
    return osp.relpath(path, ROOT) if inside else path


def python():
    """The interpreter running this script, as the printed commands write
    it: ``.venv/bin/python`` inside the repository, else its full path."""
    return shown(sys.executable)


def summary(config, work_dir, metrics):
    from davarocr_mmcv.core.resume import find_latest_checkpoint
    from davarocr_mmcv.serialization import load_checkpoint_file
    latest = find_latest_checkpoint(osp.join(ROOT, work_dir))
    if latest is None:
        return 'no checkpoint was written'
    msgs = load_checkpoint_file(latest)['meta'].get('hook_msgs', {})
    latest, best, work_dir = shown(latest), shown(msgs.get('best_ckpt')), \
        shown(work_dir)
    lines = ['', '=' * 72, 'Summary', '=' * 72,
             f'latest checkpoint : {latest}',
             f'best checkpoint   : {best}']
    if 'best_score' in msgs:
        metric = msgs.get('best_metric', 'score')
        where = (f"{msgs['best_unit']} {msgs['best_step']}"
                 if 'best_step' in msgs else 'see log')
        lines.append(f'best {metric:<13}: {msgs["best_score"]} at {where}')
    history = msgs.get('eval_history', [])
    if history:
        first, last = history[0], history[-1]
        lines.append(f'first evaluation  : {first["metrics"]} '
                     f'({first["unit"]} {first["step"]})')
        lines.append(f'last evaluation   : {last["metrics"]} '
                     f'({last["unit"]} {last["step"]})')
    py = python()
    lines += [
        f'resume            : {py} tools/train.py '
        f'{config} --work-dir {work_dir} --resume-from {latest}',
        f'test              : {py} tools/test.py {config} '
        f'{best or latest} --eval {" ".join(metrics)}',
        f'status            : {py} tools/status.py {work_dir}',
        f'plot              : {osp.join(work_dir, "metrics.png")}',
    ]
    return '\n'.join(lines)


def main(argv=None):
    from davarocr_mmcv.version import add_version_option
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--detection', action='store_true',
                        help='train the mmdet detector demo '
                        f'({DEMOS["detection"][0]}) instead of the '
                        f'recognition demo ({DEMOS["recognition"][0]})')
    parser.add_argument('--quick', action='store_true',
                        help='shortened training: 2 epochs (the tests)')
    parser.add_argument('--work-dir',
                        help='folder for checkpoints, logs and the plot '
                        f'(default: {DEMOS["recognition"][1]}, or '
                        f'{DEMOS["detection"][1]} with --detection)')
    add_version_option(parser)
    args = parser.parse_args(argv)
    config, work_dir, metrics = DEMOS['detection' if args.detection
                                      else 'recognition']
    work_dir = args.work_dir or work_dir
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
           '--validate']
    if args.quick:
        cmd += ['--cfg-options', 'runner.max_epochs=2']
    print('$ ' + ' '.join(cmd), flush=True)
    returncode = subprocess.run(cmd, cwd=ROOT).returncode
    if returncode != 0:
        print(f'\ntraining exited with status {returncode}; see the log '
              f'above and in {work_dir}', file=sys.stderr)
        sys.exit(returncode)
    os.chdir(ROOT)
    from davarocr_mmcv.plot import plot_metrics
    plot_metrics(work_dir)
    print(summary(config, work_dir, metrics))


if __name__ == '__main__':
    main()
