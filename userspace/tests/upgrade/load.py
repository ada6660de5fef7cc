#!/usr/bin/python3
"""Load that must survive binary upgrades: HTTP/1.1 keep-alive clients,
HTTP/2 clients (TLS, ALPN h2) and WebSockets held open throughout.

Run with Debian's python3 (python3-hpack, a dependency of python3-h2). Behaves as a correct client does,
and no better: an HTTP/1.1 connection is reused until a response says
`Connection: close`; an HTTP/2 client stops opening streams after GOAWAY
and re-sends on a new connection only the streams the GOAWAY says were not
processed (RFC 9113 §6.8). Nothing else is retried: any other error, a
refused connection, a wrong status or body, a WebSocket that does not echo
is a failure.

Stops when --stop-file exists (or after --max-seconds) and prints one JSON
report on stdout.
"""

import argparse
import base64
import json
import os
import socket
import ssl
import struct
import threading
import time

import hpack

BODY = b"abcdefghijklmnopqrstuvwxyz" * 3
BODY = BODY[:64]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []
        self.ws_last_echo = {}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, kind, why):
        with self.lock:
            self.counts[kind + "_failed"] = self.counts.get(kind + "_failed", 0) + 1
            if len(self.errors) < 30:
                self.errors.append(f"{kind}: {why}")


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def h1_worker(args, stop, stats, idx):
    sock, buf = None, b""
    while not stop():
        try:
            if sock is None:
                sock = socket.create_connection((args.host, args.http), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
                stats.add("h1_connects")
            sock.sendall(
                f"GET /bytes/64?w={idx} HTTP/1.1\r\nHost: {args.domain}\r\n\r\n".encode()
            )
            head, buf = read_head(sock, buf)
            lines = head.split("\r\n")
            status = int(lines[0].split()[1])
            fields = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                fields[k.strip().lower()] = v.strip()
            n = int(fields.get("content-length", "-1"))
            while len(buf) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed inside a body")
                buf += chunk
            body, buf = buf[:n], buf[n:]
            if status != 200 or body != BODY:
                stats.fail("h1", f"status {status}, body {body[:40]!r}")
            else:
                stats.add("h1_ok")
            if fields.get("connection", "").lower() == "close":
                stats.add("h1_told_to_close")
                sock.close()
                sock = None
        except Exception as e:  # noqa: BLE001 - every failure counts
            stats.fail("h1", repr(e))
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.01)
    if sock is not None:
        sock.close()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BIG_WINDOW = (1 << 31) - 1 - 65535


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_connect(args):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((args.host, args.https), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=args.domain)
    if sock.selected_alpn_protocol() != "h2":
        raise ConnectionError("ALPN did not select h2")
    # Windows so large that 64-byte answers never need a WINDOW_UPDATE.
    sock.sendall(
        PREFACE
        + frame(4, 0, 0, struct.pack("!HI", 4, (1 << 31) - 1))
        + frame(8, 0, 0, struct.pack("!I", BIG_WINDOW))
    )
    return sock


def h2_worker(args, stop, stats, idx):
    """A small HTTP/2 client over raw frames (python-h2 treats the first
    GOAWAY as the end of the connection, which a graceful shutdown is not):
    keeps `args.streams` requests in flight; after GOAWAY opens no stream,
    finishes those at or below its last-stream-id and re-sends the others
    (and REFUSED_STREAM ones) on a new connection."""
    pending = 0  # requests carried over to the next connection
    while not stop() or pending:
        try:
            sock = h2_connect(args)
            stats.add("h2_connects")
        except Exception as e:  # noqa: BLE001
            stats.fail("h2", f"connect: {e!r}")
            time.sleep(0.05)
            continue
        enc, dec = hpack.Encoder(), hpack.Decoder()
        next_sid, streams, goaway_last, buf = 1, {}, None, b""

        def unprocessed(sid):
            nonlocal pending
            del streams[sid]
            pending += 1
            stats.add("h2_resent")

        try:
            while True:
                out = b""
                while goaway_last is None and len(streams) < args.streams and (pending or not stop()):
                    block = enc.encode(
                        [
                            (":method", "GET"),
                            (":scheme", "https"),
                            (":authority", args.domain),
                            (":path", f"/bytes/64?h2={idx}"),
                        ]
                    )
                    out += frame(1, 0x5, next_sid, block)
                    streams[next_sid] = {"status": None, "body": b""}
                    next_sid += 2
                    if pending:
                        pending -= 1
                if out:
                    sock.sendall(out)
                if not streams:
                    break
                data = sock.recv(65536)
                if not data:
                    if goaway_last is not None:
                        for sid in [s for s in streams if s > goaway_last]:
                            unprocessed(sid)
                    if streams:
                        raise ConnectionError(f"closed with {len(streams)} stream(s) open")
                    break
                buf += data
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + n:
                        break
                    ftype, flags = buf[3], buf[4]
                    sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload, buf = buf[9 : 9 + n], buf[9 + n :]
                    if ftype in (0, 1) and flags & 0x8:  # padded
                        payload = payload[1 : len(payload) - payload[0]]
                    if ftype == 4 and not flags & 1:
                        sock.sendall(frame(4, 1, 0))
                    elif ftype == 6 and not flags & 1:
                        sock.sendall(frame(6, 1, 0, payload))
                    elif ftype == 1:
                        if flags & 0x20:  # priority
                            payload = payload[5:]
                        if not flags & 0x4:
                            raise ConnectionError("a response head split in CONTINUATION")
                        fields = dict(dec.decode(payload))
                        st = streams.get(sid)
                        if st is not None and st["status"] is None:
                            st["status"] = fields.get(":status")
                    elif ftype == 0:
                        st = streams.get(sid)
                        if st is not None:
                            st["body"] += payload
                    elif ftype == 3:
                        code = struct.unpack("!I", payload)[0]
                        if sid in streams:
                            if code == 7 or (goaway_last is not None and sid > goaway_last):
                                unprocessed(sid)  # REFUSED_STREAM: not processed
                            else:
                                del streams[sid]
                                stats.fail("h2", f"stream {sid} reset ({code})")
                    elif ftype == 7:
                        last, code = struct.unpack("!II", payload[:8])
                        goaway_last = last & 0x7FFFFFFF
                        stats.add("h2_goaways")
                        if code != 0:
                            stats.fail("h2", f"GOAWAY with error {code}")
                        for s in [s for s in streams if s > goaway_last]:
                            unprocessed(s)
                    if ftype in (0, 1) and flags & 0x1 and sid in streams:
                        st = streams.pop(sid)
                        if st["status"] == "200" and st["body"] == BODY:
                            stats.add("h2_ok")
                        else:
                            stats.fail("h2", f"status {st['status']}, body {st['body'][:40]!r}")
                if goaway_last is not None and not streams:
                    break
        except Exception as e:  # noqa: BLE001
            stats.fail("h2", repr(e))
            pending = 0
        try:
            sock.close()
        except Exception:  # noqa: BLE001
            pass


def ws_frame(payload, opcode=1):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(sock, buf):
    while len(buf) < 2:
        c = sock.recv(4096)
        if not c:
            raise ConnectionError("WebSocket closed")
        buf += c
    n = buf[1] & 0x7F
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += sock.recv(4096)
        n = struct.unpack("!H", buf[2:4])[0]
        off = 4
    while len(buf) < off + n:
        c = sock.recv(4096)
        if not c:
            raise ConnectionError("WebSocket closed inside a frame")
        buf += c
    return buf[0] & 0x0F, buf[off : off + n], buf[off + n :]


def ws_worker(args, stop, stats, idx):
    """One WebSocket for the whole run: any failure is final."""
    try:
        sock = socket.create_connection((args.host, args.http), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {args.domain}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head, buf = read_head(sock, b"")
        if not head.startswith("HTTP/1.1 101"):
            raise ConnectionError(f"no upgrade: {head.splitlines()[0]}")
        stats.add("ws_opened")
        n = 0
        while not stop():
            msg = f"ws{idx}-{n}".encode()
            sock.sendall(ws_frame(msg))
            op, payload, buf = ws_read(sock, buf)
            if op != 1 or payload != msg:
                raise ConnectionError(f"echo {payload!r} for {msg!r}")
            stats.add("ws_echoes")
            with stats.lock:
                stats.ws_last_echo[idx] = time.time()
            n += 1
            time.sleep(args.ws_interval)
        sock.sendall(ws_frame(b"\x03\xe8", opcode=8))
        sock.close()
    except Exception as e:  # noqa: BLE001
        stats.fail("ws", repr(e))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--http", type=int, required=True)
    p.add_argument("--https", type=int, required=True)
    p.add_argument("--domain", default="upgrade.test")
    p.add_argument("--h1", type=int, default=4)
    p.add_argument("--h2", type=int, default=2)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--ws", type=int, default=3)
    p.add_argument("--ws-interval", type=float, default=0.1)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--max-seconds", type=float, default=300)
    args = p.parse_args()

    stats = Stats()
    deadline = time.time() + args.max_seconds
    stop = lambda: os.path.exists(args.stop_file) or time.time() > deadline  # noqa: E731
    threads = []
    for i in range(args.ws):
        threads.append(threading.Thread(target=ws_worker, args=(args, stop, stats, i)))
    for i in range(args.h1):
        threads.append(threading.Thread(target=h1_worker, args=(args, stop, stats, i)))
    for i in range(args.h2):
        threads.append(threading.Thread(target=h2_worker, args=(args, stop, stats, i)))
    for t in threads:
        t.start()
    # Ready once every WebSocket is open and each kind got an answer.
    while not stop():
        c = stats.counts
        if (
            c.get("ws_opened", 0) + c.get("ws_failed", 0) >= args.ws
            and (args.h1 == 0 or c.get("h1_ok", 0) + c.get("h1_failed", 0) > 0)
            and (args.h2 == 0 or c.get("h2_ok", 0) + c.get("h2_failed", 0) > 0)
        ):
            break
        time.sleep(0.02)
    open(args.ready_file, "w").close()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "counts": stats.counts,
                "errors": stats.errors,
                "ws_last_echo": {str(k): v for k, v in stats.ws_last_echo.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
