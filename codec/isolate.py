"""Face detection in a worker process, so a crash in native code costs one image, not a run.

dlib's detectors are C++; an input shape or content they cannot take has killed the process
(SIGSEGV, `free(): invalid size`) before `MIN_DETECT_SIDE` kept the known shapes from them.
Where a batch is at stake, `encode_iter` sends every detection to a `Detector` instead: one
`python -m codec.isolate` process for the run, fed pickled photos over a pipe and answering
with the faces found. If it dies, that image gets an ImageError naming the cause and the next
detection starts a fresh worker. Only numpy, Pillow and dlib load there (no torch), so a
start costs about a tenth of a second.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
from typing import Any, BinaryIO

from PIL import Image

from codec.errors import ImageError, PercodecError

#: What the worker runs for each request, as 'module:function' (tests point it elsewhere).
TARGET = "codec.align:detect"
_LEN = struct.Struct(">Q")


def _send(f: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_LEN.pack(len(data)) + data)
    f.flush()


def _receive(f: BinaryIO) -> Any:
    head = f.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    data = f.read(_LEN.unpack(head)[0])
    return pickle.loads(data)  # noqa: S301 - from our own child process


class Detector:
    """`detect(img, thorough)` as `codec.align.detect` gives it, run in a worker process
    that is restarted after a crash. Use as a context manager, or call `close`."""

    def __init__(self, target: str | None = None, preload: bool = False) -> None:
        """`preload`: start the worker now and have it load the detector's models at once
        (the target module's `preload()`), in parallel with this process's own start-up."""
        self.target = target or TARGET
        self._proc: subprocess.Popen[bytes] | None = None
        self._asked = False  # whether the running worker has been sent a photo
        self._log: Any = None
        self.preload = preload
        if preload:
            self._start()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, img: Image.Image, thorough: bool = False) -> list:
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        self._asked = True
        try:
            _send(proc.stdin, (img, thorough))
            ok, value = _receive(proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            why = self._death()
            raise ImageError(f"the face finder crashed on this image ({why}); --no-align skips it") from None
        if not ok:
            raise value if isinstance(value, PercodecError) else ImageError(f"the face finder failed: {value}")
        return value

    def _start(self) -> subprocess.Popen[bytes]:
        self.close()
        self._asked = False
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "codec.isolate", self.target, *(["--preload"] if self.preload else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        return self._proc

    def _death(self) -> str:
        """How the worker ended: its last line on stderr and the signal, e.g. 'free(): invalid size, SIGABRT'."""
        assert self._proc is not None
        code = self._proc.wait()
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        parts = [lines[-1][:200]] if lines else []
        parts.append(signal.Signals(-code).name if code < 0 else f"exit {code}")
        self._proc = None
        return ", ".join(parts)

    def close(self) -> None:
        """Stop the worker (if one runs): one never sent a photo at once (it may still be
        loading its models, which nobody will use), one that was when it has answered."""
        if self._proc is not None:
            if self._proc.poll() is None and not self._asked:
                self._proc.kill()
                self._proc.wait()
            elif self._proc.returncode is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _serve(target: str, preload: bool) -> None:
    """The worker: answer (image, thorough) requests on stdin with (ok, faces or message)."""
    import importlib

    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, name)
    if preload and hasattr(module, "preload"):
        module.preload()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    while True:
        try:
            img, thorough = _receive(stdin)
        except EOFError:
            return
        try:
            answer = (True, fn(img, thorough))
        except PercodecError as exc:  # a Python-level failure is an answer, not a crash
            answer = (False, exc)
        except Exception as exc:
            answer = (False, f"{type(exc).__name__}: {exc}")
        _send(stdout, answer)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _serve(sys.argv[1], "--preload" in sys.argv[2:])
