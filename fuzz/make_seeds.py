#!/usr/bin/python3
"""Writes the seed corpora committed under fuzz/seeds/<target>/: small,
meaningful inputs (real requests, frames, header blocks, configs) that the
fuzz runs start from together with the working corpus in fuzz/corpus/.
Each file is the input as the target reads it (first byte = the target's
knobs where it has them). Re-run after changing a target's input format:

    /usr/bin/python3 fuzz/make_seeds.py
"""
import os
import shutil
import struct

import hpack

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- h1: knob byte (bit 0 chunked body, bit 1 length body), then bytes ---
GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"
POST = (b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
CHUNKED_REQ = (b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
RESP_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
SMUGGLE = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
WS = (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
for name, knob, data in [
    ("get", 0, GET), ("post_length", 0, POST), ("chunked_request", 0, CHUNKED_REQ),
    ("response", 0, RESP), ("response_chunked", 0, RESP_CHUNKED), ("cl_and_te", 0, SMUGGLE),
    ("websocket", 0, WS), ("absolute_form", 0, b"GET http://a.example/x HTTP/1.1\r\nHost: b\r\n\r\n"),
    ("http10", 0, b"GET / HTTP/1.0\r\n\r\n"),
    ("pipelined", 0, GET + GET),
    ("chunked_body", 1 | (7 << 2), b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"),
    ("chunked_trailers", 1 | (3 << 2), b"3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
    ("length_body", 2 | (5 << 2), bytes([11]) + b"hello world"),
]:
    write("h1", name, bytes([knob]) + data)

# --- hpack: knob byte (table limit index: 2 = 4096), then length-prefixed blocks ---
def blocks(*bs):
    return b"".join(bytes([len(b)]) + b for b in bs)

# RFC 7541 C.3 (requests without Huffman) and C.4 (with Huffman), one connection each.
C3 = [bytes.fromhex("828684410f7777772e6578616d706c652e636f6d"),
      bytes.fromhex("828684be58086e6f2d6361636865"),
      bytes.fromhex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")]
C4 = [bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
      bytes.fromhex("828684be5886a8eb10649cbf"),
      bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")]
write("hpack", "rfc7541_c3", bytes([2]) + blocks(*C3))
write("hpack", "rfc7541_c4", bytes([2]) + blocks(*C4))
write("hpack", "size_update_then_field", bytes([2]) + blocks(bytes.fromhex("3f e1 1f 82".replace(" ", ""))))
write("hpack", "table_limit_0", bytes([0]) + blocks(bytes.fromhex("20") + C3[0]))
write("hpack", "never_indexed", bytes([1]) + blocks(b"\x10\x08password\x06secret"))
write("hpack", "bomb", bytes([2]) + blocks(b"\x40\x06x-bomb\x7f\x51" + b"b" * 200, b"\xbe" * 100))
enc = hpack.Encoder()
write("hpack", "browser_request", bytes([2]) + blocks(enc.encode([
    (":method", "GET"), (":scheme", "https"), (":authority", "shop.example"), (":path", "/cart?id=7"),
    ("accept", "text/html"), ("accept-encoding", "gzip, br"), ("cookie", "a=1; b=2"),
    ("user-agent", "Mozilla/5.0")]), enc.encode([
    (":method", "GET"), (":scheme", "https"), (":authority", "shop.example"), (":path", "/style.css"),
    ("accept", "text/css"), ("cookie", "a=1; b=2"), ("user-agent", "Mozilla/5.0")])))

# --- h2: knob byte (split seed; bit 0 = answer requests), then frames after the preface ---
def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WU, CONT = range(10)
enc = hpack.Encoder()
REQ = [(":method", "GET"), (":scheme", "https"), (":authority", "a.example"), (":path", "/")]
settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 4096) + struct.pack(">HI", 4, 65535))
write("h2", "get", bytes([1]) + settings + frame(HEADERS, 0x5, 1, enc.encode(REQ)))
enc = hpack.Encoder()
post = [(":method", "POST"), (":scheme", "https"), (":authority", "a.example"), (":path", "/up"),
        ("content-length", "5")]
write("h2", "post_with_body", bytes([1]) + settings + frame(HEADERS, 0x4, 1, enc.encode(post))
      + frame(DATA, 0, 1, b"hel") + frame(DATA, 0x1, 1, b"lo") + frame(WU, 0, 0, struct.pack(">I", 65535)))
enc = hpack.Encoder()
block = enc.encode(REQ + [("x-long", "v" * 40)])
write("h2", "continuation", bytes([3]) + frame(HEADERS, 0x1, 1, block[:10]) + frame(CONT, 0, 1, block[10:30])
      + frame(CONT, 0x4, 1, block[30:]))
enc = hpack.Encoder()
write("h2", "rapid_reset", bytes([5]) + b"".join(
    frame(HEADERS, 0x5, 1 + 2 * i, enc.encode(REQ)) + frame(RST, 0, 1 + 2 * i, struct.pack(">I", 8)) for i in range(4)))
write("h2", "control_frames", bytes([0]) + frame(PING, 0, 0, b"12345678") + frame(SETTINGS, 1, 0)
      + frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15)) + frame(WU, 0, 0, struct.pack(">I", 1))
      + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
enc = hpack.Encoder()
write("h2", "padded_priority_headers", bytes([1]) + frame(HEADERS, 0x5 | 0x8 | 0x20, 1,
      bytes([3]) + struct.pack(">IB", 0, 200) + enc.encode(REQ) + b"\0\0\0"))
enc = hpack.Encoder()
write("h2", "trailers", bytes([1]) + frame(HEADERS, 0x4, 1, enc.encode(post[:4])) + frame(DATA, 0, 1, b"abc")
      + frame(HEADERS, 0x5, 1, enc.encode([("x-checksum", "1")])))

# --- classify: knob byte, then an Ethernet frame ---
NODE_MAC, PEER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
def eth(ethertype, payload):
    return NODE_MAC + PEER_MAC + struct.pack(">H", ethertype) + payload
def ipv4(proto, l4, src=bytes([10, 200, 0, 2]), dst=bytes([10, 200, 0, 1])):
    return struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0) + src + dst + l4
def tcp(sport, dport, flags):
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
def ipv6(nh, l4):
    return struct.pack(">IHBB", 6 << 28, len(l4), nh, 64) + b"\xfd" + b"\0" * 14 + b"\x02" + b"\xfd" + b"\0" * 14 + b"\x01" + l4
udp = struct.pack(">HHHH", 40000, 5353, 12, 0) + b"abcd"
for name, knob, fr in [
    ("syn_80", 4, eth(0x0800, ipv4(6, tcp(40000, 80, 0x02)))),
    ("ack_443", 0, eth(0x0800, ipv4(6, tcp(40000, 443, 0x10)))),
    ("xmas", 0, eth(0x0800, ipv4(6, tcp(40000, 80, 0x29)))),
    ("udp_5353", 1, eth(0x0800, ipv4(17, udp))),
    ("icmp_echo", 0, eth(0x0800, ipv4(1, b"\x08\x00\x00\x00\x00\x01\x00\x01"))),
    ("ipv6_syn_443", 8, eth(0x86DD, ipv6(6, tcp(40000, 443, 0x02)))),
    ("ipv6_hop_by_hop_tcp", 0, eth(0x86DD, ipv6(0, bytes([6, 0]) + b"\0" * 6 + tcp(40000, 80, 0x10)))),
    ("vlan_syn", 0, NODE_MAC + PEER_MAC + b"\x81\x00\x00\x05" + b"\x08\x00" + ipv4(6, tcp(1, 80, 0x02))),
    ("arp", 0, eth(0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01" + PEER_MAC + bytes([10, 200, 0, 2]) + b"\0" * 6 + bytes([10, 200, 0, 1]))),
    ("fragment", 0, eth(0x0800, struct.pack(">BBHHHBBH", 0x45, 0, 28, 1, 0x0010, 64, 6, 0) + bytes([10, 200, 0, 2, 10, 200, 0, 1]) + b"\0" * 8)),
    ("blocked_source", 2, eth(0x0800, ipv4(6, tcp(40000, 80, 0x02), src=bytes([192, 168, 77, 5])))),
]:
    write("classify", name, bytes([knob]) + fr)

# --- proxy: knob byte (0 as is, 1 v2 signature prepended, 2 "PROXY " prepended) ---
V2 = b"\r\n\r\n\x00\r\nQUIT\n"
write("proxy", "v1_tcp4", b"\x00PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n")
write("proxy", "v1_tcp6", b"\x02TCP6 2001:db8::1 ::1 56324 443\r\n")
write("proxy", "v1_unknown", b"\x00PROXY UNKNOWN\r\n")
write("proxy", "v2_tcp4", b"\x01" + b"\x21\x11" + struct.pack(">H", 12) + bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 56324, 443))
write("proxy", "v2_tcp6_tlv", b"\x01" + b"\x21\x21" + struct.pack(">H", 36 + 7) + b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x01"
      + b"\0" * 15 + b"\x01" + struct.pack(">HH", 1, 443) + b"\x04" + struct.pack(">H", 4) + b"abcd")
write("proxy", "v2_local", b"\x00" + V2 + b"\x20\x00\x00\x00")
write("proxy", "tls_client_hello", b"\x00\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03")

# --- config: the repository's own example configurations plus small ones ---
# The README's example configurations (fenced `toml` blocks), all valid.
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(repo, "README.md")) as f:
    readme = f.read()
for i, part in enumerate(readme.split("```toml\n")[1:]):
    write("config", f"readme_{i + 1}", part.split("```")[0])
write("config", "minimal", '[server]\nhttp = ["127.0.0.1:8080"]\n\n[[apps]]\nname = "demo"\n'
      'domains = ["demo.localhost"]\nbackends = ["127.0.0.1:9001"]\n')
write("config", "limits_tls_xdp", '''[server]
http = ["127.0.0.1:8080"]
https = ["127.0.0.1:8443"]
threads = 2

[tls]
cert_dir = "/etc/portier/certs"
http2 = true

[limits]
max_header_section = 16384
keepalive_timeout_ms = 30000
h2_stall_timeout_ms = 5000

[xdp]
interfaces = ["eth0"]
mode = "native"
service_ports = [80, 443]
syn_rate = 100
syn_burst = 200
blocklist = ["192.168.77.0/24", "fd77::/16"]

[[apps]]
name = "shop"
domains = ["shop.example", "*.shop.example"]
backends = ["10.0.3.17:8080", "[fd00::17]:8080"]
''')
