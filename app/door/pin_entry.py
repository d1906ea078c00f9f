"""Where the door client reads a PIN from when the service answers ``pin_required``.

Never from the command line itself (argv is visible to every user of the machine, and kept in
shell histories): ``stdin`` reads one line from standard input (a keypad that types, or an
operator), ``file:PATH`` reads PATH each time (a named pipe that the keypad's driver writes one PIN
into per entry, so each read waits for the next entry; or a plain file, for tests). The PIN is
never logged or echoed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

PIN_FROM_PATTERN = r"^(stdin|file:.+)$"
_PIN = re.compile(r"[0-9]{4,12}")


class PinEntry:
    """Reads one PIN per call: ``None`` when there is none (end of input, unreadable file, or not
    4-12 digits: the burst then stays denied, and ``echo`` says why without the PIN)."""

    def __init__(
        self, spec: str, *, stdin: TextIO | None = None, echo: Callable[[str], None] | None = None
    ) -> None:
        if spec == "stdin":
            self._path: Path | None = None
        elif spec.startswith("file:") and len(spec) > len("file:"):
            self._path = Path(spec[len("file:") :])
        else:
            raise ValueError("a PIN source is 'stdin' or 'file:PATH'")
        self._stdin = stdin
        self._echo = echo or (lambda _: None)

    @property
    def source(self) -> str:
        return "stdin" if self._path is None else f"file:{self._path}"

    def read(self) -> str | None:
        if self._path is None:
            line = (self._stdin or sys.stdin).readline()
        else:
            try:
                line = self._path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self._echo(f"cannot read the PIN from {self._path}: {type(exc).__name__}")
                return None
        pin = line.strip()
        if not pin:
            self._echo("no PIN entered")
            return None
        if not _PIN.fullmatch(pin):
            self._echo("the PIN entered is not 4 to 12 digits; not sent")
            return None
        return pin
