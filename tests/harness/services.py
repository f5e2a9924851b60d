"""Throwaway instances of the real services the product talks to, for tests and benchmarks.

Each service runs in its own directory under one temporary base directory, listens on a free
port on 127.0.0.1 only, and is stopped (and its files removed) by ``stop()``. Nothing here
touches a system-wide instance: a PostgreSQL or Redis already running on the machine is left
alone, whatever port it uses.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

LOCALHOST = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """A service cannot be started here (not installed, not root, …): the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOCALHOST, port)) == 0


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The unprivileged account to run a daemon as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServiceUnavailable(f"running as root but there is no '{name}' user") from None


def _chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServiceUnavailable("PostgreSQL is not installed (no initdb found)")


@dataclass
class PostgresServer:
    base: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@{LOCALHOST}:{self.port}/servicedesk"

    def start(self) -> PostgresServer:
        bindir = postgres_bindir()
        account = _service_user("postgres")
        data = self.base / "data"
        self.base.mkdir(parents=True, exist_ok=True)
        _chown_tree(self.base, account)
        run_as = {"user": account.pw_uid, "group": account.pw_gid} if account else {}
        log = self.base / "postgres.log"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip
        self.port = free_port()
        self._spawn()
        try:
            wait_until(self._accepts, 30, "PostgreSQL to accept connections")
        except TimeoutError:
            raise ServiceUnavailable(f"PostgreSQL did not start:\n{_log_tail(log)}") from None
        self.execute("CREATE DATABASE servicedesk")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceUnavailable(f"PostgreSQL exited:\n{_log_tail(self.base / 'postgres.log')}")
        try:
            self.execute("SELECT 1")
        except Exception:
            return False
        return True

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host=LOCALHOST, port=self.port, user="postgres", dbname=dbname, autocommit=True,
            connect_timeout=2,
        ) as conn:  # fmt: skip
            conn.execute(sql)  # type: ignore[arg-type]

    def _spawn(self) -> None:
        account = _service_user("postgres")
        run_as = {"user": account.pw_uid, "group": account.pw_gid} if account else {}
        with open(self.base / "postgres.log", "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(postgres_bindir() / "postgres"), "-D", str(self.base / "data"),
                    "-p", str(self.port), "-k", str(self.base),
                    "-c", f"listen_addresses={LOCALHOST}",
                    # Throwaway data: durability is not what is under test here.
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=200",
                ],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **run_as,
            )  # fmt: skip

    def restart(self) -> None:
        """Fast shutdown and start again on the same port and data (for fault tests)."""
        _terminate(self.proc, signal.SIGINT)
        self._spawn()
        wait_until(self._accepts, 30, "PostgreSQL to accept connections again")

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back clients and exit cleanly.
        _terminate(self.proc, signal.SIGINT)


# --- Redis -------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    base: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("Redis is not installed (no redis-server found)")
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = self.base / "redis.log"
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", LOCALHOST, "--dir", str(self.base),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(log),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(self.ping, 15, "Redis to answer PING")
        except TimeoutError:
            raise ServiceUnavailable(f"Redis did not start:\n{_log_tail(log)}") from None
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=LOCALHOST, port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        _terminate(self.proc)


# --- Dovecot (IMAP, IMAPS, LMTP) ---------------------------------------------------------------

DOVECOT_CONF = """\
instance_name = servicedesk-test-{port_imap}
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap lmtp
listen = {host}
disable_plaintext_auth = yes
login_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{base}/mail/%n/Maildir
auth_username_format = %Ln
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
lmtp_hdr_delivery_address = final
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Ln {base}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Ln {base}/users
  default_fields = uid={uid} gid={gid} home={base}/mail/%Ln
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port_imap}
  }}
  inet_listener imaps {{
    address = {host}
    port = {port_imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {port_lmtp}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@dataclass
class DovecotServer:
    """Dovecot with one IMAP account per name in ``users`` (password: ``password``)."""

    base: Path
    users: tuple[str, ...] = ("support", "alias")
    password: str = "test-password"
    port_imap: int = 0
    port_imaps: int = 0
    port_lmtp: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DovecotServer:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            raise ServiceUnavailable("Dovecot is not installed (no dovecot found)")
        if not os.path.exists("/usr/lib/dovecot/lmtp"):
            raise ServiceUnavailable("Dovecot's LMTP server is not installed (dovecot-lmtpd)")
        if os.geteuid() != 0:
            raise ServiceUnavailable("Dovecot's test instance needs root (it drops to 'mail')")
        account = _service_user("mail")
        assert account is not None
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "mail").mkdir(exist_ok=True)
        os.chown(self.base / "mail", account.pw_uid, account.pw_gid)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-keyout", str(self.base / "key.pem"),
                "-out", str(self.base / "cert.pem"),
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        (self.base / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{self.password}::::::\n" for user in self.users)
        )
        self.port_imap, self.port_imaps, self.port_lmtp = free_port(), free_port(), free_port()
        conf = self.base / "dovecot.conf"
        conf.write_text(
            DOVECOT_CONF.format(
                base=self.base, host=LOCALHOST, uid=account.pw_uid, gid=account.pw_gid,
                port_imap=self.port_imap, port_imaps=self.port_imaps, port_lmtp=self.port_lmtp,
            )
        )  # fmt: skip
        self._spawn()
        return self

    def _spawn(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.base / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(
                lambda: port_open(self.port_imap) and port_open(self.port_lmtp),
                15,
                "Dovecot to listen",
            )
        except TimeoutError:
            log = _log_tail(self.base / "dovecot.log")
            raise ServiceUnavailable(f"Dovecot did not start:\n{log}") from None

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def stop(self) -> None:
        """Stop the master and every process it forked (its own session): the processes
        serving open IMAP connections end too, as in a real restart — clients get EOF."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        _terminate(self.proc)

    def imap(self, user: str = "support", *, ssl: bool = False):  # type: ignore[no-untyped-def]
        """A logged-in imapclient connection (plain port, or IMAPS with the self-signed cert)."""
        import ssl as ssl_module

        from imapclient import IMAPClient

        if ssl:
            context = ssl_module.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl_module.CERT_NONE
            client = IMAPClient(LOCALHOST, port=self.port_imaps, ssl=True, ssl_context=context)
        else:
            client = IMAPClient(LOCALHOST, port=self.port_imap, ssl=False)
        client.login(user, self.password)
        return client

    def deliver_lmtp(self, message: bytes, recipient: str, sender: str = "") -> None:
        """Deliver as an MTA would: Dovecot adds Delivered-To and Received … for <recipient>."""
        import smtplib

        with smtplib.LMTP(LOCALHOST, self.port_lmtp) as lmtp:
            lmtp.sendmail(sender or "sender@example.org", [recipient], message)


# --- SMTP capture ------------------------------------------------------------------------------


@dataclass
class CapturedMail:
    envelope_from: str
    recipients: list[str]
    data: bytes
    received_at: float = 0.0  # time.time() when the server accepted the DATA

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpServer:
    """An aiosmtpd server that keeps every message it accepts, in order.

    ``stop()`` and ``start()`` again reuse the same port, so an outage can be simulated.
    ``answer(recipient, "451 4.7.1 Greylisted", at="RCPT")`` makes it refuse that recipient at
    RCPT TO, or a message for it at DATA, as a real server would, until ``clear()``.
    """

    port: int = 0
    messages: list[CapturedMail] = field(default_factory=list)
    _controller: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # (stage, lower-cased recipient) -> the reply the server gives instead of accepting
    _answers: dict[tuple[str, str], str] = field(default_factory=dict)

    def answer(self, recipient: str, reply: str, *, at: str = "RCPT") -> None:
        """Answer ``reply`` ("<code> <text>", a 4xx or 5xx) at ``at`` (RCPT or DATA) for
        ``recipient`` instead of accepting."""
        if at not in ("RCPT", "DATA"):
            raise ValueError(f"at must be RCPT or DATA, not {at!r}")
        if not reply[:3].isdigit() or reply[0] not in "45":
            raise ValueError(f"a refusal starts with a 4xx or 5xx code, not {reply!r}")
        with self._lock:
            self._answers[(at, recipient.lower())] = reply

    def _refusal(self, at: str, recipients: list[str]) -> str | None:
        with self._lock:
            for recipient in recipients:
                reply = self._answers.get((at, recipient.lower()))
                if reply is not None:
                    return reply
        return None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_RCPT(self, _server, _session, envelope, address, options):  # type: ignore[no-untyped-def]
                refusal = server._refusal("RCPT", [address])
                if refusal is not None:
                    return refusal
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(options)
                return "250 OK"

            async def handle_DATA(self, _server, _session, envelope):  # type: ignore[no-untyped-def]
                received_at = time.time()
                refusal = server._refusal("DATA", list(envelope.rcpt_tos))
                if refusal is not None:
                    return refusal
                with server._lock:
                    server.messages.append(
                        CapturedMail(
                            envelope.mail_from,
                            list(envelope.rcpt_tos),
                            envelope.original_content,
                            received_at,
                        )
                    )
                return "250 Message accepted for delivery"

        # aiosmtpd's start-up self-test fails with port 0: pick a free port first.
        self.port = self.port or free_port()
        controller = Controller(Handler(), hostname=LOCALHOST, port=self.port)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def clear(self) -> None:
        """Forget the messages received and accept every recipient again."""
        with self._lock:
            self.messages.clear()
            self._answers.clear()

    def wait_for(self, count: int, timeout: float = 15) -> list[CapturedMail]:
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} message(s) by SMTP")
        with self._lock:
            return list(self.messages)


# --- Celery worker -----------------------------------------------------------------------------


@dataclass
class CeleryWorker:
    """A real ``celery worker`` process, in its own process group (so it can be killed -9)."""

    base: Path
    env: dict[str, str]
    name: str = "test-worker"
    concurrency: int = 2
    queues: str = "celery,outbound"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.base / f"{self.name}.log"

    def start(self, timeout: float = 60) -> CeleryWorker:
        self.base.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "celery", "-A", "servicedesk", "worker",
            "--loglevel", "INFO", "--hostname", f"{self.name}@%h",
            "--concurrency", str(self.concurrency),
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        if self.queues:
            command += ["--queues", self.queues]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=str(Path(__file__).resolve().parents[2]),
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: self._ready(offset), timeout, "the Celery worker to be ready")
        except TimeoutError:
            self.kill()
            raise ServiceUnavailable(
                f"Celery worker did not start:\n{_log_tail(self.log_path, 40)}"
            ) from None
        return self

    def _ready(self, offset: int) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceUnavailable(f"Celery worker exited:\n{_log_tail(self.log_path, 40)}")
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return b" ready." in log.read()

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


# --- A customer's own SMTP server (submission: STARTTLS, then AUTH) ------------------------------


class TestCA:
    """A certificate authority for the session (trustme): servers get certificates from it, and
    the product trusts it through SERVICEDESK_CUSTOM_SMTP_CA_FILE."""

    def __init__(self, base: Path) -> None:
        import trustme

        self._ca = trustme.CA()
        self.path = base / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.path))

    def server_context(self):  # type: ignore[no-untyped-def]
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(LOCALHOST, "localhost").configure_cert(context)
        return context


@dataclass
class SubmissionServer:
    """A provider's SMTP submission server: STARTTLS required before AUTH, AUTH required before
    MAIL (PLAIN, LOGIN and CRAM-MD5), one account. What it accepts is kept in ``messages`` and
    handed to ``forward`` (the provider's forwarding rule), if set."""

    ca: TestCA
    username: str = "support@customer.test"
    password: str = "s3cret-Passw0rd"
    port: int = 0
    messages: list[CapturedMail] = field(default_factory=list)
    forward: Callable[[CapturedMail], None] | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, login)
    _controller: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SubmissionServer:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        server = self

        def authenticator(_server, _session, _envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
            login = auth_data.login.decode()
            ok = login == server.username and auth_data.password.decode() == server.password
            if ok:
                with server._lock:
                    server.logins.append((mechanism, login))
            return AuthResult(success=ok, handled=False)

        class Handler:
            # aiosmtpd offers a handler's auth_<NAME> methods, "__" standing for "-".
            async def auth_CRAM__MD5(self, smtp, _args):  # type: ignore[no-untyped-def]
                import base64
                import hashlib
                import hmac
                import secrets

                challenge = f"<{secrets.token_hex(8)}@localhost>".encode()
                answer = await smtp.challenge_auth(base64.b64encode(challenge), False)
                login, _, digest = bytes(answer or b"").decode().rpartition(" ")
                wanted = hmac.new(server.password.encode(), challenge, hashlib.md5).hexdigest()
                ok = login == server.username and hmac.compare_digest(digest, wanted)
                if ok:
                    with server._lock:
                        server.logins.append(("CRAM-MD5", login))
                return AuthResult(success=ok, handled=False)

            async def handle_DATA(self, _server, _session, envelope):  # type: ignore[no-untyped-def]
                mail = CapturedMail(
                    envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                    time.time(),
                )  # fmt: skip
                with server._lock:
                    server.messages.append(mail)
                if server.forward is not None:
                    server.forward(mail)
                return "250 Message accepted for delivery"

        self.port = self.port or free_port()
        controller = Controller(
            Handler(), hostname=LOCALHOST, port=self.port,
            tls_context=self.ca.server_context(), require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=authenticator,
        )  # fmt: skip
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None

    def wait_for(self, count: int, timeout: float = 15) -> list[CapturedMail]:
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} message(s) submitted")
        with self._lock:
            return list(self.messages)


class SilentServer:
    """Accepts TCP connections (the kernel's backlog) and never says a word: a read timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def stop(self) -> None:
        self.sock.close()
