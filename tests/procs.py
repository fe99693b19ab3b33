"""Running the tools in a bounded subprocess, as a user would."""
import os
import signal
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bounded(args, env=None, timeout=300, cwd=ROOT):
    """(exit status, stdout and stderr together) of ``args`` run in its own
    process group from the repository root; the whole group is killed if
    it outlives ``timeout`` seconds."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out
