"""A minimal IMAP server that repeats what it receives, for the secrecy tests.

It greets, answers CAPABILITY (with or without AUTH=PLAIN) and LOGOUT, and answers every LOGIN
and AUTHENTICATE with the bytes it received, as careless servers do ("NO you sent: ..."). How it
answers is chosen by the local part of the user name, so one server serves every case:

- `tagged_no`, `tagged_bad`: the tagged NO (with a response code) or BAD repeats the command;
- `untagged_bye`: an untagged BYE repeats it, then the server hangs up;
- `untagged_no`: an untagged NO repeats it, then a tagged NO that does not;
- `unterminated`: the repeated bytes, CRLFs and all, without a final CRLF, then the server hangs
  up: imaplib quotes the line (as a bytes repr) in its exception;
- `truncated`: the tagged NO repeats the first half of the command;
- `garbage`: a line that is not IMAP at all repeats it (imaplib: "unexpected response");
- `drop`: the server hangs up in the middle of the command.

A literal ({N}) is read after a continuation, an AUTHENTICATE response after an empty one; in
one-line answers the received lines are joined with spaces.
"""

from __future__ import annotations

import base64
import binascii
import re
import socketserver
import threading

from demo.mailservers import HOST

MODES = (
    "tagged_no",
    "tagged_bad",
    "untagged_bye",
    "untagged_no",
    "unterminated",
    "truncated",
    "garbage",
    "drop",
)
# The modes whose answer repeats the credentials (all but a plain hang-up).
ECHOING = tuple(m for m in MODES if m != "drop")
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class _Handler(socketserver.StreamRequestHandler):
    server: EchoServer

    def send(self, *lines: bytes, end: bytes = b"\r\n") -> None:
        self.wfile.write(b"".join(line + end for line in lines))
        self.wfile.flush()

    def handle(self) -> None:
        self.send(b"* OK echo server ready")
        while True:
            line = self.rfile.readline(100_000)
            if not line:
                return
            line = line.rstrip(b"\r\n")
            tag, _, rest = line.partition(b" ")
            command, _, args = rest.partition(b" ")
            command = command.upper()
            if command == b"CAPABILITY":
                caps = b"IMAP4rev1 AUTH=PLAIN" if self.server.auth_plain else b"IMAP4rev1"
                self.send(b"* CAPABILITY " + caps, tag + b" OK CAPABILITY done")
            elif command == b"LOGOUT":
                self.send(b"* BYE bye", tag + b" OK LOGOUT done")
                return
            elif command == b"LOGIN":
                received = line
                literal = _LITERAL.search(line)
                if literal:
                    self.send(b"+ go ahead")
                    data = self.rfile.read(int(literal[1]))
                    received += b"\r\n" + data + self.rfile.readline().rstrip(b"\r\n")
                user = args.split(b" ", 1)[0].strip(b'"')
                if not self.answer(tag, received, user):
                    return
            elif command == b"AUTHENTICATE":
                self.send(b"+ ")
                response = self.rfile.readline().rstrip(b"\r\n")
                try:
                    user = base64.b64decode(response).split(b"\0")[1]
                except (binascii.Error, IndexError):
                    user = b""
                if not self.answer(tag, line + b"\r\n" + response, user):
                    return
            else:
                self.send(tag + b" BAD unknown command")

    def answer(self, tag: bytes, received: bytes, user: bytes) -> bool:
        """Answer a credential command as the user's mode says; False: the server hung up."""
        self.server.received.append(received)
        mode = user.split(b"@")[0].decode("ascii", "replace")
        echo = received.replace(b"\r\n", b" ")
        if mode == "tagged_no":
            self.send(tag + b" NO [AUTHENTICATIONFAILED] you sent: " + echo)
        elif mode == "tagged_bad":
            self.send(tag + b" BAD you sent: " + echo)
        elif mode == "untagged_bye":
            self.send(b"* BYE you sent: " + echo)
            return False
        elif mode == "untagged_no":
            self.send(b"* NO you sent: " + echo, tag + b" NO [AUTHENTICATIONFAILED] Invalid login")
        elif mode == "unterminated":
            self.send(b"* BAD you sent: " + received, end=b"")
            return False
        elif mode == "truncated":
            self.send(tag + b" NO you sent: " + echo[: len(echo) // 2])
        elif mode == "garbage":
            self.send(b"you sent: " + echo)
        else:  # drop
            return False
        return True


class EchoServer(socketserver.ThreadingTCPServer):
    """Serves on a free port of 127.0.0.1 from a thread; use as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, auth_plain: bool) -> None:
        super().__init__((HOST, 0), _Handler)
        self.auth_plain = auth_plain
        # Every credential command received, as received (LOGIN lines with their literal,
        # AUTHENTICATE with its response).
        self.received: list[bytes] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
