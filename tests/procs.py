"""Running the tools in a bounded subprocess, as a user would."""
import os
import signal
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(args, env=None, cwd=ROOT):
    """``args`` started in its own process group, stdout and stderr
    together in one text pipe."""
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc, timeout=300):
    """(exit status, output) of ``proc``; its whole process group is killed
    if it outlives ``timeout`` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return proc.returncode, out


def kill_group(proc):
    """Kill ``proc``'s process group if ``proc`` still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_bounded(args, env=None, timeout=300, cwd=ROOT):
    """(exit status, stdout and stderr together) of ``args`` run in its own
    process group from the repository root; the whole group is killed if
    it outlives ``timeout`` seconds."""
    return finish(start(args, env, cwd), timeout)
