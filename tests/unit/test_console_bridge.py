"""The console's pure parts: tickets, both sides of the RFB handshake, noVNC's files."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from reconciler.daemon import console


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_once_for_its_token_vm_and_host_within_its_lifetime() -> None:
    clock = Clock()
    tickets = console.Tickets(ttl=60, clock=clock)
    secret = tickets.issue("alice", "vm-a", "qemu:///system")
    assert len(secret) >= 43
    found = tickets.redeem(secret, "alice", "vm-a", "qemu:///system")
    assert found is not None and found.expires == 160.0
    assert tickets.redeem(secret, "alice", "vm-a", "qemu:///system") is None  # single use

    for token, vm, host in (("bob", "vm-a", "h"), ("alice", "vm-b", "h"), ("alice", "vm-a", "x")):
        secret = tickets.issue("alice", "vm-a", "h")
        assert tickets.redeem(secret, token, vm, host) is None
        assert tickets.redeem(secret, "alice", "vm-a", "h") is None  # a wrong try spends it

    secret = tickets.issue("alice", "vm-a", "h")
    clock.now += 60
    assert tickets.redeem(secret, "alice", "vm-a", "h") is None  # expired
    assert tickets.redeem("made-up", "alice", "vm-a", "h") is None


def test_outstanding_tickets_are_bounded_and_the_oldest_go_first() -> None:
    tickets = console.Tickets(clock=Clock())
    first = tickets.issue("t", "vm", "h")
    for _ in range(console.MAX_TICKETS):
        last = tickets.issue("t", "vm", "h")
    assert tickets.redeem(first, "t", "vm", "h") is None
    assert tickets.redeem(last, "t", "vm", "h") is not None


def _des(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def test_the_vnc_response_keys_des_with_the_bit_reversed_password() -> None:
    challenge = bytes(range(16))
    # "ab": 0x61 0x62 reversed bit by bit are 0x86 0x46, then NUL padding.
    assert console.vnc_response("ab", challenge) == _des(
        bytes([0x86, 0x46, 0, 0, 0, 0, 0, 0]), challenge
    )
    # Only the first 8 characters count, as every VNC server has it.
    assert console.vnc_response("12345678", challenge) == console.vnc_response(
        "123456789", challenge
    )


def test_the_browser_is_offered_no_authentication_in_3_8_3_7_and_3_3() -> None:
    greeting = console._Greeting()
    assert greeting.hello() == b"RFB 003.008\n"
    assert greeting.feed(b"RFB 003.0") == (b"", b"")
    assert greeting.feed(b"08\n") == (bytes([1, 1]), b"")
    assert greeting.feed(bytes([1, 1])) == (struct.pack("!I", 0), b"\x01")
    assert greeting.done and greeting.feed(b"next") == (b"", b"next")

    greeting = console._Greeting()  # 3.7: no SecurityResult after None; all in one piece
    assert greeting.feed(b"RFB 003.007\n\x01\x01") == (bytes([1, 1]), b"\x01")

    greeting = console._Greeting()  # 3.3: the server decides, as a 32-bit number
    assert greeting.feed(b"RFB 003.003\n") == (struct.pack("!I", 1), b"")

    with pytest.raises(console.ConsoleError, match="not offered"):
        wrong = console._Greeting()
        wrong.feed(b"RFB 003.008\n")
        wrong.feed(bytes([2]))
    with pytest.raises(console.ConsoleError, match="does not speak RFB"):
        console._Greeting().feed(b"GET / HTTP/1.1\r\n")


def _server(script: list[tuple[str, bytes]]) -> tuple[tuple[str, int], list[bytes]]:
    """A VNC server on loopback that plays ``script``: ("send", b) or ("expect", b)."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            for step, data in script:
                if step == "send":
                    conn.sendall(data)
                else:
                    got = b""
                    while len(got) < len(data):
                        got += conn.recv(len(data) - len(got))
                    received.append(got)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname(), received


def test_login_answers_the_guest_s_challenge_with_the_password() -> None:
    challenge = b"0123456789abcdef"
    response = console.vnc_response("s3cret", challenge)
    address, received = _server(
        [
            ("send", b"RFB 003.008\n"),
            ("expect", b"RFB 003.008\n"),
            ("send", bytes([2, 1, 2])),
            ("expect", bytes([2])),
            ("send", challenge),
            ("expect", response),
            ("send", struct.pack("!I", 0)),
        ]
    )
    sock = console.login(address, "s3cret")
    sock.close()
    assert received == [b"RFB 003.008\n", bytes([2]), response]


def test_login_says_why_the_guest_refused() -> None:
    reason = b"Authentication failed"
    address, _ = _server(
        [
            ("send", b"RFB 003.008\n"),
            ("expect", b"RFB 003.008\n"),
            ("send", bytes([1, 2])),
            ("expect", bytes([2])),
            ("send", b"x" * 16),
            ("expect", b"y" * 16),
            ("send", struct.pack("!I", 1) + struct.pack("!I", len(reason)) + reason),
        ]
    )
    with pytest.raises(console.ConsoleError, match="refused the password: Authentication failed"):
        console.login(address, "wrong")


def test_login_takes_none_when_the_display_has_no_password() -> None:
    address, received = _server(
        [
            ("send", b"RFB 003.008\n"),
            ("expect", b"RFB 003.008\n"),
            ("send", bytes([1, 1])),
            ("expect", bytes([1])),
            ("send", struct.pack("!I", 0)),
        ]
    )
    console.login(address, "").close()
    assert received[1] == bytes([1])


def test_only_files_inside_the_novnc_directory_are_served(tmp_path: Path) -> None:
    root = tmp_path / "novnc"
    (root / "core").mkdir(parents=True)
    (root / "core" / "rfb.js").write_text("export default 1;")
    (tmp_path / "secret").write_text("no")
    (root / "core" / "link.js").symlink_to(tmp_path / "secret")
    service = console.Service(lambda _d: None, "h", novnc=root)  # type: ignore[arg-type, return-value]
    assert service.novnc_file(["core", "rfb.js"]) == (root / "core" / "rfb.js").resolve()
    for parts in (["..", "secret"], ["core", "link.js"], ["core"], [], [".hidden"], ["core", ""]):
        assert service.novnc_file(parts) is None, parts
    assert console.content_type(Path("a.js")).startswith("text/javascript")
