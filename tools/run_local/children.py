"""Child processes of run-local, and the small helpers the other modules share."""

import ctypes
import os
import shlex
import signal
import socket
import subprocess

import requests

PR_SET_PDEATHSIG = 1


class Failed(Exception):
    """Starting or running failed; the message says what, for the user."""


class Interrupted(Exception):
    """A signal asked us to stop while starting."""


def say(message=""):
    """Print a line to the user at once (the output may be a pipe)."""
    print(message, flush=True)


def progress(message):
    """Print a `run-local: ...` progress line."""
    say(f"run-local: {message}")


def _die_with_parent():
    """In the child, before exec: get SIGTERM if run-local dies without stopping us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class Child:
    """One child process: its own session, output to a log file, stopped by group.

    `stop()` sends SIGTERM and waits; a child still there after `timeout` is
    killed with its whole process group, and so is anything it left behind.
    The log is appended to across runs; `log_start` is where this run's output
    begins, so readers never mistake an earlier run's lines for this one's.
    """

    def __init__(self, name, argv, log_path, cwd):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        # Not the checkout: there `python -m cutter` would find the project
        # folder `cutter/` (no __init__.py) before the installed package.
        self.cwd = cwd
        self.proc = None
        self.log_start = 0

    def start(self):
        """Start the process, its output appended to the log after a header line."""
        argv = self.argv
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== run-local: {shlex.join(argv)}\n".encode())
            log.flush()
            self.log_start = log.tell()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                cwd=self.cwd,
            )

    @property
    def pid(self):
        """The process id (also its session and process group id)."""
        return self.proc.pid

    def poll(self):
        """The exit status, or None while it runs."""
        return self.proc.poll()

    def signal(self, signum):
        """Send `signum` if the process still runs."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Wait for the child to exit; kill its group if it does not. Returns its code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            progress(f"{self.name} did not stop in {timeout}s; killing it")
            self.kill_group()
            code = self.proc.wait()
        # Whatever it started and left running (it shares the group) goes too.
        self.kill_group()
        return code

    def kill_group(self):
        """SIGKILL the child's whole process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def output(self):
        """What this run of the child has written to its log so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=15):
        """The last `lines` lines of the log, for error messages."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def port_in_use(port, host="127.0.0.1"):
    """True when something already holds TCP `port` on `host`."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def answers(url):
    """True when `url` answers 200 (a service is up)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def responds(url):
    """True when anything answers HTTP at `url`, whatever the status."""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


def listdir(path):
    """`os.listdir`, or [] when the directory is not there (yet)."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def file_size(path):
    """Size in bytes, 0 when the file is gone."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
