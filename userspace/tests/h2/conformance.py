#!/usr/bin/python3
"""HTTP/2 server conformance (RFC 9113 §3-§8, RFC 7541) against a running
portier: raw frames over TLS with ALPN h2, HPACK from Debian's python3-hpack.

Every case runs on a fresh connection, is named `<section>/<n>` after the RFC
9113 section it checks (`hpack/<section>/<n>` for RFC 7541, `generic/...` for
plain protocol use, as h2spec groups them) and asserts one specific reaction
of the server: a GOAWAY or RST_STREAM with a given code, a PING answered (the
connection survived), a response, a window respected. A case that sees
anything else, or nothing within its wait, fails.

Requests the server must refuse use paths under /malformed/; the Rust test
checks the backend never received one.

usage: conformance.py PORT AUTHORITY [CASE-PREFIX...]
Prints one JSON object per line: {"id", "title", "ok", "detail"}.
"""
import json
import os
import socket
import ssl
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x8, 0x9
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)
WAIT = 3.0

CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
         5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
         10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM"}
NAMES = {DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS",
         PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY", WINDOW_UPDATE: "WINDOW_UPDATE",
         CONTINUATION: "CONTINUATION"}


class Fail(Exception):
    pass


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def settings(*params):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in params))


def u32(v):
    return struct.pack(">I", v)


def describe(f):
    ftype, flags, stream, payload = f
    if ftype == "closed":
        return "connection closed"
    name = NAMES.get(ftype, f"type {ftype}")
    if ftype == GOAWAY:
        return f"GOAWAY({CODES.get(int.from_bytes(payload[4:8], 'big'))}, {payload[8:]!r})"
    if ftype == RST_STREAM:
        return f"RST_STREAM({stream}, {CODES.get(int.from_bytes(payload[:4], 'big'))})"
    return f"{name}(stream {stream}, flags {flags:#x}, {len(payload)} octets)"


class Conn:
    def __init__(self, port, authority, client_settings=(), handshake=True):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = ctx.wrap_socket(raw, server_hostname=authority)
        if self.s.selected_alpn_protocol() != "h2":
            raise Fail(f"ALPN chose {self.s.selected_alpn_protocol()}")
        self.authority = authority
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.seen = []
        self.closed = False
        self.hblock = None
        self.server_settings = None
        if handshake:
            self.send(PREFACE + settings(*client_settings))
            self.wait_for(lambda f: f[0] == SETTINGS and not f[1] & ACK, "server SETTINGS")
            self.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            self.closed = True

    # --- reading ---------------------------------------------------------

    def next_frame(self, deadline):
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    ftype, flags = self.buf[3], self.buf[4]
                    stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    payload = self.buf[9:9 + length]
                    self.buf = self.buf[9 + length:]
                    f = (ftype, flags, stream, payload)
                    self.on_frame(f)
                    return f
            if self.closed:
                return None
            left = deadline - time.time()
            if left <= 0:
                return None
            self.s.settimeout(min(left, 0.5))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                self.seen.append(("closed", 0, 0, b""))
                return ("closed", 0, 0, b"")
            self.buf += chunk

    def on_frame(self, f):
        ftype, flags, stream, payload = f
        self.seen.append(f)
        if ftype == SETTINGS and not flags & ACK:
            self.server_settings = {k: v for k, v in struct.iter_unpack(">HI", payload)}
            self.send(frame(SETTINGS, ACK, 0))
        if ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                body = payload
                if flags & PADDED:
                    body = body[1:len(body) - body[0]]
                if flags & PRIORITY_FLAG:
                    body = body[5:]
                self.hblock = (stream, body, flags & END_STREAM)
            else:
                self.hblock = (self.hblock[0], self.hblock[1] + payload, self.hblock[2])
            if flags & END_HEADERS:
                sid, block, end = self.hblock
                self.hblock = None
                fields = {}
                for k, v in self.dec.decode(block):
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    fields[k] = v
                self.seen.append(("fields", end, sid, fields))

    def wait_for(self, pred, what, seconds=WAIT, start=None):
        """The first frame from now on (from `start` if given) matching `pred`."""
        deadline = time.time() + seconds
        start = len(self.seen) if start is None else start
        for g in self.seen[start:]:
            if g[0] != "closed" and pred(g):
                return g
        start = len(self.seen)
        while True:
            f = self.next_frame(deadline)
            for g in self.seen[start:]:
                if g[0] != "closed" and pred(g):
                    return g
            start = len(self.seen)
            if f is None or f[0] == "closed":
                got = ", ".join(describe(g) for g in self.seen[-6:] if g[0] != "fields") or "nothing"
                raise Fail(f"expected {what}; got {got}")

    # --- expectations ----------------------------------------------------

    def expect_goaway(self, code):
        """A connection error: GOAWAY with `code`, then the connection closes."""
        g = self.wait_for(lambda f: f[0] == GOAWAY or f[0] == RST_STREAM, f"GOAWAY({CODES[code]})")
        if g[0] != GOAWAY:
            raise Fail(f"expected GOAWAY({CODES[code]}); got {describe(g)}")
        got = int.from_bytes(g[3][4:8], "big")
        if got != code:
            raise Fail(f"expected GOAWAY({CODES[code]}); got {describe(g)}")
        deadline = time.time() + WAIT
        while not self.closed and self.next_frame(deadline) is not None:
            pass
        if not self.closed:
            raise Fail("GOAWAY sent but the connection stayed open")

    def expect_rst(self, stream, code):
        """A stream error: RST_STREAM(code) on `stream`; the connection lives on."""
        g = self.wait_for(lambda f: f[0] in (GOAWAY, RST_STREAM) and (f[0] == GOAWAY or f[2] == stream),
                          f"RST_STREAM({stream}, {CODES[code]})")
        if g[0] != RST_STREAM or int.from_bytes(g[3][:4], "big") != code:
            raise Fail(f"expected RST_STREAM({stream}, {CODES[code]}); got {describe(g)}")
        self.expect_alive()

    def expect_alive(self):
        """The connection still works: a PING is answered with its payload."""
        data = os.urandom(8)
        self.send(frame(PING, 0, 0, data))
        g = self.wait_for(lambda f: f[0] in (GOAWAY,) or (f[0] == PING and f[1] & ACK and f[3] == data),
                          "PING ACK")
        if g[0] == GOAWAY:
            raise Fail(f"expected the connection to survive; got {describe(g)}")

    def expect_response(self, stream, status="200"):
        g = self.wait_for(lambda f: (f[0] == "fields" and f[2] == stream) or f[0] == GOAWAY
                          or (f[0] == RST_STREAM and f[2] == stream), f"a {status} response on stream {stream}",
                          start=0)
        if g[0] != "fields":
            raise Fail(f"expected a {status} response on stream {stream}; got {describe(g)}")
        if g[3].get(":status") != status:
            raise Fail(f"expected :status {status} on stream {stream}; got {g[3]}")
        return g[3]

    def read_body(self, stream, seconds=WAIT):
        """DATA of `stream` until END_STREAM; returns the frame sizes."""
        sizes = []
        deadline = time.time() + seconds
        while True:
            f = self.next_frame(deadline)
            if f is None or f[0] == "closed":
                raise Fail(f"stream {stream} did not end; DATA sizes so far {sizes}")
            if f[0] == DATA and f[2] == stream:
                sizes.append(len(f[3]))
                if f[1] & END_STREAM:
                    return sizes
            if f[0] == "fields" and f[2] == stream and f[1]:
                return sizes
            if f[0] in (GOAWAY,) or (f[0] == RST_STREAM and f[2] == stream):
                raise Fail(f"stream {stream} ended by {describe(f)}")

    def expect_no_data(self, stream, seconds=1.0):
        deadline = time.time() + seconds
        while True:
            f = self.next_frame(deadline)
            if f is None:
                return
            if f[0] == DATA and f[2] == stream:
                raise Fail(f"DATA sent beyond the window: {describe(f)}")
            if f[0] == "closed" or f[0] == GOAWAY:
                raise Fail(describe(f))

    # --- requests --------------------------------------------------------

    def fields(self, path="/", method="GET", extra=(), pseudo=None):
        base = pseudo if pseudo is not None else [(":method", method), (":scheme", "https"),
                                                   (":authority", self.authority), (":path", path)]
        return list(base) + list(extra)

    def block(self, path="/", method="GET", extra=(), pseudo=None, huffman=True):
        return self.enc.encode(self.fields(path, method, extra, pseudo), huffman=huffman)

    def headers(self, stream, path="/", end_stream=True, end_headers=True, method="GET", extra=(), pseudo=None,
                block=None):
        flags = (END_HEADERS if end_headers else 0) | (END_STREAM if end_stream else 0)
        b = block if block is not None else self.block(path, method, extra, pseudo)
        return frame(HEADERS, flags, stream, b)

    def get(self, stream, path="/"):
        self.send(self.headers(stream, path))


def raw_literal(fields):
    """Literal header fields without indexing, raw strings (no table change)."""
    out = b""
    for n, v in fields:
        n, v = n.encode(), v.encode()
        out += b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v
    return out


def hpack_int(value, prefix, high=0):
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([high | value])
    out = [high | mask]
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def pseudo(c, path, method="GET"):
    return [(":method", method), (":scheme", "https"), (":authority", c.authority), (":path", path)]


CASES = []


def case(cid, title):
    def register(fn):
        CASES.append((cid, title, fn))
        return fn
    return register


# ---------------------------------------------------------------- §3 start

@case("3.4/1", "client preface + SETTINGS: the server's first frame is SETTINGS")
def _(c):
    c2 = Conn(c.port, c.authority, handshake=False)
    c2.send(PREFACE + settings())
    f = c2.next_frame(time.time() + WAIT)
    if f is None or f[0] != SETTINGS or f[1] & ACK:
        raise Fail(f"first frame {describe(f) if f else 'none'}")


@case("3.4/2", "invalid connection preface: PROTOCOL_ERROR")
def _(c):
    c2 = Conn(c.port, c.authority, handshake=False)
    c2.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
    c2.expect_goaway(PROTOCOL_ERROR)


@case("3.4/3", "first frame after the preface is not SETTINGS: PROTOCOL_ERROR")
def _(c):
    c2 = Conn(c.port, c.authority, handshake=False)
    c2.send(PREFACE + frame(PING, 0, 0, b"12345678"))
    c2.expect_goaway(PROTOCOL_ERROR)


@case("3.4/4", "first frame is a SETTINGS ACK: PROTOCOL_ERROR")
def _(c):
    c2 = Conn(c.port, c.authority, handshake=False)
    c2.send(PREFACE + frame(SETTINGS, ACK, 0))
    c2.expect_goaway(PROTOCOL_ERROR)


@case("3.4/5", "the server's SETTINGS: no push, advertised limits")
def _(c):
    s = c.server_settings or {}
    if s.get(ENABLE_PUSH) != 0 or s.get(MAX_CONCURRENT_STREAMS) is None or s.get(MAX_HEADER_LIST_SIZE) is None:
        raise Fail(f"server SETTINGS {s}")


# ---------------------------------------------------------------- §4 frames

@case("4.1/1", "frame of unknown type is ignored")
def _(c):
    c.send(frame(0x20, 0xFF, 0, b"hello"))
    c.expect_alive()


@case("4.1/2", "undefined flags are ignored")
def _(c):
    c.send(frame(PING, 0xFE, 0, b"abcdefgh"))
    c.wait_for(lambda f: f[0] == PING and f[1] & ACK and f[3] == b"abcdefgh", "PING ACK")
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | 0xD2, 1, c.block()))
    c.expect_response(1)


@case("4.1/3", "the reserved bit of the stream identifier is ignored")
def _(c):
    b = c.headers(1)
    b = b[:5] + bytes([b[5] | 0x80]) + b[6:]
    c.send(b)
    c.expect_response(1)


@case("4.2/1", "DATA of exactly SETTINGS_MAX_FRAME_SIZE (16,384) octets is accepted")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST", extra=[("content-length", "16384")]))
    c.send(frame(DATA, END_STREAM, 1, b"x" * 16384))
    c.expect_response(1)


@case("4.2/2", "DATA over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/4.2/2", end_stream=False, method="POST"))
    c.send(frame(DATA, END_STREAM, 1, b"x" * 16385))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("4.2/3", "HEADERS over SETTINGS_MAX_FRAME_SIZE: connection FRAME_SIZE_ERROR")
def _(c):
    blk = raw_literal(pseudo(c, "/malformed/4.2/3") + [("x-pad", "a" * 8000), ("x-pad", "b" * 8000),
                                                          ("x-pad", "c" * 500)])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("4.2/4", "frame larger than the limit on stream 0: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(0x20, 0, 0, b"x" * 16385))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("4.3/1", "undecodable header block: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x00\x85\xf2\xb2\x4a\x87\xff\xff\xff\xfd\x25\x42\x7f"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("4.3/2", "PRIORITY inside a header block: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, end_headers=False))
    c.send(frame(PRIORITY, 0, 1, u32(0) + b"\x10"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("4.3/3", "HEADERS of another stream inside a header block: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, end_headers=False))
    c.send(c.headers(3))
    c.expect_goaway(PROTOCOL_ERROR)


@case("4.3/4", "the HPACK table stays in sync across streams (indexed fields reused)")
def _(c):
    extra = [("x-one", "1")]
    for sid in (1, 3, 5):
        c.send(c.headers(sid, "/same", extra=extra))
        c.expect_response(sid)


@case("4.3/5", "a header block is decoded even for a refused stream (table in sync)")
def _(c):
    # Stream 1 is malformed but adds a table entry; stream 3 refers to it.
    blk = c.enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", c.authority),
                        (":path", "/malformed/4.3/5"), ("x-kept", "yes"), ("Upper", "x")])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_rst(1, PROTOCOL_ERROR)
    c.send(c.headers(3, "/", extra=[("x-kept", "yes")]))
    c.expect_response(3)


# ---------------------------------------------------------------- §5 streams

@case("5.1/1", "DATA on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(DATA, END_STREAM, 1, b"x"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/2", "RST_STREAM on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(RST_STREAM, 0, 1, u32(CANCEL)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/3", "WINDOW_UPDATE on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(100)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/4", "CONTINUATION on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/5", "DATA on a half-closed (remote) stream: STREAM_CLOSED")
def _(c):
    c.send(c.headers(1, "/slow/1000"))
    c.send(frame(DATA, 0, 1, b"x"))
    c.expect_rst(1, STREAM_CLOSED)


@case("5.1/6", "HEADERS on a half-closed (remote) stream: STREAM_CLOSED")
def _(c):
    c.send(c.headers(1, "/slow/1000"))
    c.send(c.headers(1, "/slow/1000"))
    c.expect_rst(1, STREAM_CLOSED)


@case("5.1/7", "CONTINUATION on a half-closed (remote) stream: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000"))
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/8", "DATA after the client's RST_STREAM: STREAM_CLOSED")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(RST_STREAM, 0, 1, u32(CANCEL)))
    c.send(frame(DATA, 0, 1, b"x"))
    c.expect_rst(1, STREAM_CLOSED)


@case("5.1/9", "HEADERS after the client's RST_STREAM: STREAM_CLOSED or PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(RST_STREAM, 0, 1, u32(CANCEL)))
    c.send(c.headers(1, "/"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/10", "CONTINUATION after the client's RST_STREAM: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(RST_STREAM, 0, 1, u32(CANCEL)))
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/11", "DATA on a closed stream: STREAM_CLOSED")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(frame(DATA, 0, 1, b"x"))
    c.expect_rst(1, STREAM_CLOSED)


@case("5.1/12", "HEADERS on a closed stream: STREAM_CLOSED or PROTOCOL_ERROR")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(c.headers(1))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/13", "CONTINUATION on a closed stream: PROTOCOL_ERROR")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1/14", "WINDOW_UPDATE and RST_STREAM on a closed stream are accepted")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(10)) + frame(RST_STREAM, 0, 1, u32(CANCEL)))
    c.expect_alive()


@case("5.1/15", "frames in flight after the server reset a stream are ignored")
def _(c):
    c.send(c.headers(1, "/malformed/5.1/15", end_stream=False, method="POST", extra=[("connection", "x")]))
    c.send(frame(DATA, 0, 1, b"x" * 100) + frame(WINDOW_UPDATE, 0, 1, u32(5)))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("5.1.1/1", "even stream identifier from the client: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(2))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1.1/2", "stream identifier smaller than a previous one: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(5))
    c.expect_response(5)
    c.send(c.headers(3))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.1.1/3", "a new stream implicitly closes lower idle streams")
def _(c):
    c.send(c.headers(7))
    c.expect_response(7)
    c.send(frame(DATA, 0, 3, b"x"))
    c.wait_for(lambda f: f[0] in (GOAWAY, RST_STREAM) and (f[0] == GOAWAY or f[2] == 3), "an error for stream 3")


@case("5.1.2/1", "streams over SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM")
def _(c):
    limit = (c.server_settings or {}).get(MAX_CONCURRENT_STREAMS, 100)
    c.send(b"".join(c.headers(1 + 2 * i, "/slow/1500") for i in range(limit + 1)))
    c.expect_rst(1 + 2 * limit, REFUSED_STREAM)


@case("5.3.1/1", "HEADERS depending on its own stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1, u32(1) + b"\x10" + c.block("/malformed/5.3.1/1")))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("5.3.1/2", "PRIORITY depending on its own (idle) stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(PRIORITY, 0, 1, u32(1) + b"\x10"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("5.3.1/3", "PRIORITY depending on its own open stream: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(PRIORITY, 0, 1, u32(0x80000001) + b"\x10"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("5.4.1/1", "a connection error is a GOAWAY, then the connection closes")
def _(c):
    c.send(frame(PING, 0, 3, b"12345678"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.4.1/2", "GOAWAY carries the last stream the server processed")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(frame(PING, 0, 0, b"1234"))
    g = c.wait_for(lambda f: f[0] == GOAWAY, "GOAWAY")
    last = int.from_bytes(g[3][:4], "big") & 0x7FFFFFFF
    if last != 1 or int.from_bytes(g[3][4:8], "big") != FRAME_SIZE_ERROR:
        raise Fail(describe(g) + f" last stream {last}")


@case("5.5/1", "unknown extension frame is ignored")
def _(c):
    c.send(frame(0xEE, 0, 1, b"ext"))
    c.expect_alive()


@case("5.5/2", "unknown extension frame inside a header block: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, end_headers=False))
    c.send(frame(0xEE, 0, 1, b"ext"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("5.5/3", "unknown SETTINGS identifier is ignored")
def _(c):
    c.send(settings((0xFF, 1)))
    c.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")
    c.expect_alive()


# ---------------------------------------------------------------- §6.1 DATA

@case("6.1/1", "DATA on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(DATA, END_STREAM, 0, b"x"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.1/2", "DATA on a stream not open nor half-closed (local): STREAM_CLOSED")
def _(c):
    c.send(c.headers(1, "/slow/1000"))
    c.send(frame(DATA, END_STREAM, 1, b"x"))
    c.expect_rst(1, STREAM_CLOSED)


@case("6.1/3", "DATA padding as long as the payload: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/6.1/3", end_stream=False, method="POST"))
    c.send(frame(DATA, PADDED | END_STREAM, 1, b"\x06abcde"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.1/4", "padded DATA is accepted, padding not part of the body")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST", extra=[("content-length", "3")]))
    c.send(frame(DATA, PADDED | END_STREAM, 1, b"\x04abc\x00\x00\x00\x00"))
    c.expect_response(1)


@case("6.1/6", "empty DATA with END_STREAM ends a request")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST"))
    c.send(frame(DATA, END_STREAM, 1, b""))
    c.expect_response(1)


# ------------------------------------------------------------- §6.2 HEADERS

@case("6.2/1", "HEADERS without END_HEADERS then PRIORITY: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, end_headers=False))
    c.send(frame(PRIORITY, 0, 1, u32(0) + b"\x10"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.2/2", "HEADERS without END_HEADERS then HEADERS of another stream: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, end_headers=False))
    c.send(c.headers(3))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.2/3", "HEADERS on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(0))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.2/4", "HEADERS padding as long as the payload: PROTOCOL_ERROR")
def _(c):
    b = c.block("/malformed/6.2/4")
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, bytes([len(b) + 1]) + b))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.2/5", "padded HEADERS is accepted")
def _(c):
    b = c.block()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, b"\x05" + b + b"\x00" * 5))
    c.expect_response(1)


@case("6.2/6", "HEADERS with priority fields is accepted")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1, u32(0x80000000) + b"\xff" + c.block()))
    c.expect_response(1)


@case("6.2/7", "HEADERS with padding and priority is accepted")
def _(c):
    b = u32(0) + b"\x10" + c.block()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIORITY_FLAG, 1, b"\x03" + b + b"\x00" * 3))
    c.expect_response(1)


@case("6.2/8", "HEADERS too short for its priority fields: error")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1, b"\x00\x00"))
    c.wait_for(lambda f: f[0] == GOAWAY, "GOAWAY")


# ------------------------------------------------------------ §6.3 PRIORITY

@case("6.3/1", "PRIORITY on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(PRIORITY, 0, 0, u32(1) + b"\x10"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.3/2", "PRIORITY of length 4 on an open stream: FRAME_SIZE_ERROR stream error")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(PRIORITY, 0, 1, u32(0)))
    c.expect_rst(1, FRAME_SIZE_ERROR)


@case("6.3/3", "PRIORITY on an idle stream is accepted and does not open it")
def _(c):
    c.send(frame(PRIORITY, 0, 9, u32(0) + b"\x10"))
    c.send(c.headers(1))
    c.expect_response(1)


@case("6.3/4", "PRIORITY on a half-closed (remote) stream is accepted")
def _(c):
    c.send(c.headers(1, "/slow/300"))
    c.send(frame(PRIORITY, 0, 1, u32(0) + b"\x10"))
    c.expect_response(1)


@case("6.3/5", "PRIORITY on a closed stream is accepted")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)
    c.send(frame(PRIORITY, 0, 1, u32(0) + b"\x10"))
    c.expect_alive()


# ---------------------------------------------------------- §6.4 RST_STREAM

@case("6.4/1", "RST_STREAM on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(RST_STREAM, 0, 0, u32(CANCEL)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.4/2", "RST_STREAM on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(RST_STREAM, 0, 3, u32(CANCEL)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.4/3", "RST_STREAM of length 3: FRAME_SIZE_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000"))
    c.send(frame(RST_STREAM, 0, 1, b"\x00\x00\x08"))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("6.4/4", "RST_STREAM cancels the stream: no response follows")
def _(c):
    c.send(c.headers(1, "/slow/500"))
    c.send(frame(RST_STREAM, 0, 1, u32(CANCEL)))
    deadline = time.time() + 1.5
    while True:
        f = c.next_frame(deadline)
        if f is None:
            break
        if f[2] == 1 and f[0] in (HEADERS, DATA):
            raise Fail(f"frame on a cancelled stream: {describe(f)}")
    c.expect_alive()


# ------------------------------------------------------------ §6.5 SETTINGS

@case("6.5/1", "SETTINGS ACK with a payload: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00"))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("6.5/2", "SETTINGS on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(SETTINGS, 0, 1, b""))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.5/3", "SETTINGS length not a multiple of 6: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("6.5/4", "empty SETTINGS is acknowledged")
def _(c):
    c.send(settings())
    c.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")


@case("6.5.2/1", "SETTINGS_ENABLE_PUSH of 2: PROTOCOL_ERROR")
def _(c):
    c.send(settings((ENABLE_PUSH, 2)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 0x80000000)))
    c.expect_goaway(FLOW_CONTROL_ERROR)


@case("6.5.2/3", "SETTINGS_MAX_FRAME_SIZE below 16,384: PROTOCOL_ERROR")
def _(c):
    c.send(settings((MAX_FRAME_SIZE, 16383)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.5.2/4", "SETTINGS_MAX_FRAME_SIZE over 2^24-1: PROTOCOL_ERROR")
def _(c):
    c.send(settings((MAX_FRAME_SIZE, 0x1000000)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.5.2/5", "SETTINGS_ENABLE_PUSH 0 and 1, HEADER_TABLE_SIZE 0, big MAX_HEADER_LIST_SIZE are accepted")
def _(c):
    c.send(settings((ENABLE_PUSH, 1), (ENABLE_PUSH, 0), (HEADER_TABLE_SIZE, 0), (MAX_HEADER_LIST_SIZE, 1 << 30)))
    c.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")
    c.get(1)
    c.expect_response(1)


@case("6.5.2/6", "the client's SETTINGS_MAX_FRAME_SIZE bounds the server's DATA")
def _(c):
    c.send(settings((MAX_FRAME_SIZE, 16384), (INITIAL_WINDOW_SIZE, 1 << 20)))
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(1 << 20)))
    c.get(1, "/bytes/100000")
    c.expect_response(1)
    sizes = c.read_body(1, seconds=10)
    if max(sizes) > 16384 or sum(sizes) != 100000:
        raise Fail(f"DATA sizes {sizes}")


@case("6.5.3/1", "several values of one setting: the last applies")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)))
    c.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")
    c.get(1, "/bytes/100")
    c.expect_response(1)
    f = c.wait_for(lambda f: f[0] == DATA and f[2] == 1, "DATA")
    if len(f[3]) != 1:
        raise Fail(f"DATA of {len(f[3])} octets with a window of 1")


@case("6.5.3/2", "SETTINGS is acknowledged")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 70000)))
    c.wait_for(lambda f: f[0] == SETTINGS and f[1] & ACK, "SETTINGS ACK")


# ---------------------------------------------------------------- §6.7 PING

@case("6.7/1", "PING is answered with an ACK of the same payload")
def _(c):
    c.send(frame(PING, 0, 0, b"h2-conf!"))
    c.wait_for(lambda f: f[0] == PING and f[1] & ACK and f[3] == b"h2-conf!", "PING ACK")


@case("6.7/2", "PING with ACK is not answered")
def _(c):
    c.send(frame(PING, ACK, 0, b"unsolici"))
    c.expect_alive()
    if any(f[0] == PING and f[3] == b"unsolici" for f in c.seen):
        raise Fail("answered a PING ACK")


@case("6.7/3", "PING on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(PING, 0, 1, b"12345678"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.7/4", "PING of length 6: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(PING, 0, 0, b"123456"))
    c.expect_goaway(FRAME_SIZE_ERROR)


# -------------------------------------------------------------- §6.8 GOAWAY

@case("6.8/1", "GOAWAY on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(GOAWAY, 0, 1, u32(0) + u32(NO_ERROR)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.8/2", "after the client's GOAWAY, open streams finish and the connection closes")
def _(c):
    c.send(c.headers(1, "/slow/300"))
    c.send(frame(GOAWAY, 0, 0, u32(1) + u32(NO_ERROR)))
    c.expect_response(1)
    c.read_body(1)
    deadline = time.time() + WAIT
    while not c.closed and c.next_frame(deadline) is not None:
        pass
    if not c.closed:
        raise Fail("connection still open")


@case("6.8/3", "GOAWAY shorter than 8 octets: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(GOAWAY, 0, 0, u32(0)))
    c.expect_goaway(FRAME_SIZE_ERROR)


# ------------------------------------------------------- §6.9 WINDOW_UPDATE

@case("6.9/1", "WINDOW_UPDATE of 0 on the connection: PROTOCOL_ERROR")
def _(c):
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(0)))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.9/2", "WINDOW_UPDATE of 0 on a stream: PROTOCOL_ERROR stream error")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(0)))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("6.9/3", "WINDOW_UPDATE of length 3: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    c.expect_goaway(FRAME_SIZE_ERROR)


@case("6.9/4", "request DATA is credited back with WINDOW_UPDATE")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST"))
    c.send(frame(DATA, 0, 1, b"x" * 10000))
    c.wait_for(lambda f: f[0] == WINDOW_UPDATE and f[2] == 0, "a connection WINDOW_UPDATE", seconds=5)
    c.send(frame(DATA, END_STREAM, 1, b""))
    c.expect_response(1)


@case("6.9.1/1", "SETTINGS_INITIAL_WINDOW_SIZE 1: DATA of 1 octet")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 1)))
    c.get(1, "/bytes/100")
    c.expect_response(1)
    f = c.wait_for(lambda f: f[0] == DATA and f[2] == 1, "DATA")
    if len(f[3]) != 1:
        raise Fail(f"DATA of {len(f[3])} octets")
    c.expect_no_data(1)


@case("6.9.1/2", "connection window over 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(0x7FFFFFFF)))
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(0x7FFFFFFF)))
    c.expect_goaway(FLOW_CONTROL_ERROR)


@case("6.9.1/3", "stream window over 2^31-1: FLOW_CONTROL_ERROR stream error")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(0x7FFFFFFF)))
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(0x7FFFFFFF)))
    c.expect_rst(1, FLOW_CONTROL_ERROR)


@case("6.9.1/4", "the connection window bounds DATA across streams")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 1 << 20)))
    c.get(1, "/bytes/200000")
    c.expect_response(1)
    got = 0
    deadline = time.time() + 1.5
    while True:
        f = c.next_frame(deadline)
        if f is None:
            break
        if f[0] == DATA:
            got += len(f[3])
    if got != 65535:
        raise Fail(f"{got} octets sent within a connection window of 65,535")


@case("6.9.2/1", "SETTINGS_INITIAL_WINDOW_SIZE raised mid-stream: DATA resumes")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 0)))
    c.get(1, "/bytes/100")
    c.expect_response(1)
    c.expect_no_data(1, 0.5)
    c.send(settings((INITIAL_WINDOW_SIZE, 100)))
    f = c.wait_for(lambda f: f[0] == DATA and f[2] == 1, "DATA")
    if len(f[3]) != 100:
        raise Fail(f"DATA of {len(f[3])}")


@case("6.9.2/2", "SETTINGS_INITIAL_WINDOW_SIZE lowered: the window goes negative, nothing sent until it recovers")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 100)))
    c.get(1, "/bytes/300")
    c.expect_response(1)
    c.wait_for(lambda f: f[0] == DATA and f[2] == 1, "DATA")
    c.send(settings((INITIAL_WINDOW_SIZE, 50)))  # window now -50
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(50)))  # back to 0
    c.expect_no_data(1, 0.5)
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(30)))
    f = c.wait_for(lambda f: f[0] == DATA and f[2] == 1, "DATA")
    if len(f[3]) != 30:
        raise Fail(f"DATA of {len(f[3])} with a window of 30")


@case("6.9.2/3", "SETTINGS_INITIAL_WINDOW_SIZE making a stream window overflow: FLOW_CONTROL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/1000", end_stream=False, method="POST"))
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(0x7FFFFFFF - 65535)))
    c.send(settings((INITIAL_WINDOW_SIZE, 65536)))
    c.expect_goaway(FLOW_CONTROL_ERROR)


# -------------------------------------------------------- §6.10 CONTINUATION

@case("6.10/1", "HEADERS + several CONTINUATION frames make one block")
def _(c):
    b = c.block(extra=[("x-a", "1" * 50), ("x-b", "2" * 50)])
    parts = [b[i:i + 10] for i in range(0, len(b), 10)]
    out = frame(HEADERS, END_STREAM, 1, parts[0])
    for i, p in enumerate(parts[1:]):
        out += frame(CONTINUATION, END_HEADERS if i == len(parts) - 2 else 0, 1, p)
    c.send(out)
    c.expect_response(1)


@case("6.10/2", "CONTINUATION then another frame: PROTOCOL_ERROR")
def _(c):
    b = c.block()
    c.send(frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, 0, 1, b[5:]) + frame(PING, 0, 0, b"12345678"))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.10/3", "CONTINUATION on stream 0: PROTOCOL_ERROR")
def _(c):
    b = c.block()
    c.send(frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, END_HEADERS, 0, b[5:]))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.10/4", "CONTINUATION after HEADERS with END_HEADERS: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/500") + frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.10/5", "CONTINUATION after CONTINUATION with END_HEADERS: PROTOCOL_ERROR")
def _(c):
    b = c.block("/slow/500")
    c.send(frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, END_HEADERS, 1, b[5:])
           + frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.10/6", "CONTINUATION after DATA: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST"))
    c.send(frame(DATA, 0, 1, b"x") + frame(CONTINUATION, END_HEADERS, 1, c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("6.10/7", "CONTINUATION on another stream than the HEADERS: PROTOCOL_ERROR")
def _(c):
    b = c.block()
    c.send(frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, END_HEADERS, 3, b[5:]))
    c.expect_goaway(PROTOCOL_ERROR)


# ------------------------------------------------------------- §7 codes

@case("7/1", "GOAWAY with an unknown error code is accepted")
def _(c):
    # Not a connection error: a PING sent with it (one record, one read)
    # is answered, and no GOAWAY with an error comes back. After the
    # client's GOAWAY, with no stream open, the server may then close.
    data = os.urandom(8)
    c.send(frame(GOAWAY, 0, 0, u32(0) + u32(0xFF)) + frame(PING, 0, 0, data))
    g = c.wait_for(lambda f: f[0] == GOAWAY or (f[0] == PING and f[1] & ACK and f[3] == data),
                   "PING ACK")
    if g[0] == GOAWAY:
        raise Fail(f"expected no connection error; got {describe(g)}")


@case("7/2", "RST_STREAM with an unknown error code is accepted")
def _(c):
    c.send(c.headers(1, "/slow/500"))
    c.send(frame(RST_STREAM, 0, 1, u32(0xFF)))
    c.expect_alive()


# ------------------------------------------------- §8.1 request exchange

def malformed(c, sid, fields, end_stream=True, raw=False):
    blk = raw_literal(fields) if raw else c.enc.encode(fields)
    c.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, blk))
    c.expect_rst(sid, PROTOCOL_ERROR)


@case("8.1/1", "a second HEADERS without END_STREAM: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.1/1", end_stream=False, method="POST"))
    c.send(frame(HEADERS, END_HEADERS, 1, c.enc.encode([("x-trailer", "1")])))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1/2", "trailers end a request")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST", extra=[("te", "trailers")]))
    c.send(frame(DATA, 0, 1, b"abc"))
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([("x-trailer", "1")])))
    c.expect_response(1)


@case("8.1/3", "HEADERS after trailers: STREAM_CLOSED")
def _(c):
    c.send(c.headers(1, "/slow/500", end_stream=False, method="POST"))
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([("x-trailer", "1")])))
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([("x-trailer", "2")])))
    c.expect_rst(1, STREAM_CLOSED)


@case("8.1.1/1", "content-length larger than the DATA: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.1.1/1", end_stream=False, method="POST", extra=[("content-length", "5")]))
    c.send(frame(DATA, END_STREAM, 1, b"abc"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1.1/2", "content-length smaller than several DATA frames: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.1.1/2", end_stream=False, method="POST", extra=[("content-length", "4")]))
    c.send(frame(DATA, 0, 1, b"ab") + frame(DATA, 0, 1, b"cd") + frame(DATA, END_STREAM, 1, b"ef"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1.1/3", "content-length 0 followed by DATA: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.1.1/3", end_stream=False, method="POST", extra=[("content-length", "0")]))
    time.sleep(0.3)
    c.send(frame(DATA, END_STREAM, 1, b"x"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1.1/4", "DATA reaching content-length, then more: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.1.1/4", end_stream=False, method="POST", extra=[("content-length", "3")]))
    c.send(frame(DATA, 0, 1, b"abc"))
    time.sleep(0.3)
    c.send(frame(DATA, END_STREAM, 1, b"d"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1.1/5", "content-length with END_STREAM on HEADERS: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.1.1/5", "POST") + [("content-length", "1")])


@case("8.1.1/6", "content-length 0 then an empty END_STREAM DATA is a complete request")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST", extra=[("content-length", "0")]))
    c.send(frame(DATA, END_STREAM, 1, b""))
    c.expect_response(1)


@case("8.1.1/7", "matching content-length over several DATA frames is accepted")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST", extra=[("content-length", "6")]))
    c.send(frame(DATA, 0, 1, b"ab") + frame(DATA, 0, 1, b"cd") + frame(DATA, END_STREAM, 1, b"ef"))
    c.expect_response(1)


@case("8.1.1/8", "malformed request after the response started: PROTOCOL_ERROR")
def _(c):
    c.send(settings((INITIAL_WINDOW_SIZE, 1 << 20)))
    c.send(c.headers(1, "/malformed/8.1.1/8", end_stream=False, method="POST", extra=[("content-length", "1")]))
    c.send(frame(DATA, 0, 1, b"ab"))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.1.1/9", "non-numeric content-length: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.1.1/9", "POST") + [("content-length", "1x")], end_stream=False)


# ---------------------------------------------------- §8.2 fields

@case("8.2/1", "upper-case field name: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2/1") + [("X-Upper", "1")], raw=True)


@case("8.2.1/1", "field name with a space: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/1") + [("x y", "1")], raw=True)


@case("8.2.1/2", "field name with a colon: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/2") + [("x:y", "1")], raw=True)


@case("8.2.1/3", "empty field name: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/3") + [("", "1")], raw=True)


@case("8.2.1/4", "field value with a NUL: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/4") + [("x-v", "a\x00b")], raw=True)


@case("8.2.1/5", "field value with CR/LF: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/5") + [("x-v", "a\r\nx-injected: 1")], raw=True)


@case("8.2.1/6", "field value with leading whitespace: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/6") + [("x-v", " a")], raw=True)


@case("8.2.1/7", "field value with trailing whitespace: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.1/7") + [("x-v", "a\t")], raw=True)


for i, name in enumerate(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"], 1):
    def conn_specific(c, name=name, i=i):
        malformed(c, 1, pseudo(c, f"/malformed/8.2.2/{i}") + [(name, "close" if name == "connection" else "x")])
    case(f"8.2.2/{i}", f"connection-specific field {name}: PROTOCOL_ERROR")(conn_specific)


@case("8.2.2/6", "te other than trailers: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.2.2/6") + [("te", "gzip")])


@case("8.2.2/7", "te: trailers is accepted")
def _(c):
    c.send(c.headers(1, "/", extra=[("te", "trailers")]))
    c.expect_response(1)


@case("8.2.3/1", "cookie crumbs are accepted")
def _(c):
    c.send(c.headers(1, "/", extra=[("cookie", "a=1"), ("cookie", "b=2")]))
    c.expect_response(1)


# --------------------------------------------------- §8.3 control data

@case("8.3/1", "unknown pseudo-header: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.3/1") + [(":foo", "bar")])


@case("8.3/2", "response pseudo-header :status in a request: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.3/2") + [(":status", "200")])


@case("8.3/3", "pseudo-header in trailers: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/malformed/8.3/3", end_stream=False, method="POST"))
    c.send(frame(DATA, 0, 1, b"x"))
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([(":path", "/")])))
    c.expect_rst(1, PROTOCOL_ERROR)


@case("8.3/4", "pseudo-header after a regular field: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3/4")
    malformed(c, 1, p[:3] + [("x-early", "1")] + p[3:])


@case("8.3.1/1", "empty :path: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "")
    malformed(c, 1, p + [("x-case", "/malformed/8.3.1/1")])


@case("8.3.1/2", "missing :method: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.3.1/2")[1:])


@case("8.3.1/3", "missing :scheme: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3.1/3")
    malformed(c, 1, [p[0]] + p[2:])


@case("8.3.1/4", "missing :path: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/")[:3] + [("x-case", "/malformed/8.3.1/4")])


@case("8.3.1/5", "duplicated :method: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3.1/5")
    malformed(c, 1, p[:1] + p)


@case("8.3.1/6", "duplicated :scheme: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3.1/6")
    malformed(c, 1, p[:2] + p[1:])


@case("8.3.1/7", "duplicated :path: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3.1/7")
    malformed(c, 1, p + [(":path", "/malformed/8.3.1/7b")])


@case("8.3.1/8", ":path not starting with / (and not * for OPTIONS): PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "malformed/8.3.1/8"))


@case("8.3.1/9", ":authority with userinfo: PROTOCOL_ERROR")
def _(c):
    p = pseudo(c, "/malformed/8.3.1/9")
    p[2] = (":authority", "user@" + c.authority)
    malformed(c, 1, p)


@case("8.3.1/10", "Host naming another entity than :authority: PROTOCOL_ERROR")
def _(c):
    malformed(c, 1, pseudo(c, "/malformed/8.3.1/10") + [("host", "other.invalid")])


@case("8.3.1/11", "Host alone stands for :authority")
def _(c):
    p = pseudo(c, "/")
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([p[0], p[1], p[3], ("host", c.authority)])))
    c.expect_response(1)


@case("8.3.1/12", "OPTIONS * is accepted")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode(pseudo(c, "*", "OPTIONS"))))
    c.expect_response(1)


@case("8.4/1", "PUSH_PROMISE from a client: PROTOCOL_ERROR")
def _(c):
    c.send(c.headers(1, "/slow/500"))
    c.send(frame(PUSH_PROMISE, END_HEADERS, 1, u32(2) + c.block()))
    c.expect_goaway(PROTOCOL_ERROR)


@case("8.5/1", "CONNECT is refused with a stream error")
def _(c):
    c.send(frame(HEADERS, END_HEADERS, 1, c.enc.encode([(":method", "CONNECT"), (":authority", "example.com:443")])))
    c.wait_for(lambda f: f[0] == RST_STREAM and f[2] == 1, "RST_STREAM")
    c.expect_alive()


@case("8.6/1", "HEAD gets headers and no DATA")
def _(c):
    c.send(c.headers(1, "/bytes/100", method="HEAD"))
    f = c.wait_for(lambda f: f[0] == "fields" and f[2] == 1, "response")
    if f[3].get(":status") != "200":
        raise Fail(str(f[3]))
    if not f[1]:
        sizes = c.read_body(1)
        if sum(sizes):
            raise Fail(f"HEAD response with {sum(sizes)} octets of DATA")


@case("8.6/2", "response fields are lower-case, no connection-specific fields")
def _(c):
    c.get(1)
    f = c.expect_response(1)
    bad = [k for k in f if k != k.lower() or k in ("connection", "keep-alive", "transfer-encoding", "upgrade")]
    if bad:
        raise Fail(f"response fields {bad}")


# ------------------------------------------------------------------- HPACK

@case("hpack/2.3.3/1", "indexed field past the tables: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xbe"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/2.3.3/2", "literal with an indexed name past the tables: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x7e\x01a"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/4.2/1", "table size update at the end of a block: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.block() + b"\x20"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/4.2/2", "table size update at the start of a block is accepted")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\x1f" + raw_literal(pseudo(c, "/"))))
    c.expect_response(1)


@case("hpack/4.2/3", "two size updates at the start of a block are accepted")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x20\x3f\xe1\x1f" + raw_literal(pseudo(c, "/"))))
    c.expect_response(1)


@case("hpack/4.4/1", "entries evicted on table size update are gone: COMPRESSION_ERROR")
def _(c):
    blk = c.enc.encode(pseudo(c, "/") + [("x-evicted", "1")])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\x20" + raw_literal(pseudo(c, "/")) + b"\xbe"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.1/1", "integer overflow: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff\xff\x7f"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.1/2", "truncated integer: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, raw_literal(pseudo(c, "/")) + b"\xff\x80"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.2/1", "Huffman padding longer than 7 bits: COMPRESSION_ERROR")
def _(c):
    # "a" (00011) + 11 one-bits.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 raw_literal(pseudo(c, "/")) + b"\x00\x01x\x82\x1f\xff"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.2/2", "Huffman padding of zeros: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 raw_literal(pseudo(c, "/")) + b"\x00\x01x\x81\x18"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.2/3", "Huffman string containing EOS: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 raw_literal(pseudo(c, "/")) + b"\x00\x01x\x84\xff\xff\xff\xff"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/5.2/4", "truncated string literal: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, raw_literal(pseudo(c, "/")) + b"\x00\x05ab"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/6.1/1", "indexed field with index 0: COMPRESSION_ERROR")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/6.3/1", "table size update over SETTINGS_HEADER_TABLE_SIZE: COMPRESSION_ERROR")
def _(c):
    limit = (c.server_settings or {}).get(HEADER_TABLE_SIZE, 4096)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_int(limit + 1, 5, 0x20) + raw_literal(pseudo(c, "/"))))
    c.expect_goaway(COMPRESSION_ERROR)


@case("hpack/4.1/1", "an entry larger than the table empties it (and is usable nowhere)")
def _(c):
    blk = raw_literal(pseudo(c, "/")) + b"\x40\x01x" + hpack_int(4100, 7) + b"v" * 4100
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, raw_literal(pseudo(c, "/")) + b"\xbe"))
    c.expect_goaway(COMPRESSION_ERROR)


# ------------------------------------------------------- limits and bombs

@case("limits/1", "header list over SETTINGS_MAX_HEADER_LIST_SIZE (counting 32 per field): 431")
def _(c):
    # 1,000 references to a one-octet entry: 1 KB of names, 33 KB by the RFC size.
    blk = raw_literal(pseudo(c, "/")) + b"\x40\x01x\x00" + b"\xbe" * 999
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1, "431")


@case("limits/2", "more fields than the per-request cap: 431")
def _(c):
    blk = raw_literal(pseudo(c, "/")) + b"\x40\x01x\x01y" + b"\xbe" * 150
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1, "431")


@case("limits/3", "an HPACK bomb (4 KB entry referenced 2,000 times): 431, connection lives")
def _(c):
    blk = raw_literal(pseudo(c, "/")) + b"\x40\x01x" + hpack_int(4000, 7) + b"b" * 4000
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, raw_literal(pseudo(c, "/")) + b"\xbe" * 2000))
    c.expect_response(3, "431")
    c.expect_alive()


# ------------------------------------------------------- generic exchange

@case("generic/1", "GET")
def _(c):
    c.get(1)
    c.expect_response(1)
    c.read_body(1)


@case("generic/2", "HEAD")
def _(c):
    c.send(c.headers(1, "/", method="HEAD"))
    c.expect_response(1)


@case("generic/3", "POST with a body in one DATA frame")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST"))
    c.send(frame(DATA, END_STREAM, 1, b"hello"))
    c.expect_response(1)


@case("generic/4", "POST with a body in several DATA frames")
def _(c):
    c.send(c.headers(1, "/", end_stream=False, method="POST"))
    c.send(frame(DATA, 0, 1, b"he") + frame(DATA, 0, 1, b"ll") + frame(DATA, END_STREAM, 1, b"o"))
    c.expect_response(1)


@case("generic/5", "streams multiplexed on one connection")
def _(c):
    c.send(b"".join(c.headers(1 + 2 * i, "/slow/200") for i in range(10)))
    for i in range(10):
        c.expect_response(1 + 2 * i)


@case("generic/6", "a 1 MB response with WINDOW_UPDATEs from the client")
def _(c):
    c.get(1, "/bytes/1000000")
    c.expect_response(1)
    got, deadline = 0, time.time() + 20
    while got < 1000000:
        f = c.next_frame(deadline)
        if f is None or f[0] == "closed":
            raise Fail(f"{got} octets")
        if f[0] == DATA and f[2] == 1 and f[3]:
            got += len(f[3])
            c.send(frame(WINDOW_UPDATE, 0, 0, u32(len(f[3]))) + frame(WINDOW_UPDATE, 0, 1, u32(len(f[3]))))
    if got != 1000000:
        raise Fail(f"{got} octets")


@case("generic/7", "literal with incremental indexing, then indexed, in one block")
def _(c):
    blk = raw_literal(pseudo(c, "/")) + b"\x40\x04x-ab\x01v" + b"\xbe"
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1)


@case("generic/8", "never-indexed literals")
def _(c):
    blk = raw_literal(pseudo(c, "/")) + b"\x10\x04x-ab\x01v" + b"\x1f\x08\x01v"
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    c.expect_response(1)


@case("generic/9", "Huffman-coded request fields")
def _(c):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode(pseudo(c, "/huff") + [("x-h", "some value")],
                                                                    huffman=True)))
    c.expect_response(1)


@case("generic/10", "the server's GOAWAY on idle close or shutdown is not needed for a client GOAWAY")
def _(c):
    c.send(frame(GOAWAY, 0, 0, u32(0) + u32(NO_ERROR)))
    deadline = time.time() + WAIT
    while not c.closed and c.next_frame(deadline) is not None:
        pass
    if not c.closed:
        raise Fail("connection still open after GOAWAY with no streams")


def main():
    port, authority = int(sys.argv[1]), sys.argv[2]
    prefixes = sys.argv[3:]
    for cid, title, fn in CASES:
        if prefixes and not any(cid.startswith(p) for p in prefixes):
            continue
        detail = ""
        try:
            c = Conn(port, authority)
            c.port = port
            fn(c)
            ok = True
        except Fail as e:
            ok, detail = False, str(e)
        except Exception as e:  # noqa: BLE001 - a crash is a failure, reported
            ok, detail = False, f"{type(e).__name__}: {e}"
        print(json.dumps({"id": cid, "title": title, "ok": ok, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
