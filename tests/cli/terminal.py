"""A command in a pseudo-terminal, as a person at a keyboard runs it: typed lines, Ctrl-C
(the terminal sends SIGINT to the foreground process), Ctrl-D."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


class Terminal:
    """``argv`` running with a pty as its controlling terminal (stdin, stdout and stderr)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: a default SIGINT (pytest may run with it ignored), then exec
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.output = ""  # everything read so far
        self.mark = 0  # expect() searches after this
        self.status: int | None = None

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def ask(self, line: str, prompt: str = ">>> ", timeout: float = 120) -> str:
        """Type ``line``; return what the terminal shows until the next ``prompt``."""
        self.line(line)
        return self.expect(prompt, timeout)

    def expect(self, text: str, timeout: float = 120) -> str:
        """Read until ``text`` appears after the last match; return what came before it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.output.find(text, self.mark)
            if found >= 0:
                before, self.mark = self.output[self.mark:found], found + len(text)
                return before
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.output[self.mark:]}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], min(timeout, 1.0))
        if not ready:
            return self.alive()
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child is gone
            return False
        self.output += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return bool(data)

    def alive(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is None

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; the terminal shows:\n{self.output[self.mark:]}")
            self._read(0.2)
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)
