"""The smoke checks' WebSocket client: RFC 6455 framing and handshake (client side) and
WebSocketClient, over a TLS socket that the transport opens.

Part of the package module_utils/parking/smoke (see its __init__). Plain Python.
"""
import base64
import hashlib
import json
import os
import socket
import time

from .options import USER_AGENT
from .results import CheckFailed, _short


class WebSocketError(CheckFailed):
    """The websocket peer broke RFC 6455 or closed the connection."""


# --------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455), client side
# --------------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_MAX_FRAME = 16 * 1024 * 1024


def ws_key(random_bytes=os.urandom):
    """Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(random_bytes(16)).decode("ascii")


def ws_accept(key):
    """Sec-WebSocket-Accept the server must answer for ``key``."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def apply_mask(data, mask_key):
    """XOR with the repeated 4-byte key (on one big integer: fast for any size)."""
    if not data:
        return b""
    n = len(data)
    key = (bytes(mask_key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", mask_key=None, fin=True):
    """One frame. A client must mask: pass ``mask_key`` (4 bytes) or get a random one."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    mask_key = os.urandom(4) if mask_key is None else bytes(mask_key)
    if len(mask_key) != 4:
        raise ValueError("mask_key must be 4 bytes")
    head = bytearray([(0x80 if fin else 0) | (opcode & 0x0F)])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    return bytes(head) + mask_key + apply_mask(payload, mask_key)


def decode_frame(buf, max_size=WS_MAX_FRAME):
    """Parse one server frame at the start of ``buf``: ``((fin, opcode, payload), consumed)`` or
    None when more bytes are needed. Server frames must not be masked (RFC 6455 5.1)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise WebSocketError("websocket protocol error: reserved bits set")
    fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketError(f"websocket protocol error: unknown opcode {opcode}")
    if b1 & 0x80:
        raise WebSocketError("websocket protocol error: the server sent a masked frame")
    if opcode >= OP_CLOSE and (not fin or n > 125):
        raise WebSocketError("websocket protocol error: bad control frame")
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = int.from_bytes(buf[2:10], "big"), 10
    if n > max_size:
        raise WebSocketError(f"websocket frame of {n} bytes is too large")
    if len(buf) < pos + n:
        return None
    return (fin, opcode, bytes(buf[pos:pos + n])), pos + n


def handshake_request(vhost, path, key):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, vhost, USER_AGENT, key)).encode("ascii")


def parse_handshake_response(raw, key):
    """Check the server's answer to the upgrade (bytes up to the blank line); raises CheckFailed."""
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise WebSocketError(f"not an HTTP answer to the websocket upgrade: {_short(lines[0], 80)!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    status = int(parts[1]) if parts[1].isdigit() else 0
    if status != 101:
        raise WebSocketError(f"websocket upgrade refused: HTTP {status} {parts[2] if len(parts) > 2 else ''}".rstrip())
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError("websocket upgrade answered 101 without 'Upgrade: websocket'")
    if headers.get("sec-websocket-accept") != ws_accept(key):
        raise WebSocketError("websocket upgrade answered a wrong Sec-WebSocket-Accept")
    return headers


class WebSocketClient:
    """A minimal RFC 6455 client over a connected TLS socket (text frames, ping/pong, close)."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.buf = bytearray(pending)
        self.received = 0
        self.closed = False

    @classmethod
    def connect(cls, transport, host, path, timeout):
        sock = transport.open_tls(host, timeout)
        key = ws_key()
        try:
            sock.sendall(handshake_request(transport.vhost(host), path, key))
            raw = bytearray()
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in raw:
                if len(raw) > 65536:
                    raise WebSocketError("websocket upgrade answer has no end of headers")
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(65536)
                if not chunk:
                    raise WebSocketError("connection closed during the websocket upgrade")
                raw += chunk
            head, rest = bytes(raw).split(b"\r\n\r\n", 1)
            parse_handshake_response(head, key)
        except (socket.timeout, TimeoutError):
            sock.close()
            raise WebSocketError(f"no answer to the websocket upgrade within {timeout:g}s") from None
        except OSError as exc:
            sock.close()
            raise WebSocketError(f"websocket upgrade failed: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    def send(self, opcode, payload=b""):
        try:
            self.sock.sendall(encode_frame(opcode, payload))
        except OSError as exc:
            self.closed = True
            raise WebSocketError(f"the websocket connection broke: {exc}") from None

    def send_json(self, message):
        self.send(OP_TEXT, json.dumps(message))

    def _next_frame(self, deadline):
        while True:
            parsed = decode_frame(self.buf)
            if parsed is not None:
                frame, used = parsed
                del self.buf[:used]
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as exc:
                self.closed = True
                raise WebSocketError(f"the websocket connection broke: {exc}") from None
            if not chunk:
                self.closed = True
                raise WebSocketError("the server closed the websocket connection without a close frame")
            self.buf += chunk

    def recv_text(self, deadline):
        """Next complete text message, or None at the deadline. Answers pings; raises on close."""
        parts = []
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                self.closed = True
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                raise WebSocketError(f"the server closed the websocket: {code} {reason}".rstrip())
            parts.append(payload)
            if fin:
                self.received += 1
                if opcode == OP_BINARY:
                    parts = []
                    continue
                return b"".join(parts).decode("utf-8", "replace")

    def wait_for(self, predicate, deadline, seen=None):
        """First JSON message for which ``predicate`` holds, or None at the deadline; the
        others are appended to ``seen``."""
        while True:
            text = self.recv_text(deadline)
            if text is None:
                return None
            try:
                message = json.loads(text)
            except ValueError:
                message = {"type": "non-json", "text": text[:100]}
            if isinstance(message, dict) and predicate(message):
                return message
            if seen is not None:
                seen.append(message)

    def close(self):
        try:
            if not self.closed:
                self.send(OP_CLOSE, (1000).to_bytes(2, "big"))
        except WebSocketError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
