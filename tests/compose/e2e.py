#!/usr/bin/env python3
"""End-to-end checks against the compose stack (docker-compose.yml).

Run by tests/compose/run.sh once the stack is up; Python standard library only.
Talks to the gateway and to the mocks' request records through their ports
published on 127.0.0.1, and drives docker-compose / docker to stop, restart
and disconnect containers.

Environment (set by run.sh):
  E2E_COMPOSE        JSON list: the compose command prefix (with -p and -f)
  E2E_TOKEN          the gateway's client token
  E2E_POLICY_FILE    host path of the policy file bind-mounted into the gateway
  E2E_COMPOSE_POLICY the compose policy (config/compose/policy/policy.toml)
  E2E_SHIPPED_POLICY the shipped default policy (config/policy.toml)

Each check prints `ok - ...`; the first failure raises CheckFailed with a
message saying what was expected and what came back, and the exit status is 1.
"""

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

COMPOSE = json.loads(os.environ["E2E_COMPOSE"])
TOKEN = os.environ["E2E_TOKEN"]
POLICY_FILE = os.environ["E2E_POLICY_FILE"]
COMPOSE_POLICY = os.environ["E2E_COMPOSE_POLICY"]
SHIPPED_POLICY = os.environ["E2E_SHIPPED_POLICY"]

# Deadlines for things that happen "soon" (a start, a reload). They bound a
# wait, they are not performance assertions.
START_DEADLINE_S = 120
RELOAD_DEADLINE_S = 15

# The mocks' admin endpoints (/mock/*) are read over TLS without verifying
# the certificate: the record is test tooling on the host's loopback, and the
# gateway's own verification is what the checks are about.
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE

# Prompts the shipped policy keeps on the device: card numbers, IBANs,
# national ids, secrets, health. None may reach any mock.
SENSITIVE = [
    "My card number is 4111 1111 1111 1111, expiry 12/27. Is it still valid?",
    "Please pay the invoice to IBAN DE89 3704 0044 0532 0130 00 today.",
    "My social security number is 078-05-1120, fill in the form for me.",
    "我的身份证号是11010519491231002X，帮我填表。",
    "Nomor KTP saya 3174054506890002, tolong bantu isi formulir.",
    "Debug this: export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx1234567890ABCD",
    "I was diagnosed with type 2 diabetes last week, what should I eat?",
    "Card 5555 5555 5555 4444 cvv 123: why was my payment declined?",
]
# A fragment of each prompt to look for in the mocks' records.
SENSITIVE_MARKERS = [
    "4111 1111 1111 1111",
    "DE89 3704",
    "078-05-1120",
    "11010519491231002X",
    "3174054506890002",
    "sk-proj-abcdefghij",
    "diabetes",
    "5555 5555 5555 4444",
]

MOCKS = ["mock-cloud", "mock-untrusted", "mock-cut", "mock-slow"]


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def ok(msg):
    print(f"ok - {msg}", flush=True)


# --- docker -----------------------------------------------------------------


def compose(*args, capture=True):
    r = subprocess.run(COMPOSE + list(args), capture_output=capture, text=True)
    if r.returncode != 0:
        raise CheckFailed(f"{' '.join(COMPOSE[:1] + list(args))} failed: {r.stderr.strip() if capture else ''}")
    return r.stdout.strip() if capture else ""


def docker(*args):
    r = subprocess.run(["docker", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise CheckFailed(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def published(service, port):
    """`127.0.0.1:PORT` of a service's published port (a fresh one after a restart)."""
    addr = compose("port", service, str(port))
    expect(addr.startswith("127.0.0.1:"), f"{service}:{port} is published on {addr!r}, not on 127.0.0.1 only")
    return addr


def container_id(service):
    cid = compose("ps", "-q", service)
    expect(cid, f"no container for {service}")
    return cid


# --- HTTP -------------------------------------------------------------------


class Gateway:
    def __init__(self):
        self.refresh()

    def refresh(self):
        self.base = "http://" + published("tandem", 8080)

    def request(self, method, path, body=None, headers=None, token=True, timeout=120):
        h = {"content-type": "application/json"}
        if token:
            h["authorization"] = f"Bearer {TOKEN}"
        h.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def json(self, method, path, body=None, **kw):
        status, headers, raw = self.request(method, path, body, **kw)
        try:
            return status, {k.lower(): v for k, v in headers.items()}, json.loads(raw)
        except ValueError:
            raise CheckFailed(f"{method} {path}: status {status}, body is not JSON: {raw[:300]!r}")

    def chat(self, prompt, model="auto", app=None, stream=False, max_tokens=24, headers=None):
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
        h = dict(headers or {})
        if app:
            h["x-tandem-app"] = app
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            return self.stream(body, h)
        return self.json("POST", "/v1/chat/completions", body, headers=h)

    def stream(self, body, headers, on_content=None):
        """Reads an SSE answer line by line; `on_content(n)` runs after the
        n-th content chunk. Returns (status, headers, answer)."""
        h = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}", **headers}
        req = urllib.request.Request(
            self.base + "/v1/chat/completions", data=json.dumps(body).encode(), headers=h, method="POST"
        )
        try:
            r = urllib.request.urlopen(req, timeout=120)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(raw)
            except ValueError:
                raise CheckFailed(f"stream: status {e.code}, body is not JSON: {raw[:300]!r}")
        hdrs = {k.lower(): v for k, v in r.headers.items()}
        expect(
            hdrs.get("content-type", "").startswith("text/event-stream"),
            f"stream: content-type {hdrs.get('content-type')!r}",
        )
        ans = {"chunks": [], "content": "", "done": False, "finish": None, "tandem": None, "usage": None, "errors": []}
        n = 0
        with r:
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                expect(not ans["done"], "stream: data after [DONE]")
                if data == "[DONE]":
                    ans["done"] = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    ans["errors"].append(chunk["error"])
                    continue
                ans["chunks"].append(chunk)
                if chunk.get("tandem"):
                    ans["tandem"] = chunk["tandem"]
                if chunk.get("usage"):
                    ans["usage"] = chunk["usage"]
                for c in chunk.get("choices", []):
                    text = (c.get("delta") or {}).get("content") or ""
                    if text:
                        ans["content"] += text
                        n += 1
                        if on_content:
                            on_content(n)
                    if c.get("finish_reason"):
                        ans["finish"] = c["finish_reason"]
        return r.status, hdrs, ans


def mock_get(service, path):
    url = "https://" + published(service, 8443) + path
    with urllib.request.urlopen(url, context=INSECURE, timeout=10) as r:
        return json.loads(r.read())


def mock_clear(service):
    url = "https://" + published(service, 8443) + "/mock/requests"
    req = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(req, context=INSECURE, timeout=10) as r:
        r.read()


def content_of(answer):
    return answer["choices"][0]["message"]["content"] or ""


def wait_ready(gw):
    deadline = time.monotonic() + START_DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        try:
            gw.refresh()
            status, _, body = gw.json("GET", "/readyz", token=False, timeout=5)
            if status == 200 and body.get("ready") is True:
                return
            last = f"status {status} {body}"
        except (CheckFailed, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    raise CheckFailed(f"the gateway was not ready within {START_DEADLINE_S} s (last: {last})")


def write_policy(text):
    """Replaces the policy file the way an editor does: a new file renamed over it."""
    tmp = POLICY_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, POLICY_FILE)


def rule_for(gw, prompt, app):
    status, headers, _ = gw.chat(prompt, app=app, max_tokens=4)
    expect(status == 200, f"policy probe: status {status}")
    return headers.get("x-tandem-rule")


def wait_rule(gw, prompt, app, want):
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    rule = None
    while time.monotonic() < deadline:
        rule = rule_for(gw, prompt, app)
        if rule == want:
            return
        time.sleep(0.25)
    raise CheckFailed(f"after the policy edit, rule {want!r} expected within {RELOAD_DEADLINE_S} s; still {rule!r}")


# --- checks -----------------------------------------------------------------

PLAIN = "Write one sentence about the river that runs through the old town."


def check_edge(gw):
    status, _, _ = gw.json("GET", "/healthz", token=False)
    expect(status == 200, f"/healthz: {status}")
    status, _, body = gw.json("GET", "/v1/status", token=False)
    expect(status == 401, f"/v1/status without the client token: {status}, want 401")
    # Probes skip the Host check (orchestrators probe by IP); everything else keeps it.
    status, _, body = gw.json("GET", "/v1/models", token=True, headers={"host": "attacker.example"})
    expect(status == 403, f"a foreign Host header: {status}, want 403 (DNS-rebinding guard)")
    status, _, body = gw.json("GET", "/v1/models")
    names = [m["id"] for m in body.get("data", [])]
    for want in ["auto", "local", "cloud", "cloud-untrusted", "cloud-cut", "cloud-slow"]:
        expect(want in names, f"/v1/models lacks {want}: {names}")
    ok("edge: probes open, token required, foreign Host refused, every tier listed")


def check_cloud_over_tls(gw):
    mock_clear("mock-cloud")
    status, headers, body = gw.chat(PLAIN, model="cloud")
    expect(status == 200, f"cloud non-stream: status {status} {body}")
    expect(headers.get("x-tandem-route") == "cloud", f"x-tandem-route {headers.get('x-tandem-route')}")
    expect(body["tandem"]["route"] == "cloud", f"tandem.route {body['tandem']}")
    full = content_of(body)
    expect(len(full.split()) >= 3, f"cloud answer too short: {full!r}")

    status, headers, ans = gw.chat(PLAIN, model="cloud", stream=True)
    expect(status == 200, f"cloud stream: status {status} {ans}")
    expect(ans["done"] and ans["finish"] == "stop", f"stream ended without finish/[DONE]: {ans['finish']} {ans['done']}")
    expect(not ans["errors"], f"stream errors: {ans['errors']}")
    expect(len({c["id"] for c in ans["chunks"]}) == 1, "chunks carry more than one id")
    expect(ans["content"] == full, f"stream and non-stream differ: {ans['content']!r} vs {full!r}")
    expect(ans["tandem"] and ans["tandem"]["route"] == "cloud", f"stream tandem object: {ans['tandem']}")
    expect(ans["usage"] and ans["usage"]["completion_tokens"] > 0, f"usage: {ans['usage']}")

    status, headers, body = gw.chat(PLAIN, app="e2e-cloud")
    expect(status == 200 and headers.get("x-tandem-rule") == "e2e-cloud", f"auto → cloud: {status} {headers}")
    expect(headers.get("x-tandem-route") == "cloud", f"auto → cloud: route {headers.get('x-tandem-route')}")

    recs = mock_get("mock-cloud", "/mock/requests")
    expect(len(recs) == 3, f"mock-cloud recorded {len(recs)} requests, want 3")
    for r in recs:
        expect(r["path"] == "/v1/chat/completions", f"path {r['path']}")
        expect(r["has_authorization"], "the API key did not reach the mock")
        expect(r["body"]["model"] == "mock-large", f"upstream model {r['body'].get('model')}")
        expect(r["status"] == 200, f"mock status {r['status']}")
    ok("cloud over TLS (extra_ca_file): non-stream, stream (one id, finish, usage, [DONE]), auto route, key sent")
    return full


def check_untrusted_certificate(gw):
    before = mock_get("mock-untrusted", "/mock/stats")
    for stream in (False, True):
        status, _, body = gw.chat(PLAIN, model="cloud-untrusted", stream=stream)
        what = "stream" if stream else "non-stream"
        expect(status == 502, f"untrusted certificate ({what}): status {status}, want 502: {body}")
        msg = body.get("error", {}).get("message", "")
        expect(
            "certificate" in msg.lower() or "tls" in msg.lower(),
            f"untrusted certificate ({what}): the error does not name TLS or the certificate: {msg!r}",
        )
    after = mock_get("mock-untrusted", "/mock/stats")
    recs = mock_get("mock-untrusted", "/mock/requests")
    expect(recs == [] and after["requests"] == 0, f"mock-untrusted received requests: {recs}")
    expect(
        after["connections_total"] > before["connections_total"],
        f"the gateway never reached mock-untrusted: {before} → {after}",
    )
    ok(f"untrusted certificate: 502 naming it ({msg.split(': ')[-1]}), TCP reached, no request sent")


def check_midstream_cut(gw, reference):
    prefix = " ".join(reference.split()[:4])
    status, headers, ans = gw.chat(PLAIN, app="e2e-cut", stream=True)
    expect(status == 200, f"cut stream: status {status} {ans}")
    expect(not ans["errors"], f"cut stream: error events {ans['errors']}")
    expect(ans["done"] and ans["finish"], f"cut stream did not complete: finish {ans['finish']} done {ans['done']}")
    expect(ans["content"].startswith(prefix), f"cut stream: {ans['content']!r} does not start with the cloud's {prefix!r}")
    expect(len(ans["content"]) > len(prefix), f"cut stream: nothing after the cloud's part: {ans['content']!r}")
    t = ans["tandem"] or {}
    hand = t.get("handovers") or []
    expect(
        any(h["from"] == "cloud-cut" and h["to"] == "local" and h["after_content"] for h in hand),
        f"cut stream: handovers {hand}",
    )
    expect(t.get("route") == "local", f"cut stream: final route {t.get('route')}")
    expect(headers.get("x-tandem-route") == "cloud-cut", f"cut stream started on {headers.get('x-tandem-route')}")
    ok(f"mid-stream cut (--cut-after 4): continued locally, handovers {[(h['from'], h['reason']) for h in hand]}")

    status, headers, body = gw.chat(PLAIN, app="e2e-cut")
    expect(status == 200, f"cut non-stream: status {status} {body}")
    hand = body["tandem"].get("handovers") or []
    expect(body["tandem"]["route"] == "local" and hand, f"cut non-stream: tandem {body['tandem']}")
    expect(content_of(body), "cut non-stream: empty answer")
    ok("cut non-stream answer: the local model answered instead, before anything was sent")


def check_network_cut(gw, reference):
    cid = container_id("mock-slow")
    nets = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", cid))
    expect(len(nets) == 1, f"mock-slow is on {list(nets)}")
    net = next(iter(nets))
    cut = {}

    def disconnect(n):
        if n == 3 and not cut:
            docker("network", "disconnect", "--force", net, cid)
            cut["at"] = n

    body = {
        "model": "auto",
        "stream": True,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": PLAIN}],
    }
    try:
        status, headers, ans = gw.stream(body, {"x-tandem-app": "e2e-slow"}, on_content=disconnect)
    finally:
        if cut:
            docker("network", "connect", "--alias", "mock-slow", net, cid)
    expect(cut, "the slow stream ended before the network could be cut")
    expect(status == 200, f"network cut: status {status}")
    expect(not ans["errors"], f"network cut: error events {ans['errors']}")
    expect(ans["done"] and ans["finish"], f"network cut: not completed (finish {ans['finish']}, done {ans['done']})")
    prefix = " ".join(reference.split()[:3])
    expect(ans["content"].startswith(prefix), f"network cut: {ans['content']!r} does not start with {prefix!r}")
    t = ans["tandem"] or {}
    hand = t.get("handovers") or []
    expect(
        any(h["from"] == "cloud-slow" and h["to"] == "local" and h["after_content"] for h in hand),
        f"network cut: handovers {hand}",
    )
    ok(f"network cut mid-stream (docker network disconnect): continued locally, handovers "
       f"{[(h['from'], h['reason']) for h in hand]}")


def check_privacy(gw, policy_name):
    for m in MOCKS:
        mock_clear(m)
    for i, prompt in enumerate(SENSITIVE):
        stream = i % 2 == 1
        # The app that the compose policy sends to the cloud: privacy must win.
        status, headers, ans = gw.chat(prompt, app="e2e-cloud", stream=stream, max_tokens=8)
        expect(status == 200, f"sensitive prompt {i}: status {status} {ans}")
        expect(headers.get("x-tandem-route") == "local", f"sensitive prompt {i}: route {headers.get('x-tandem-route')}")
        expect(
            headers.get("x-tandem-rule") == "private-stays-local",
            f"sensitive prompt {i}: rule {headers.get('x-tandem-rule')}",
        )
        t = ans["tandem"]
        expect(t and t["cloud_allowed"] is False, f"sensitive prompt {i}: tandem {t}")
    # Naming a cloud tier explicitly does not get around the policy.
    for i, prompt in enumerate(SENSITIVE):
        model = ["cloud", "cloud-cut", "cloud-slow"][i % 3]
        status, _, body = gw.chat(prompt, model=model)
        expect(status == 403, f"sensitive prompt {i} to model={model}: status {status}, want 403: {body}")
        expect(body["error"]["code"] == "privacy_policy", f"sensitive prompt {i} to model={model}: {body}")
    for m in MOCKS:
        recs = mock_get(m, "/mock/requests")
        text = json.dumps(recs, ensure_ascii=False)
        leaked = [s for s in SENSITIVE_MARKERS if s in text]
        expect(not leaked, f"{m} received sensitive text: {leaked}")
        expect(recs == [], f"{m} received {len(recs)} requests during the sensitive batch")
    ok(f"privacy ({policy_name}): {len(SENSITIVE)} sensitive prompts answered locally, none reached any mock, "
       "naming a cloud tier refused with 403")


def check_policy_reload(gw):
    status, _, st = gw.json("GET", "/v1/status")
    reloads = st["policy"]["reloads_ok"]
    hash0 = st["policy"]["hash"]
    expect(rule_for(gw, PLAIN, "e2e-cloud") == "e2e-cloud", "before the edit the compose policy should be in force")
    with open(SHIPPED_POLICY) as f:
        write_policy(f.read())
    wait_rule(gw, PLAIN, "e2e-cloud", "default")
    status, _, st = gw.json("GET", "/v1/status")
    expect(st["policy"]["reloads_ok"] > reloads and st["policy"]["hash"] != hash0, f"policy status {st['policy']}")
    ok("policy edit picked up without a restart: x-tandem-rule e2e-cloud → default (the shipped policy)")

    check_privacy(gw, "the shipped default policy")

    # A broken edit is refused and the policy in force stays.
    write_policy('version = 1\n[[rule]]\nname = "broken"\nwhen = "privacy >="\ntarget = "local"\n')
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    while time.monotonic() < deadline:
        _, _, st = gw.json("GET", "/v1/status")
        if st["policy"]["last_reload_error"]:
            break
        time.sleep(0.25)
    expect(st["policy"]["last_reload_error"], f"a broken policy was not refused: {st['policy']}")
    expect(rule_for(gw, PLAIN, "e2e-cloud") == "default", "after a broken edit the previous policy must stay")
    ok(f"broken policy refused, previous one kept: {st['policy']['last_reload_error'].splitlines()[0][:100]}")

    with open(COMPOSE_POLICY) as f:
        write_policy(f.read())
    wait_rule(gw, PLAIN, "e2e-cloud", "e2e-cloud")
    ok("compose policy restored live")


def check_restart(gw):
    compose("restart", "tandem")
    wait_ready(gw)
    status, headers, body = gw.chat(PLAIN, model="cloud")
    expect(status == 200 and headers.get("x-tandem-route") == "cloud", f"after restart, cloud: {status} {body}")
    status, headers, body = gw.chat(PLAIN, model="local")
    expect(status == 200 and headers.get("x-tandem-route") == "local", f"after restart, local: {status} {body}")
    expect(content_of(body), "after restart: empty local answer")
    ok("docker-compose restart tandem: ready again, cloud and local answer")


def check_cloud_unreachable(gw):
    compose("stop", "mock-cloud")
    reasons = []
    for i in range(4):
        stream = i % 2 == 1
        status, headers, ans = gw.chat(PLAIN, app="e2e-cloud", stream=stream)
        expect(status == 200, f"cloud down, request {i}: status {status} {ans}")
        t = ans["tandem"]
        expect(t and t["route"] == "local", f"cloud down, request {i}: answered by {t and t['route']}")
        text = ans["content"] if stream else content_of(ans)
        expect(text, f"cloud down, request {i}: empty answer")
        reasons += [h["reason"] for h in t.get("handovers") or [] if h["from"] == "cloud"]
    expect("connect" in reasons, f"no connect failure reported in the tandem object: {reasons}")
    status, _, st = gw.json("GET", "/v1/status")
    tier = next(t for t in st["tiers"] if t["name"] == "cloud")["status"]
    ep = tier["endpoints"][0]
    expect(tier["up"] is False and ep["state"] == "open", f"/v1/status cloud tier: {tier}")
    expect(ep["errors"].get("connect", 0) >= 1, f"/v1/status cloud errors: {ep['errors']}")
    status, _, body = gw.json("GET", "/readyz", token=False)
    expect(status == 200, f"/readyz with the cloud down: {status} (the local model can answer)")
    status, _, body = gw.chat(PLAIN, model="cloud")
    expect(status in (502, 503), f"model=cloud with the cloud down: {status} {body}")
    ok(f"cloud unreachable: auto answered locally (handover reasons {sorted(set(reasons))}), "
       f"/v1/status: up=false, breaker {ep['state']}, errors {ep['errors']}; model=cloud → {status}")


def main():
    gw = Gateway()
    wait_ready(gw)
    check_edge(gw)
    reference = check_cloud_over_tls(gw)
    check_untrusted_certificate(gw)
    check_midstream_cut(gw, reference)
    check_network_cut(gw, reference)
    check_privacy(gw, "the compose policy, app routed to the cloud")
    check_policy_reload(gw)
    check_restart(gw)
    check_cloud_unreachable(gw)
    print("all end-to-end checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
