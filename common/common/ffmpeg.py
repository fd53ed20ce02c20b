"""Running ffmpeg for cuts: one process, its output read as it comes.

`Process` starts one ffmpeg (at a lower priority: `NICENESS`) with its stdout piped to us and its stderr kept
(the last `STDERR_LINES` lines) for the error message; `check()` waits for
it and raises `FFmpegError` if it failed, `kill()` ends it and its readers.
`start` runs one ffmpeg writing several outputs, each into a pipe of its own
(one process start-up instead of several), and `collect` reads them all.
Nothing here knows about segments or time: `common.cut` plans the pieces
and builds the arguments.

How it fails: an ffmpeg that exits non-zero is an `FFmpegError` with its
stderr; one that will not die after `kill()` is logged and left (it has
nothing more to write to: its pipes are closed); a writer into ffmpeg's
stdin that finds the pipe closed (ffmpeg stopped reading once it had what
it needed) stops quietly.
"""

import collections
import logging
import os
import time

import gevent
import gevent.fileobject
import gevent.subprocess

from .probe import FFmpegError

logger = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
# Bytes read from a segment or from ffmpeg at a time while streaming.
CHUNK_SIZE = 256 * 1024
# How long a killed ffmpeg gets to exit before we stop waiting for it (seconds).
KILL_TIMEOUT = 1
# Lines of ffmpeg's stderr kept for the error message.
STDERR_LINES = 20
# How much nicer than us ffmpeg runs: a node flooded with cuts must still
# record (the downloader, at normal priority, gets the CPU first).
NICENESS = 10


def _lower_priority():
    os.nice(NICENESS)


def base_args():
    """The start of every ffmpeg command line: quiet but for errors, no stdin."""
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "error"]


class Process:
    """One ffmpeg, its stdout to read, its stderr kept for error messages.

    `outputs`: read ends of more pipes it writes into (their write ends in
    `pass_fds`); `self.outputs` is stdout followed by them, and `kill`
    closes them all.
    """

    def __init__(self, args, pass_fds=(), env=None, outputs=()):
        logger.debug("Running %s", args)
        self.args = args
        self.proc = gevent.subprocess.Popen(
            args,
            stdin=gevent.subprocess.DEVNULL,
            stdout=gevent.subprocess.PIPE,
            stderr=gevent.subprocess.PIPE,
            pass_fds=pass_fds,
            env=env,
            preexec_fn=_lower_priority,
        )
        self.outputs = [self.proc.stdout]
        self.outputs += [gevent.fileobject.FileObjectPosix(fd, "rb", close=True) for fd in outputs]
        self.stderr = collections.deque(maxlen=STDERR_LINES)
        self._stderr_reader = gevent.spawn(self._read_stderr)
        # Greenlets reading this process's pipes: `kill` ends them before it
        # closes the pipes, since closing a pipe under a reader blocked in it
        # raises "reentrant call" in that reader's buffered file.
        self.readers = [self._stderr_reader]

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def chunks(self):
        while True:
            chunk = self.proc.stdout.read1(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk

    def check(self):
        """Wait for the exit; FFmpegError if it failed."""
        returncode = self.proc.wait()
        self._stderr_reader.join()
        tail = " | ".join(self.stderr)
        if returncode != 0:
            raise FFmpegError(f"ffmpeg exited with {returncode}: {tail}")
        if tail:
            # It worked, but said something at error level (a damaged packet
            # in a segment, say): worth a look, not worth failing the cut.
            source = next((a for a in self.args if a.startswith("file:")), "piped segments")
            logger.warning("ffmpeg reading %s said: %s", source, tail)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=KILL_TIMEOUT)
            except gevent.subprocess.TimeoutExpired:
                logger.warning("ffmpeg %d did not exit after being killed", self.proc.pid)
        gevent.killall(self.readers, timeout=KILL_TIMEOUT)
        for f in (*self.outputs, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


def copy_file(path, offset=0):
    """Yield a file's bytes from `offset` on, in CHUNK_SIZE pieces."""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


def start(args, outputs):
    """Start one ffmpeg writing several outputs, each into a pipe of its own.

    `args` is the command line up to the first output (inputs, global
    options), `outputs` each output's options: the first goes to stdout, the
    others to pipes made here. ffmpeg writes its outputs as it goes, so all
    must be read at once (`collect` does): one left unread fills its pipe
    and stalls the others. If ffmpeg cannot be started, the pipes are closed
    and the error raised; once started, `kill` closes them.
    """
    pipes = [os.pipe() for _ in outputs[1:]]
    args = list(args) + list(outputs[0]) + ["pipe:1"]
    for options, (_, write_fd) in zip(outputs[1:], pipes, strict=True):
        args += list(options) + [f"pipe:{write_fd}"]
    try:
        return Process(
            args,
            pass_fds=[w for _, w in pipes],
            outputs=[r for r, _ in pipes],
        )
    except BaseException:
        for read_fd, _ in pipes:
            os.close(read_fd)
        raise
    finally:
        for _, write_fd in pipes:
            os.close(write_fd)


def _read_all(f):
    data = bytearray()
    while chunk := f.read(CHUNK_SIZE):
        data += chunk
    return data


def collect(process, result):
    """Read all of `process`'s outputs into `result` (an AsyncResult): their
    bytes one after the other, in order, or the error."""
    try:
        readers = [gevent.spawn(_read_all, f) for f in process.outputs[1:]]
        process.readers += readers
        data = bytearray().join(process.chunks())
        for reader in readers:
            data += reader.get()
        process.check()
        result.set(data)
    except BaseException as e:  # noqa: B036 -- hand every outcome to the reader
        result.set_exception(e)


def feed(parts, pipe):
    """Write `parts`, (path, offset) pairs (each file from that offset on: a
    run's segments, or an fMP4 run's first file and the media of the rest),
    into a pipe to ffmpeg, then close it.

    ffmpeg stops reading once it has all it needs (the rest of the last
    segment is past the cut); the broken pipe that gives is expected.
    """
    try:
        for path, offset in parts:
            for chunk in copy_file(path, offset):
                pipe.write(chunk)
        pipe.close()
    except BrokenPipeError:
        pass


def fed_output(process, inputs):
    """Yield `process`'s output while feeding it: `inputs` are (parts, pipe)
    pairs, each written by its own greenlet (`feed`).

    Raises FFmpegError if ffmpeg failed, or what a writer raised; however it
    ends, the writers are stopped (the caller kills the process).
    """
    writers = [gevent.spawn(feed, parts, pipe) for parts, pipe in inputs]
    try:
        yield from process.chunks()
        process.check()
        for writer in writers:
            writer.get()
    finally:
        gevent.killall(writers, timeout=KILL_TIMEOUT)


def close_quietly(pipe):
    try:
        pipe.close()
    except OSError:
        pass


class Run:
    """One cut's ffmpegs, pipes and accounting, as a context manager.

    The cut appends the processes and pipes it starts to `processes` and
    `pipes`, and sets `method` and `video_seconds` as it decides them. On
    exit, however the cut ends (done, failed, or closed early by its reader:
    GeneratorExit), every process is killed and every pipe closed, and the
    cut is counted in `metrics` (`common.cut`'s) by type, method and outcome
    (an exception's `outcome` attribute, if it has one), and timed per second
    of video when it succeeded.
    """

    def __init__(self, metrics, type, method):
        self.metrics = metrics
        self.type = type
        self.method = method
        self.video_seconds = 0.0
        self.processes = []
        self.pipes = []
        self.wall_start = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            outcome = "ok"
        elif issubclass(exc_type, GeneratorExit):
            outcome = "cancelled"
        else:
            outcome = getattr(exc, "outcome", "error")
        for process in self.processes:
            process.kill()
        for pipe in self.pipes:
            close_quietly(pipe)
        self.metrics.cuts.labels(type=self.type, method=self.method, outcome=outcome).inc()
        if outcome == "ok" and self.video_seconds > 0:
            self.metrics.latency.labels(type=self.type, method=self.method).observe(
                (time.monotonic() - self.wall_start) / self.video_seconds
            )
        return False
