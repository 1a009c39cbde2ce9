"""AMP stand-in for the end-to-end tests: judges every request's SigV4 signature with botocore's
SigV4Auth — an implementation independent of the proxy's aws-sigv4 — then relays the request to a
real Prometheus remote-write receiver and its answer back.

Checks, in order (the first failure answers 403 with the reason, as AMP would):
  Authorization is AWS4-HMAC-SHA256 with scope <key>/<date>/<region>/aps/aws4_request;
  the key is temporary credentials moto minted by AssumeRole (read from /moto-api/data.json), and
  X-Amz-Security-Token is the token minted with it; X-Amz-Date is within 5 minutes and matches the
  scope date; X-Amz-Content-SHA256 (if sent) is the SHA-256 of the body actually received; the
  signature recomputed over exactly the request's SignedHeaders equals the one sent.

Query API requests (GET, or POST with a form body) on /workspaces/<id>/api/v1/<endpoint> are
verified the same way — the canonical query string is botocore's, from the query string exactly as
received, and a POST's body hash is checked — then relayed to the receiver's /api/v1/<endpoint>
with the same query string and body, and its answer streamed back as it arrives (Content-Encoding
such as gzip untouched).

Usage: amp_standin.py --moto URL --receiver URL [--port N] [--region R] [--wrong-secret]
Prints {"port": N} on stdout once listening. GET /-/stats returns counts, rejection reasons and
the last accepted request's headers; GET /-/last-body returns that request's body.
"""

import argparse
import datetime
import hashlib
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

FORWARDED_REQUEST_HEADERS = [
    "Content-Type",
    "Content-Encoding",
    "User-Agent",
    "X-Prometheus-Remote-Write-Version",
]
RELAYED_RESPONSE_HEADERS = [
    "Content-Type",
    "Retry-After",
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
]
MAX_SKEW = datetime.timedelta(minutes=5)
QUERY_PATH = re.compile(r"^/workspaces/[^/?]+(/api/v1/(?!remote_write\b)[^?]+)(\?.*)?$")
QUERY_REQUEST_HEADERS = ["Accept", "Accept-Encoding", "Content-Type", "User-Agent"]
QUERY_RESPONSE_HEADERS = ["Content-Type", "Content-Encoding", "Vary", "Cache-Control"]


class Reject(Exception):
    pass


class ExactHeadersSigV4(SigV4Auth):
    """botocore's signer, but over exactly the headers the request says it signed (botocore would
    otherwise skip user-agent, expect, ... and invent host)."""

    def __init__(self, credentials, service, region, signed_names, received):
        super().__init__(credentials, service, region)
        self._signed_names = signed_names
        self._received = received

    def headers_to_sign(self, request):
        headers = HTTPHeaders()
        for name in self._signed_names:
            values = self._received.get_all(name)
            if not values:
                raise Reject(f"signed header {name!r} not in the request")
            for v in values:
                headers[name] = v
        return headers


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.accepted = 0
        self.queries = 0
        self.rejected = 0
        self.reasons = []
        self.last_headers = {}
        self.last_body = b""
        self.temp_credentials = {}

    def credentials_for(self, access_key):
        with self.lock:
            known = self.temp_credentials.get(access_key)
        if known is None:
            with urllib.request.urlopen(f"{self.args.moto}/moto-api/data.json") as resp:
                data = json.load(resp)
            minted = {
                r["access_key_id"]: (r["secret_access_key"], r["session_token"])
                for r in data.get("sts", {}).get("AssumedRole", [])
            }
            with self.lock:
                self.temp_credentials.update(minted)
                known = self.temp_credentials.get(access_key)
        return known


def verify(state, method, path, headers, body):
    auth = headers.get("Authorization")
    if not auth or not auth.startswith("AWS4-HMAC-SHA256 "):
        raise Reject("missing or non-SigV4 Authorization header")
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    try:
        access_key, date, region, service, terminator = fields["Credential"].split("/")
        signed_names = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        raise Reject(f"malformed Authorization header fields {sorted(fields)}")
    if (region, service, terminator) != (state.args.region, "aps", "aws4_request"):
        raise Reject(f"credential scope {region}/{service}/{terminator}, want {state.args.region}/aps/aws4_request")
    minted = state.credentials_for(access_key)
    if minted is None:
        raise Reject(f"InvalidClientTokenId: {access_key} is not a key STS issued by AssumeRole")
    secret, token = minted
    if headers.get("X-Amz-Security-Token") != token:
        raise Reject("the security token included in the request is not the one minted with this key")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Reject(f"bad X-Amz-Date {amz_date!r}")
    if abs(datetime.datetime.now(datetime.timezone.utc) - when) > MAX_SKEW:
        raise Reject(f"X-Amz-Date {amz_date} is more than 5 minutes off")
    if amz_date[:8] != date:
        raise Reject(f"scope date {date} does not match X-Amz-Date {amz_date}")
    body_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("X-Amz-Content-SHA256")
    # botocore trusts a present X-Amz-Content-SHA256, so compare it with the body ourselves.
    if declared is not None and declared != body_hash:
        raise Reject("X-Amz-Content-SHA256 does not match the body received")
    if "host" not in signed_names:
        raise Reject("host is not signed")
    if state.args.wrong_secret:
        secret = secret + "tampered"
    request = AWSRequest(method=method, url=f"http://{headers['Host']}{path}", data=body)
    request.context["timestamp"] = amz_date
    signer = ExactHeadersSigV4(Credentials(access_key, secret, token), "aps", region, signed_names, headers)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != signature:
        raise Reject("SignatureDoesNotMatch: the request signature we calculated does not match the signature you provided")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main

    def log_message(self, fmt, *args):
        sys.stderr.write("amp-standin: " + (fmt % args) + "\n")

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reject(self, e):
        st = self.state
        with st.lock:
            st.rejected += 1
            st.reasons.append(str(e))
        self.log_message("rejected: %s", e)
        self.answer(403, (str(e) + "\n").encode(), [("Content-Type", "text/plain")])

    def relay_query(self, method, endpoint, query):
        """Verifies a query API request, relays it to the receiver and streams the answer back."""
        st = self.state
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            verify(st, method, self.path, self.headers, body)
        except Reject as e:
            self.reject(e)
            return
        with st.lock:
            st.accepted += 1
            st.queries += 1
            st.last_headers = {k.lower(): v for k, v in self.headers.items()}
            st.last_body = body
        forward = urllib.request.Request(
            f"{st.args.receiver}{endpoint}{query or ''}", data=body if method == "POST" else None, method=method
        )
        for name in QUERY_REQUEST_HEADERS:
            if self.headers.get(name) is not None:
                forward.add_header(name, self.headers[name])
        try:
            resp = urllib.request.urlopen(forward, timeout=30)
        except urllib.error.HTTPError as e:
            resp = e
        except OSError as e:
            self.answer(503, f"receiver unreachable: {e}\n".encode())
            return
        with resp:
            status = resp.status if hasattr(resp, "status") else resp.code
            length = resp.headers.get("Content-Length")
            self.send_response(status)
            for k in QUERY_RESPONSE_HEADERS:
                if resp.headers.get(k) is not None:
                    self.send_header(k, resp.headers[k])
            if length is not None:
                self.send_header("Content-Length", length)
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                if length is None:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)
                self.wfile.flush()
            if length is None:
                self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        st = self.state
        m = QUERY_PATH.match(self.path)
        if m:
            self.relay_query("GET", m.group(1), m.group(2))
            return
        if self.path == "/-/stats":
            with st.lock:
                stats = {
                    "accepted": st.accepted,
                    "queries": st.queries,
                    "rejected": st.rejected,
                    "reasons": st.reasons[-20:],
                    "last_headers": st.last_headers,
                }
            self.answer(200, json.dumps(stats).encode(), [("Content-Type", "application/json")])
        elif self.path == "/-/last-body":
            with st.lock:
                body, ctype = st.last_body, st.last_headers.get("content-type", "")
            self.answer(200, body, [("Content-Type", ctype or "application/octet-stream")])
        else:
            self.answer(404, b"not found\n")

    def do_POST(self):
        st = self.state
        m = QUERY_PATH.match(self.path)
        if m:
            self.relay_query("POST", m.group(1), m.group(2))
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            verify(st, "POST", self.path, self.headers, body)
        except Reject as e:
            self.reject(e)
            return
        with st.lock:
            st.accepted += 1
            st.last_headers = {k.lower(): v for k, v in self.headers.items()}
            st.last_body = body
        forward = urllib.request.Request(f"{st.args.receiver}/api/v1/write", data=body, method="POST")
        for name in FORWARDED_REQUEST_HEADERS:
            if self.headers.get(name) is not None:
                forward.add_header(name, self.headers[name])
        try:
            with urllib.request.urlopen(forward, timeout=30) as resp:
                status, rheaders, rbody = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, rheaders, rbody = e.code, e.headers, e.read()
        except OSError as e:
            self.answer(503, f"receiver unreachable: {e}\n".encode())
            return
        relayed = [(k, rheaders[k]) for k in RELAYED_RESPONSE_HEADERS if rheaders.get(k) is not None]
        self.answer(status, rbody, relayed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moto", required=True)
    ap.add_argument("--receiver", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--wrong-secret", action="store_true", help="verify with a different secret (tampering check)")
    args = ap.parse_args()
    Handler.state = State(args)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
