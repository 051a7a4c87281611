"""Real IMAP servers for the demo, the tests and the benchmark. Demo code, apart from the
product: nothing in `jobs`, `accounts` or `core` imports it.

`MailServer` runs pymap's in-memory ("dict") backend on its own asyncio loop in a background
thread: a real IMAP server on a real TCP port, whose users, folders and messages can be changed
while it runs (`add_user`, `append`, `create_folder`, `delete_folder`, `disconnect_all`).
`SilentServer` accepts TCP connections and never says a word (what a wedged provider looks like).

    servers = start_demo_mail_servers()      # the demo: mail server, silent socket, demo mail
    servers.account_specs()                  # four accounts: healthy, wrong password, ...
    servers.stop()

`python -m demo.mailservers --port 1143 --messages 10000` serves a generated mailbox from a separate
process (the benchmark uses it so the server does not share the client's interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from argparse import Namespace
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from pymap.backend.dict import Config, DictBackend, Login
from pymap.backend.dict.filter import FilterSet
from pymap.backend.dict.mailbox import MailboxSet
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials.flag import Flag
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

T = TypeVar("T")

HOST = "127.0.0.1"
DEMO_USER = "demo@example.test"
DEMO_PASSWORD = "demo-mailbox-password"
WRONG_PASSWORD = "not-the-password"


class _Config(Config):
    @property
    def greeting(self) -> bytes:
        # pymap's default greeting calls socket.getfqdn(), a DNS lookup on every connection.
        return b"Server ready jobs-console demo"


class MailServer:
    """pymap (in-memory backend) on `host:port` (port 0: a free one), served from a thread."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._config: _Config | None = None
        self._login: Login | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> MailServer:
        # pymap's DEBUG wire log prints every command, LOGIN and its password included. This
        # server shares the process (and the logging config) of the demo and the tests: keep it
        # from ever writing a mailbox password into their logs.
        logging.getLogger("pymap.imap").setLevel(logging.INFO)
        self._thread.start()
        self.port = self._call(self._start())
        return self

    async def _start(self) -> int:
        args = Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
        self._config = _Config(
            args,
            host=self.host,
            port=self._requested_port,
            # Plain-text LOGIN without STARTTLS, as on a local test port.
            tls_enabled=False,
            demo_data=False,
            demo_user="",
            demo_password="",
            invalid_user_sleep=0.0,
            reject_dnsbl=False,
            # pysasl's default is 500,000 PBKDF2 rounds, a quarter second per LOGIN: right for
            # a real server, pure waste for a local demo and test server.
            hash_context=BuiltinHash(rounds=1000),
        )
        self._config.apply_context()
        self._login = Login(self._config)
        backend = DictBackend(self._login, self._config)
        imap = IMAPServer(backend.login, self._config)

        async def tracked(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo
        ) -> None:
            # Remember each connection so disconnect_all can cut it.
            self._writers.add(writer)
            try:
                await imap(reader, writer, sock_info)
            finally:
                self._writers.discard(writer)

        callback = ProxyProtocolReader(self._config.proxy_protocol).get_callback(tracked)
        self._server = await asyncio.start_server(callback, self.host, self._requested_port)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listening socket and every connection, then end the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._disconnect_all()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- data ---------------------------------------------------------------------------------

    def add_user(self, user: str, password: str) -> None:
        """Create (or replace) a login with an empty INBOX."""
        self._call(self._add_user(user, password))

    async def _add_user(self, user: str, password: str) -> None:
        assert self._config is not None and self._login is not None
        hashed = await Passwords(self._config).hash_password(password)
        self._login.users_dict[user] = UserMetadata(self._config, user, password=hashed)
        self._config.set_cache[user] = (MailboxSet(), FilterSet())

    def append(
        self,
        user: str,
        message: bytes,
        *,
        folder: str = "INBOX",
        flags: tuple[str, ...] = (),
        when: datetime | None = None,
    ) -> int:
        """Deliver a message; returns its UID."""
        return self.append_many(user, [message], folder=folder, flags=flags, when=when)[0]

    def append_many(
        self,
        user: str,
        messages: list[bytes],
        *,
        folder: str = "INBOX",
        flags: tuple[str, ...] = (),
        when: datetime | None = None,
    ) -> list[int]:
        return self._call(self._append(user, folder, messages, flags, when), timeout=600)

    async def _append(
        self,
        user: str,
        folder: str,
        messages: list[bytes],
        flags: tuple[str, ...],
        when: datetime | None,
    ) -> list[int]:
        mailbox = await self._mailbox_set(user).get_mailbox(folder)
        flag_set = frozenset(Flag(f.encode()) for f in flags)
        uids = []
        for literal in messages:
            msg = await mailbox.append(AppendMessage(literal, when or datetime.now(UTC), flag_set))
            uids.append(msg.uid)
        return uids

    def create_folder(self, user: str, folder: str) -> None:
        self._call(self._mailbox_set(user).add_mailbox(folder))

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete a folder and its messages; created again it gets a new UIDVALIDITY."""
        self._call(self._mailbox_set(user).delete_mailbox(folder))

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        async def get() -> int:
            return (await self._mailbox_set(user).get_mailbox(folder)).uid_validity

        return self._call(get())

    def disconnect_all(self) -> None:
        """Drop every client connection at once, as a crashing or restarting server would."""
        self._call(self._disconnect_all())

    async def _disconnect_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    def _mailbox_set(self, user: str) -> MailboxSet:
        assert self._config is not None
        return self._config.set_cache[user][0]

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


class SilentServer:
    """Accepts TCP connections and never answers: connect succeeds, every read times out."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self._sock = socket.create_server((host, port))
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> SilentServer:
        self._sock.settimeout(0.2)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # kept open, never read, never written

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        for conn in [*self._held, self._sock]:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port(host: str = HOST) -> int:
    """A port nothing listens on (bound, then released; the kernel does not hand it out again
    soon)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- messages -----------------------------------------------------------------------------------


def make_message(
    n: int,
    *,
    subject: str | None = None,
    sender: str = "Alice Example <alice@example.test>",
    to: str = "Demo User <demo@example.test>",
    date: datetime | None = None,
    body: str = "",
) -> bytes:
    """A small RFC 5322 message with a unique Message-ID."""
    date = date or datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    lines = [
        f"Message-ID: <demo-{n}@example.test>",
        f"Date: {format_datetime(date)}",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject if subject is not None else f'Demo message {n}'}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body or f"Body of demo message {n}.",
        "",
    ]
    return "\r\n".join(lines).encode()


# Envelopes a sync must store without crashing: encoded words, no Date, raw 8-bit bytes.
ODD_MESSAGES: list[bytes] = [
    b"Message-ID: <odd-1@example.test>\r\n"
    b"Date: Tue, 04 Mar 2025 10:00:00 +0100\r\n"
    b"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jurgen@example.test>\r\n"
    b"To: =?ISO-8859-1?Q?Fran=E7ois?= <francois@example.test>, bob@example.test\r\n"
    b"Subject: =?UTF-8?Q?Caf=C3=A9_au_lait?= =?UTF-8?B?IOKYlQ==?=\r\n"
    b"\r\nencoded words\r\n",
    b"Message-ID: <odd-2@example.test>\r\n"
    b"From: nodate@example.test\r\n"
    b"To: demo@example.test\r\n"
    b"Subject: No date header at all\r\n"
    b"\r\nno date\r\n",
    b"Message-ID: <odd-3@example.test>\r\n"
    b"Date: Wed, 05 Mar 2025 11:00:00 +0000\r\n"
    b"From: Ren\xe9 Latin1 <rene@example.test>\r\n"
    b"To: demo@example.test\r\n"
    b"Subject: Caf\xe9 in raw latin-1 \xff\xfe bytes\r\n"
    b"\r\nraw 8-bit header bytes\r\n",
    b"Message-ID: <odd-4@example.test>\r\n"
    b"Date: not a date at all\r\n"
    b"From: =?UTF-8?Q?broken_encoded_word?=\r\n"
    b"To: \r\n"
    b"Subject: =?unknown-charset?Q?mystery?=\r\n"
    b"\r\nunparseable date, unknown charset\r\n",
    b"Message-ID: <odd-5@example.test>\r\n"
    b"Date: Thu, 06 Mar 2025 12:00:00 -0000\r\n"
    b'From: "Doe, Jane" <jane@example.test>\r\n'
    b"To: undisclosed-recipients:;\r\n"
    b"Subject: =?UTF-8?Q?folded_?=\r\n =?UTF-8?Q?across_lines?= and a \x00 NUL\r\n"
    b"\r\nfolded subject, NUL byte, group address\r\n",
]


# --- the demo -----------------------------------------------------------------------------------


@dataclass
class DemoMailServers:
    """What `start_demo_mail_servers` started. Ports are on `host` (127.0.0.1)."""

    mail: MailServer
    silent: SilentServer
    closed_port: int
    host: str = HOST
    user: str = DEMO_USER
    password: str = DEMO_PASSWORD
    _stop_delivery: threading.Event = field(default_factory=threading.Event)
    _delivery: threading.Thread | None = None

    @property
    def imap_port(self) -> int:
        return self.mail.port

    @property
    def silent_port(self) -> int:
        return self.silent.port

    def account_specs(self) -> list[dict[str, Any]]:
        """Keyword arguments for accounts.services.account_create, one per demo scenario."""

        def spec(name: str, port: int, password: str) -> dict[str, Any]:
            return {
                "name": name,
                "email": self.user,
                "imap": {
                    "host": self.host,
                    "port": port,
                    "security": "none",
                    "username": self.user,
                    "password": password,
                    "folders": ["INBOX", "Archive"],
                },
            }

        return [
            spec("Demo mailbox (healthy)", self.imap_port, self.password),
            spec("Demo mailbox (wrong password)", self.imap_port, WRONG_PASSWORD),
            spec("Demo mailbox (closed port)", self.closed_port, self.password),
            spec("Demo mailbox (silent server)", self.silent_port, self.password),
        ]

    def deliver_every(self, seconds: float) -> None:
        """Deliver a new message to the demo INBOX every `seconds`, so syncs find new mail."""

        def loop() -> None:
            n = 1000
            while not self._stop_delivery.wait(seconds):
                n += 1
                self.mail.append(self.user, make_message(n, subject=f"New mail #{n}"))

        self._delivery = threading.Thread(target=loop, daemon=True)
        self._delivery.start()

    def stop(self) -> None:
        self._stop_delivery.set()
        if self._delivery is not None:
            self._delivery.join(timeout=5)
        self.mail.stop()
        self.silent.stop()


def start_demo_mail_servers(
    *, imap_port: int = 0, silent_port: int = 0, messages: int = 40
) -> DemoMailServers:
    """Start pymap with demo mail (INBOX and Archive, a few oddly encoded envelopes) and the
    silent socket. Port 0 picks a free port."""
    mail = MailServer(HOST, imap_port).start()
    try:
        silent = SilentServer(HOST, silent_port).start()
    except BaseException:
        mail.stop()
        raise
    mail.add_user(DEMO_USER, DEMO_PASSWORD)
    mail.create_folder(DEMO_USER, "Archive")
    mail.append_many(DEMO_USER, [make_message(n) for n in range(1, messages + 1)])
    mail.append_many(DEMO_USER, ODD_MESSAGES, flags=("\\Seen",))
    mail.append_many(
        DEMO_USER,
        [make_message(n, subject=f"Archived {n}") for n in range(500, 510)],
        folder="Archive",
        flags=("\\Seen",),
    )
    return DemoMailServers(mail=mail, silent=silent, closed_port=closed_port())


def main(argv: list[str] | None = None) -> int:
    """Serve one generated mailbox until interrupted (used by the benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default=DEMO_USER)
    parser.add_argument("--password", default=DEMO_PASSWORD)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args(argv)
    server = MailServer(HOST, args.port).start()
    server.add_user(args.user, args.password)
    server.append_many(args.user, [make_message(n) for n in range(1, args.messages + 1)])
    print(f"READY {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
