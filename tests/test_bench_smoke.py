"""The benchmarks are not timed tests; CI only checks that they run."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_smoke_runs_and_writes_results(tmp_path):
    out = tmp_path / 'results.json'
    subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'run.py'),
                    '--smoke', '--out', str(out)], check=True, timeout=600,
                   capture_output=True)
    results = json.loads(out.read_text())
    assert results['smoke'] is True
    assert results['machine']['mmcv'] == '1.7.1'
    for key in ('dispatch', 'save', 'collect', 'disk', 'memory'):
        assert key in results
    assert results['disk']['lightweight']['checkpoints'] == 2
