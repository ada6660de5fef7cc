#!/usr/bin/python3
"""mini-acme: a small ACME server for Portier's tests, covering what Debian's
Pebble 2.4 lacks: ACME Renewal Information (RFC 9773: `renewalInfo`, the
`replaces` field of newOrder), profiles (`meta.profiles`, newOrder
`profile`), and rate limiting (429 + Retry-After, `rateLimited`).

Enough of RFC 8555 for a real client (instant-acme 0.8.5) to complete
orders: flattened JWS with ES256 only (RFC 7515; `jwk` for newAccount,
`kid` otherwise), checked nonce and `url`, accounts, orders,
authorizations, http-01 and dns-01 challenges, finalize with a CSR,
certificate download as a PEM chain, revokeCert.

What it is NOT (on purpose, to stay small):
  * plain HTTP only (no TLS), 127.0.0.1 only; no EAB, no keyChange
    (answers 400 malformed), no pre-authorization (newAuthz), no IP
    identifiers (400 unsupportedIdentifier), no tls-alpn-01.
  * http-01 is validated FOR REAL, in a background thread after the
    challenge POST: GET http://127.0.0.1:<http_port>/.well-known/acme-challenge/<token>
    with `Host: <identifier>`; the body (trailing whitespace ignored,
    RFC 8555 section 8.3) must equal `<token>.<JWK thumbprint>`
    (RFC 7638). Redirects are NOT followed (a real CA would follow them).
  * dns-01 is NOT validated: it turns valid when the client answers it.
  * `replaces` (RFC 9773 section 5): the named certificate must exist, be
    issued to the same account and share an identifier with the order;
    a certificate counts as replaced once an order naming it in `replaces`
    is finalized (a valid order), as Let's Encrypt does; a second such
    newOrder then gets 409 `alreadyReplaced`. Control can force that answer.

Usage: mini_acme.py PORT HTTP_PORT   (PORT 0 picks a free port)
Prints `mini-acme listening on 127.0.0.1:PORT` on stdout once ready.
With MINI_ACME_EXIT_ON_STDIN_EOF=1 it exits when stdin closes, so it dies
with a test process that is killed before it can clean up.

Control and observation (plain HTTP, same port, no JWS):
  POST /_control  JSON object, any subset of:
    "window": null (back to the default: the last third of the lifetime)
            | {"start": RFC3339, "end": RFC3339}
            | {"start_offset_secs": int, "end_offset_secs": int}  (from now, at request time)
    "ari_retry_after_secs": int        Retry-After of renewal-info answers (default 21600)
    "force_already_replaced": bool     the next newOrder carrying `replaces` gets 409
    "rate_limit": {"count": N, "retry_after": S, "endpoint": "newOrder"|"newAccount"|"finalize"}
                                       the next N requests to endpoint (default newOrder)
                                       get 429, Retry-After: S, a rateLimited problem
    "validity_secs": int | null        certificate lifetime, overriding the profile's
    "validation_delay_ms": int         pause before validating a challenge (default 0)
    "auto_valid": bool                 http-01 turns valid without fetching
  GET /_log   JSON list of events, in order, each with "event" and "at"
              (unix seconds, float): newAccount, newOrder {identifiers, profile,
              replaces, answered_status}, challenge {type, identifier, result,
              detail}, finalize {order, names, answered_status, certid,
              not_after}, renewalInfo {certid, answered_status, start, end,
              retry_after}, revokeCert, control.
  GET /_ca    the root CA certificate (PEM); issued chains are leaf + intermediate.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ERR = "urn:ietf:params:acme:error:"
PROFILES = {
    "classic": ("90-day certificates (the default)", 90 * 86400),
    "shortlived": ("6-day certificates", 6 * 86400),
}
DEFAULT_PROFILE = "classic"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def parse_rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def serial_der_bytes(serial):
    # The INTEGER's content octets: minimal two's complement, so a leading
    # 0x00 when the top bit is set (RFC 9773 section 4.1).
    return serial.to_bytes((serial.bit_length() + 8) // 8, "big")


def jwk_thumbprint(jwk):
    # RFC 7638 section 3: required members only, lexicographic order, no spaces.
    canon = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        sort_keys=True,
        separators=(",", ":"),
    )
    return b64u(hashlib.sha256(canon.encode()).digest())


class Problem(Exception):
    def __init__(self, status, kind, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}


class Ca:
    """A root and an intermediate (EC P-256); leaves are signed by the intermediate."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mini-acme root")])
        self.root = self._ca_cert(root_name, root_name, self.root_key.public_key(),
                                  self.root_key, now, None)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        int_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "mini-acme intermediate")]
        )
        self.inter = self._ca_cert(int_name, root_name, self.int_key.public_key(),
                                   self.root_key, now, self.root)
        self.int_ski = x509.SubjectKeyIdentifier.from_public_key(self.int_key.public_key())

    @staticmethod
    def _ca_cert(subject, issuer, public_key, signing_key, now, issuer_cert):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if issuer_cert is not None:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
        return builder.sign(signing_key, hashes.SHA256())

    def issue(self, public_key, names, lifetime):
        now = time.time()
        not_before = now - 60
        not_after = now + lifetime
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.inter.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.timezone.utc))
            .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.timezone.utc))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self.int_ski),
                critical=False,
            )
            .sign(self.int_key, hashes.SHA256())
        )
        certid = b64u(self.int_ski.digest) + "." + b64u(serial_der_bytes(serial))
        return cert, certid, not_before, not_after

    def pem(self, cert):
        return cert.public_bytes(serialization.Encoding.PEM).decode()


class State:
    def __init__(self, base, http_port):
        self.base = base
        self.http_port = http_port
        self.lock = threading.Lock()
        self.ca = Ca()
        self.nonces = set()
        self.accounts = {}  # id -> {"jwk", "thumb", "contact", "orders": [ids]}
        self.by_thumb = {}
        self.orders = {}  # id -> dict
        self.authzs = {}
        self.challenges = {}
        self.certs = {}  # cert id -> {"pem", "certid", "account", "names", ...}
        self.by_certid = {}
        self.log = []
        # Knobs set by POST /_control.
        self.window = None
        self.ari_retry_after = 21600
        self.force_already_replaced = False
        self.rate_limits = {}  # endpoint -> [count, retry_after]
        self.validity_secs = None
        self.validation_delay = 0.0
        self.auto_valid = False

    def url(self, path):
        return self.base + path

    def new_nonce(self):
        nonce = b64u(secrets.token_bytes(16))
        with self.lock:
            self.nonces.add(nonce)
        return nonce

    def event(self, name, **fields):
        fields["event"] = name
        fields["at"] = time.time()
        with self.lock:
            self.log.append(fields)


def new_id():
    return b64u(secrets.token_bytes(9))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mini-acme"
    state = None  # set in main()

    def log_message(self, *args):
        if os.environ.get("MINI_ACME_VERBOSE"):
            super().log_message(*args)

    # ---- plumbing -------------------------------------------------------

    def send(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, indent=1).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Replay-Nonce", self.state.new_nonce())
        self.send_header("Cache-Control", "no-store")
        self.send_header("Link", '<%s>;rel="index"' % self.state.url("/directory"))
        if body or self.command != "HEAD":
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_problem(self, p):
        body = {"type": ERR + p.kind, "detail": p.detail, "status": p.status}
        self.send(p.status, body, "application/problem+json", p.headers)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # ---- GET / HEAD ---------------------------------------------------------

    def do_HEAD(self):
        if self.path == "/nonce":
            self.send(200)
        else:
            self.send(405)

    def do_GET(self):
        st = self.state
        path = self.path
        try:
            if path == "/directory":
                self.send(200, {
                    "newNonce": st.url("/nonce"),
                    "newAccount": st.url("/new-account"),
                    "newOrder": st.url("/new-order"),
                    "revokeCert": st.url("/revoke-cert"),
                    "keyChange": st.url("/key-change"),
                    "renewalInfo": st.url("/renewal-info"),
                    "meta": {
                        "termsOfService": st.url("/terms"),
                        "profiles": {k: v[0] for k, v in PROFILES.items()},
                    },
                })
            elif path == "/nonce":
                self.send(204)
            elif path.startswith("/renewal-info/"):
                self.renewal_info(path[len("/renewal-info/"):])
            elif path == "/_log":
                with st.lock:
                    events = list(st.log)
                self.send(200, events)
            elif path == "/_ca":
                self.send(200, st.ca.pem(st.ca.root), "application/x-pem-file")
            else:
                raise Problem(404, "malformed", "no such resource: " + path)
        except Problem as p:
            self.send_problem(p)

    def renewal_info(self, certid):
        # RFC 9773 section 4.2: unauthenticated GET; the window in RFC 3339.
        st = self.state
        with st.lock:
            cert = st.by_certid.get(certid)
            window = st.window
            retry_after = st.ari_retry_after
        if cert is None:
            st.event("renewalInfo", certid=certid, answered_status=404)
            raise Problem(404, "malformed", "unknown certificate " + certid)
        now = time.time()
        if window is None:
            life = cert["not_after"] - cert["not_before"]
            start = cert["not_before"] + life * 2 / 3
            end = start + life / 9
        elif "start" in window:
            start, end = parse_rfc3339(window["start"]), parse_rfc3339(window["end"])
        else:
            start = now + window.get("start_offset_secs", 0)
            end = now + window.get("end_offset_secs", 3600)
        body = {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
        st.event("renewalInfo", certid=certid, answered_status=200, start=rfc3339(start),
                 end=rfc3339(end), retry_after=retry_after)
        self.send(200, body, headers={"Retry-After": str(retry_after)})

    # ---- POST ---------------------------------------------------------------

    def do_POST(self):
        body = self.read_body()
        try:
            if self.path == "/_control":
                self.control(json.loads(body or b"{}"))
                return
            if self.headers.get("Content-Type") != "application/jose+json":
                raise Problem(415, "malformed", "Content-Type must be application/jose+json")
            jws = self.verify_jws(body)
            self.dispatch(jws)
        except Problem as p:
            self.send_problem(p)

    def control(self, ctl):
        st = self.state
        with st.lock:
            if "window" in ctl:
                st.window = ctl["window"]
            if "ari_retry_after_secs" in ctl:
                st.ari_retry_after = int(ctl["ari_retry_after_secs"])
            if "force_already_replaced" in ctl:
                st.force_already_replaced = bool(ctl["force_already_replaced"])
            if "rate_limit" in ctl:
                rl = ctl["rate_limit"]
                st.rate_limits[rl.get("endpoint", "newOrder")] = [
                    int(rl["count"]), int(rl["retry_after"])
                ]
            if "validity_secs" in ctl:
                v = ctl["validity_secs"]
                st.validity_secs = None if v is None else int(v)
            if "validation_delay_ms" in ctl:
                st.validation_delay = int(ctl["validation_delay_ms"]) / 1000
            if "auto_valid" in ctl:
                st.auto_valid = bool(ctl["auto_valid"])
        st.event("control", **{"control": ctl})
        self.send(200, {"ok": True})

    def verify_jws(self, body):
        # RFC 8555 section 6.2: flattened JWS, protected alg/nonce/url and
        # exactly one of jwk/kid.
        st = self.state
        try:
            jws = json.loads(body)
            protected = json.loads(unb64u(jws["protected"]))
            payload_b64 = jws["payload"]
            signature = unb64u(jws["signature"])
        except (ValueError, KeyError, TypeError) as e:
            raise Problem(400, "malformed", "bad JWS: %s" % e)
        if protected.get("alg") != "ES256":
            raise Problem(400, "badSignatureAlgorithm", "only ES256 is supported")
        nonce = protected.get("nonce")
        with st.lock:
            fresh = nonce in st.nonces
            st.nonces.discard(nonce)
        if not fresh:
            raise Problem(400, "badNonce", "unknown or reused nonce")
        if protected.get("url") != st.url(self.path):
            raise Problem(400, "unauthorized", "JWS url %r is not the request URL %r"
                          % (protected.get("url"), st.url(self.path)))
        if ("jwk" in protected) == ("kid" in protected):
            raise Problem(400, "malformed", "exactly one of jwk and kid")
        account = None
        if "jwk" in protected:
            jwk = protected["jwk"]
        else:
            kid = protected["kid"]
            prefix = st.url("/acct/")
            with st.lock:
                account = st.accounts.get(kid[len(prefix):]) if kid.startswith(prefix) else None
            if account is None:
                raise Problem(400, "accountDoesNotExist", "unknown account " + kid)
            jwk = account["jwk"]
        try:
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                raise ValueError("only EC P-256 keys")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(unb64u(jwk["x"]), "big"),
                int.from_bytes(unb64u(jwk["y"]), "big"),
                ec.SECP256R1(),
            )
            key = numbers.public_key()
            if len(signature) != 64:
                raise ValueError("ES256 signature must be 64 bytes (r || s)")
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, (jws["protected"] + "." + payload_b64).encode(),
                       ec.ECDSA(hashes.SHA256()))
        except (ValueError, KeyError, InvalidSignature) as e:
            raise Problem(400, "malformed", "JWS signature does not verify: %r" % e)
        payload = json.loads(unb64u(payload_b64)) if payload_b64 else None
        return {"jwk": jwk, "account": account, "payload": payload}

    def dispatch(self, jws):
        path = self.path
        if path == "/new-account":
            return self.new_account(jws)
        if jws["account"] is None:
            raise Problem(400, "malformed", "this resource needs a kid")
        routes = [
            ("/new-order", self.new_order),
            ("/revoke-cert", self.revoke_cert),
            ("/key-change", self.key_change),
            ("/acct/", self.account_object),
            ("/order/", self.order_object),
            ("/finalize/", self.finalize),
            ("/authz/", self.authz_object),
            ("/chall/", self.challenge),
            ("/cert/", self.certificate),
        ]
        for prefix, handler in routes:
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                return handler(jws, path[len(prefix):])
        raise Problem(404, "malformed", "no such resource: " + path)

    def take_rate_limit(self, endpoint):
        st = self.state
        with st.lock:
            rl = st.rate_limits.get(endpoint)
            if not rl or rl[0] <= 0:
                return None
            rl[0] -= 1
            return rl[1]

    def rate_limited(self, retry_after, what):
        return Problem(429, "rateLimited", "too many %s requests (mini-acme control)" % what,
                       {"Retry-After": str(retry_after)})

    # ---- accounts -------------------------------------------------------------

    def account_json(self, acct_id):
        acct = self.state.accounts[acct_id]
        return {"status": "valid", "contact": acct["contact"],
                "orders": self.state.url("/orders/" + acct_id)}

    def new_account(self, jws):
        st = self.state
        payload = jws["payload"] or {}
        thumb = jwk_thumbprint(jws["jwk"])
        with st.lock:
            existing = st.by_thumb.get(thumb)
        if existing is not None:
            st.event("newAccount", answered_status=200, existing=True)
            self.send(200, self.account_json(existing),
                      headers={"Location": st.url("/acct/" + existing)})
            return
        if payload.get("onlyReturnExisting"):
            st.event("newAccount", answered_status=400, existing=False)
            raise Problem(400, "accountDoesNotExist", "no account for this key")
        retry_after = self.take_rate_limit("newAccount")
        if retry_after is not None:
            st.event("newAccount", answered_status=429, retry_after=retry_after)
            raise self.rate_limited(retry_after, "newAccount")
        acct_id = new_id()
        with st.lock:
            st.accounts[acct_id] = {"jwk": jws["jwk"], "thumb": thumb, "id": acct_id,
                                    "contact": payload.get("contact", []), "orders": []}
            st.by_thumb[thumb] = acct_id
        st.event("newAccount", answered_status=201, existing=False,
                 contact=payload.get("contact", []))
        self.send(201, self.account_json(acct_id),
                  headers={"Location": st.url("/acct/" + acct_id)})

    def account_object(self, jws, acct_id):
        if acct_id != jws["account"]["id"]:
            raise Problem(403, "unauthorized", "not your account")
        payload = jws["payload"]
        if payload and "contact" in payload:
            with self.state.lock:
                jws["account"]["contact"] = payload["contact"]
        self.send(200, self.account_json(acct_id))

    def key_change(self, jws, _rest):
        raise Problem(400, "malformed", "keyChange is not implemented by mini-acme")

    # ---- orders ---------------------------------------------------------------

    def order_json(self, order):
        st = self.state
        with st.lock:
            statuses = [st.authzs[a]["status"] for a in order["authzs"]]
            if order["status"] == "pending":
                if "invalid" in statuses:
                    order["status"] = "invalid"
                elif all(s == "valid" for s in statuses):
                    order["status"] = "ready"
            body = {
                "status": order["status"],
                "expires": rfc3339(order["expires"]),
                "identifiers": order["identifiers"],
                "authorizations": [st.url("/authz/" + a) for a in order["authzs"]],
                "finalize": st.url("/finalize/" + order["id"]),
            }
            if order["profile"] is not None:
                body["profile"] = order["profile"]
            if order["replaces"] is not None:
                body["replaces"] = order["replaces"]
            if order["cert"] is not None:
                body["certificate"] = st.url("/cert/" + order["cert"])
            if order["status"] == "invalid":
                body["error"] = {"type": ERR + "unauthorized",
                                 "detail": "an authorization failed"}
        return body

    def new_order(self, jws, _rest):
        st = self.state
        payload = jws["payload"] or {}
        account = jws["account"]
        identifiers = payload.get("identifiers") or []
        profile = payload.get("profile")
        replaces = payload.get("replaces")

        def answer(status, **extra):
            st.event("newOrder", identifiers=identifiers, profile=profile, replaces=replaces,
                     answered_status=status, **extra)

        retry_after = self.take_rate_limit("newOrder")
        if retry_after is not None:
            answer(429, retry_after=retry_after)
            raise self.rate_limited(retry_after, "newOrder")
        try:
            if not identifiers:
                raise Problem(400, "malformed", "no identifiers")
            for ident in identifiers:
                if ident.get("type") != "dns":
                    raise Problem(400, "unsupportedIdentifier",
                                  "only dns identifiers: %r" % ident)
            if profile is not None and profile not in PROFILES:
                raise Problem(400, "invalidProfile", "unknown profile %r" % profile)
            if replaces is not None:
                self.check_replaces(account, identifiers, replaces)
        except Problem as p:
            answer(p.status, problem=p.kind)
            raise
        order_id = new_id()
        authz_ids = []
        with st.lock:
            for ident in identifiers:
                value = ident["value"]
                wildcard = value.startswith("*.")
                base = value[2:] if wildcard else value
                authz_id = new_id()
                token = b64u(secrets.token_bytes(32))
                types = ["dns-01"] if wildcard else ["http-01", "dns-01"]
                chall_ids = []
                for ctype in types:
                    chall_id = new_id()
                    st.challenges[chall_id] = {"id": chall_id, "type": ctype, "token": token,
                                               "status": "pending", "authz": authz_id,
                                               "error": None, "validated": None}
                    chall_ids.append(chall_id)
                st.authzs[authz_id] = {"id": authz_id, "identifier": base, "wildcard": wildcard,
                                       "status": "pending", "challenges": chall_ids,
                                       "account": account["id"], "expires": time.time() + 86400}
                authz_ids.append(authz_id)
            order = {"id": order_id, "account": account["id"], "identifiers": identifiers,
                     "profile": profile, "replaces": replaces, "authzs": authz_ids,
                     "status": "pending", "cert": None, "expires": time.time() + 86400}
            st.orders[order_id] = order
            account["orders"].append(order_id)
        answer(201, order=st.url("/order/" + order_id))
        self.send(201, self.order_json(order), headers={"Location": st.url("/order/" + order_id)})

    def check_replaces(self, account, identifiers, replaces):
        # RFC 9773 section 5.
        st = self.state
        with st.lock:
            cert = st.by_certid.get(replaces)
            forced = st.force_already_replaced
            st.force_already_replaced = False
            replaced_by = None
            for order in st.orders.values():
                if order["replaces"] == replaces and order["status"] == "valid":
                    replaced_by = order["id"]
        if forced:
            raise Problem(409, "alreadyReplaced",
                          "certificate %s already replaced (forced by control)" % replaces)
        if cert is None:
            raise Problem(400, "malformed", "replaces: unknown certificate " + replaces)
        if cert["account"] != account["id"]:
            raise Problem(403, "unauthorized", "replaces: certificate of another account")
        if not set(i["value"] for i in identifiers) & set(cert["names"]):
            raise Problem(400, "malformed", "replaces: no identifier in common")
        if replaced_by is not None:
            raise Problem(409, "alreadyReplaced",
                          "certificate %s was already replaced by order %s"
                          % (replaces, replaced_by))

    def own(self, table, obj_id, account):
        with self.state.lock:
            obj = table.get(obj_id)
        if obj is None:
            raise Problem(404, "malformed", "no such object " + obj_id)
        owner = obj.get("account")
        if owner is None and "authz" in obj:
            owner = self.state.authzs[obj["authz"]]["account"]
        if owner != account["id"]:
            raise Problem(403, "unauthorized", "not your object")
        return obj

    def order_object(self, jws, order_id):
        order = self.own(self.state.orders, order_id, jws["account"])
        self.send(200, self.order_json(order))

    # ---- authorizations and challenges ------------------------------------------

    def challenge_json(self, chall):
        body = {"type": chall["type"], "url": self.state.url("/chall/" + chall["id"]),
                "token": chall["token"], "status": chall["status"]}
        if chall["validated"] is not None:
            body["validated"] = rfc3339(chall["validated"])
        if chall["error"] is not None:
            body["error"] = chall["error"]
        return body

    def authz_object(self, jws, authz_id):
        st = self.state
        authz = self.own(st.authzs, authz_id, jws["account"])
        with st.lock:
            body = {
                "identifier": {"type": "dns", "value": authz["identifier"]},
                "status": authz["status"],
                "expires": rfc3339(authz["expires"]),
                "challenges": [self.challenge_json(st.challenges[c])
                               for c in authz["challenges"]],
            }
            if authz["wildcard"]:
                body["wildcard"] = True
        self.send(200, body)

    def challenge(self, jws, chall_id):
        st = self.state
        chall = self.own(st.challenges, chall_id, jws["account"])
        if jws["payload"] is not None:  # {} = "ready"; POST-as-GET only looks
            with st.lock:
                start = chall["status"] == "pending"
                if start:
                    chall["status"] = "processing"
                    st.authzs[chall["authz"]]["status"] = "pending"
            if start:
                thumb = jws["account"]["thumb"]
                threading.Thread(target=self.validate, args=(chall, thumb), daemon=True).start()
        with st.lock:
            body = self.challenge_json(chall)
        self.send(200, body)

    def validate(self, chall, thumb):
        # RFC 8555 section 8.3 (http-01), 8.4 (dns-01: not checked here).
        st = self.state
        if st.validation_delay:
            time.sleep(st.validation_delay)
        authz = st.authzs[chall["authz"]]
        expected = chall["token"] + "." + thumb
        ok, detail = True, None
        if chall["type"] == "http-01" and not st.auto_valid:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", st.http_port, timeout=5)
                conn.request("GET", "/.well-known/acme-challenge/" + chall["token"],
                             headers={"Host": authz["identifier"], "User-Agent": "mini-acme VA",
                                      "Accept": "*/*"})
                resp = conn.getresponse()
                got = resp.read(4096).decode("utf-8", "replace").rstrip()
                conn.close()
                if resp.status != 200:
                    ok, detail = False, "HTTP %d from 127.0.0.1:%d" % (resp.status, st.http_port)
                elif got != expected:
                    ok, detail = False, "key authorization %r, expected %r" % (got, expected)
            except OSError as e:
                ok, detail = False, "fetching http-01 from 127.0.0.1:%d: %s" % (st.http_port, e)
        with st.lock:
            if ok:
                chall["status"] = "valid"
                chall["validated"] = time.time()
                authz["status"] = "valid"
            else:
                chall["status"] = "invalid"
                chall["error"] = {"type": ERR + ("connection" if "fetching" in detail
                                                 else "unauthorized"),
                                  "detail": detail, "status": 403}
                authz["status"] = "invalid"
        st.event("challenge", type=chall["type"], identifier=authz["identifier"],
                 token=chall["token"], result=chall["status"], detail=detail)

    # ---- finalize and certificates ------------------------------------------------

    def finalize(self, jws, order_id):
        st = self.state
        order = self.own(st.orders, order_id, jws["account"])
        self.order_json(order)  # refresh pending -> ready
        retry_after = self.take_rate_limit("finalize")
        if retry_after is not None:
            st.event("finalize", order=order_id, answered_status=429, retry_after=retry_after)
            raise self.rate_limited(retry_after, "finalize")
        if order["status"] != "ready":
            st.event("finalize", order=order_id, answered_status=403, status=order["status"])
            raise Problem(403, "orderNotReady", "order is %s" % order["status"])
        try:
            csr = x509.load_der_x509_csr(unb64u((jws["payload"] or {}).get("csr", "")))
            if not csr.is_signature_valid:
                raise ValueError("CSR signature does not verify")
            try:
                san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                names = san.value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                names = []
            cns = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        except ValueError as e:
            st.event("finalize", order=order_id, answered_status=400, problem="badCSR")
            raise Problem(400, "badCSR", "CSR does not parse: %s" % e)
        wanted = sorted(i["value"].lower() for i in order["identifiers"])
        got = sorted(set(n.lower() for n in names + cns))
        if got != wanted:
            st.event("finalize", order=order_id, answered_status=400, problem="badCSR",
                     names=got)
            raise Problem(400, "badCSR", "CSR names %r are not the order's %r" % (got, wanted))
        lifetime = st.validity_secs or PROFILES[order["profile"] or DEFAULT_PROFILE][1]
        names = [i["value"] for i in order["identifiers"]]
        cert, certid, not_before, not_after = st.ca.issue(csr.public_key(), names, lifetime)
        cert_id = new_id()
        with st.lock:
            st.certs[cert_id] = {"pem": st.ca.pem(cert) + st.ca.pem(st.ca.inter),
                                 "certid": certid, "account": order["account"], "names": names,
                                 "not_before": not_before, "not_after": not_after,
                                 "revoked": False}
            st.by_certid[certid] = st.certs[cert_id]
            order["cert"] = cert_id
            order["status"] = "valid"
        st.event("finalize", order=order_id, answered_status=200, names=names, certid=certid,
                 profile=order["profile"], replaces=order["replaces"],
                 not_after=rfc3339(not_after))
        self.send(200, self.order_json(order), headers={"Location": st.url("/order/" + order_id)})

    def certificate(self, jws, cert_id):
        with self.state.lock:
            cert = self.state.certs.get(cert_id)
        if cert is None or cert["account"] != jws["account"]["id"]:
            raise Problem(404, "malformed", "no such certificate")
        self.send(200, cert["pem"], "application/pem-certificate-chain")

    def revoke_cert(self, jws, _rest):
        st = self.state
        try:
            der = unb64u(jws["payload"]["certificate"])
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, KeyError, TypeError) as e:
            raise Problem(400, "malformed", "revokeCert: %s" % e)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        certid = b64u(aki.key_identifier) + "." + b64u(serial_der_bytes(cert.serial_number))
        with st.lock:
            known = st.by_certid.get(certid)
            if known is not None:
                known["revoked"] = True
        st.event("revokeCert", certid=certid, reason=jws["payload"].get("reason"),
                 answered_status=200 if known else 404)
        if known is None:
            raise Problem(404, "malformed", "unknown certificate")
        self.send(200)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mini_acme.py PORT HTTP_PORT")
    port, http_port = int(sys.argv[1]), int(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    Handler.state = State("http://127.0.0.1:%d" % port, http_port)
    if os.environ.get("MINI_ACME_EXIT_ON_STDIN_EOF") == "1":
        def exit_on_eof():
            sys.stdin.buffer.read()
            os._exit(0)

        threading.Thread(target=exit_on_eof, daemon=True).start()
    print("mini-acme listening on 127.0.0.1:%d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
