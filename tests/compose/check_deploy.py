#!/usr/bin/env python3
"""Checks the deployment files under deploy/ and the compose file, including
those that cannot run on this machine (launchd, Kubernetes, a phone).

    .venv/bin/python tests/compose/check_deploy.py --tandem target/release/tandem

Run by tests/compose/run.sh (also when Docker is missing). Needs PyYAML
(scripts/setup-python.sh installs it into .venv) and Python 3.11 (tomllib).
What each part checks:

- systemd unit: `systemd-analyze verify --user` (when systemd-analyze exists)
  with no warning, the hardening and resource directives present, and the
  daemon really answering a local request under the kernel's
  memory-deny-write-execute (the unit's MemoryDenyWriteExecute=yes);
- launchd plist: a valid property list (plistlib; `plutil -lint` on macOS)
  with the keys that matter;
- Kubernetes: every manifest parses, the kustomization lists them, selectors
  and ports line up, the env vars the config names come from the Secret; the
  ConfigMap's files pass `tandem policy check`, then `tandem serve` runs on
  them: the probes' paths answer 200 with the probes' Host header, the token
  is required, and a kubelet-style ConfigMap update reloads the policy;
- compose: the published ports bind 127.0.0.1, the mounts are read-only, the
  gateway waits for the CA files it trusts, both policies pass `tandem policy
  check`, the compose policy keeps the shipped privacy rule verbatim;
- phone and Termux: the example configs load, the Termux feed script turns a
  `termux-battery-status` reading into a snapshot, and `tandem serve` reads the
  example device.json and the fed snapshot through the file source.

Prints `ok - ...` per check; the first failure exits 1 with its reason.
"""

import argparse
import json
import os
import plistlib
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
MODEL = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
# Bounds waits for a daemon to start or a reload to land; not a performance check.
DEADLINE_S = 60


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def ok(msg):
    print(f"ok - {msg}", flush=True)


def rel(path):
    return os.path.relpath(path, ROOT)


# --- running tandem ---------------------------------------------------------


def run(cmd, env=None, **kw):
    full_env = {**os.environ, "OMP_WAIT_POLICY": "passive", "RUST_BACKTRACE": "0", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, **kw)


def policy_check(tandem, policy, config, env):
    r = run([tandem, "policy", "check", policy, "--config", config], env=env)
    expect(
        r.returncode == 0,
        f"tandem policy check {rel(policy)} --config {rel(config)}: {(r.stderr or r.stdout).strip()[:500]}",
    )
    return r.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`tandem serve` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, tandem, config, env, preexec=None, argv0=None):
        self.port = free_port()
        self.log = tempfile.TemporaryFile(mode="w+")
        cmd = [tandem, "serve", "--config", config, "--listen", f"127.0.0.1:{self.port}"]
        if argv0:
            cmd = argv0 + cmd
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_WAIT_POLICY": "passive", "RUST_BACKTRACE": "0", **env},
        )
        self.config = config
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed(f"tandem serve --config {rel(config)} exited {self.proc.returncode}: {self.tail()}")
            try:
                status, _ = self.get("/healthz", host="localhost")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise CheckFailed(f"tandem serve --config {rel(config)} did not answer /healthz: {self.tail()}")

    def tail(self):
        self.log.seek(0)
        return self.log.read()[-1500:]

    def get(self, path, host="localhost", token=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        req.add_header("Host", host)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def post(self, path, body, token=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise CheckFailed(f"tandem serve --config {rel(self.config)} ignored SIGTERM")
        return self.proc.returncode


def wait_until(what, fn):
    deadline = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise CheckFailed(f"{what}: not within {DEADLINE_S} s")


# --- systemd ------------------------------------------------------------------


def parse_unit(path):
    """A systemd unit as {section: [(key, value), ...]}, keeping repeated keys."""
    sections, current = {}, None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            expect(current is not None and "=" in line, f"{rel(path)}:{n}: not `Key=value` inside a section")
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return sections


def check_systemd(tandem):
    path = os.path.join(DEPLOY, "systemd", "tandem.service")
    unit = parse_unit(path)
    svc = unit.get("Service", [])
    values = {}
    for k, v in svc:
        values.setdefault(k, []).append(v)

    def one(key):
        expect(key in values, f"{rel(path)}: [Service] lacks {key}=")
        return values[key][-1]

    expect("Description" in dict(unit.get("Unit", [])), f"{rel(path)}: no Description")
    expect(dict(unit.get("Install", [])).get("WantedBy") == "default.target", f"{rel(path)}: WantedBy=default.target")
    exec_start = one("ExecStart")
    expect(re.match(r"^%h/\.local/bin/tandem serve --config \S+\.toml$", exec_start), f"ExecStart: {exec_start}")
    for key, want in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("Restart", "on-failure"),
    ]:
        expect(one(key) == want, f"{rel(path)}: {key}={one(key)}, want {want}")
    families = set(one("RestrictAddressFamilies").split())
    expect(families == {"AF_INET", "AF_INET6", "AF_UNIX"}, f"RestrictAddressFamilies: {families}")
    expect(re.fullmatch(r"\d+[KMG]", one("MemoryMax")), f"MemoryMax: {one('MemoryMax')}")
    expect("OMP_WAIT_POLICY=passive" in values.get("Environment", []), "Environment=OMP_WAIT_POLICY=passive missing")
    expect(not any("KEY=" in v.upper() for v in values.get("Environment", [])), "a key in Environment=")

    verified = "systemd-analyze not installed: syntax checked by parsing only"
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as home:
            os.makedirs(os.path.join(home, ".local", "bin"))
            os.symlink(os.path.abspath(tandem), os.path.join(home, ".local", "bin", "tandem"))
            runtime = os.path.join(home, "run")
            os.makedirs(runtime, mode=0o700)
            r = subprocess.run(
                ["systemd-analyze", "verify", "--user", path],
                capture_output=True,
                text=True,
                env={**os.environ, "HOME": home, "XDG_RUNTIME_DIR": runtime},
            )
            out = (r.stdout + r.stderr).strip()
            expect(r.returncode == 0 and not out, f"systemd-analyze verify --user {rel(path)}: {out}")
        verified = "systemd-analyze verify --user: clean"
    ok(f"systemd unit {rel(path)}: {verified}; hardening, MemoryMax, OMP_WAIT_POLICY present")

    # MemoryDenyWriteExecute=yes must not break llama.cpp: run a local answer
    # under the kernel's own MDWE (Linux 6.3+), the mechanism the unit asks for.
    if not os.path.exists(MODEL):
        ok("MemoryDenyWriteExecute: not exercised (no test model)")
        return
    wrapper = (
        "import ctypes,os,sys\n"
        "libc=ctypes.CDLL(None,use_errno=True)\n"
        "if libc.prctl(65,1,0,0,0)!=0: sys.exit(77)\n"  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        "os.execv(sys.argv[1],sys.argv[1:])\n"
    )
    probe = subprocess.run([sys.executable, "-c", wrapper, "/bin/true"])
    if probe.returncode == 77:
        ok("MemoryDenyWriteExecute: not exercised (kernel without PR_SET_MDWE)")
        return
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "tandem.toml")
        with open(os.path.join(ROOT, "config", "tandem.toml")) as f:
            text = f.read()
        text = text.replace('model = "../models/', f'model = "{os.path.join(ROOT, "models")}/')
        text = text.replace('file = "policy.toml"', f'file = "{os.path.join(ROOT, "config", "policy.toml")}"')
        with open(cfg, "w") as f:
            f.write(text)
        daemon = Daemon(tandem, cfg, {}, argv0=[sys.executable, "-c", wrapper])
        try:
            status, body = daemon.post(
                "/v1/chat/completions",
                {"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hello"}]},
            )
            expect(status == 200 and body["choices"][0]["message"]["content"], f"local answer under MDWE: {status} {body}")
        finally:
            daemon.stop()
    ok("MemoryDenyWriteExecute: a local answer generated under PR_SET_MDWE")


# --- launchd ------------------------------------------------------------------


def check_launchd():
    path = os.path.join(DEPLOY, "launchd", "dev.tandem.daemon.plist")
    with open(path, "rb") as f:
        try:
            plist = plistlib.load(f, fmt=plistlib.FMT_XML)
        except Exception as e:  # plistlib raises several types
            raise CheckFailed(f"{rel(path)}: not a valid XML property list: {e}")
    expect(plist.get("Label") == "dev.tandem.daemon", f"Label: {plist.get('Label')}")
    args = plist.get("ProgramArguments", [])
    expect(args[:1] == ["__HOME__/.local/bin/tandem"] and args[1:2] == ["serve"], f"ProgramArguments: {args}")
    expect("--config" in args and args[args.index("--config") + 1].endswith(".toml"), f"ProgramArguments: {args}")
    expect(plist.get("EnvironmentVariables", {}).get("OMP_WAIT_POLICY") == "passive", "OMP_WAIT_POLICY=passive")
    expect(plist.get("RunAtLoad") is True, "RunAtLoad")
    expect(plist.get("KeepAlive") == {"SuccessfulExit": False}, f"KeepAlive: {plist.get('KeepAlive')}")
    expect(plist.get("ProcessType") in ("Standard", "Interactive"), f"ProcessType {plist.get('ProcessType')}")
    expect(plist.get("Umask") == 0o077, f"Umask {plist.get('Umask')}")
    secrets_in_env = [k for k in plist.get("EnvironmentVariables", {}) if "KEY" in k.upper() or "TOKEN" in k.upper()]
    expect(not secrets_in_env, f"secrets in the plist: {secrets_in_env}")
    # Every path is absolute once the installer replaces __HOME__.
    for value in [*args, plist.get("StandardErrorPath", ""), plist.get("WorkingDirectory", "")]:
        if "/" in value:
            expect(value.replace("__HOME__", "/Users/x").startswith("/"), f"relative path in the plist: {value}")
    how = "plistlib"
    if shutil.which("plutil"):
        r = subprocess.run(["plutil", "-lint", path], capture_output=True, text=True)
        expect(r.returncode == 0, f"plutil -lint: {r.stdout}{r.stderr}")
        how = "plutil -lint"
    ok(f"launchd agent {rel(path)}: valid ({how}), Label, ProgramArguments, KeepAlive, OMP_WAIT_POLICY")


# --- Kubernetes ---------------------------------------------------------------


def load_yaml_docs(path):
    with open(path) as f:
        try:
            return [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise CheckFailed(f"{rel(path)}: invalid YAML: {e}")


def probe(container, name):
    p = container.get(name)
    expect(p and "httpGet" in p, f"container {container['name']} has no httpGet {name}")
    return p["httpGet"]


def check_kubernetes(tandem):
    kdir = os.path.join(DEPLOY, "kubernetes")
    files = sorted(f for f in os.listdir(kdir) if f.endswith(".yaml"))
    docs = {}
    for f in files:
        for d in load_yaml_docs(os.path.join(kdir, f)):
            expect("apiVersion" in d and "kind" in d, f"{f}: a document without apiVersion/kind")
            docs.setdefault(d["kind"], []).append((f, d))
    kust = docs["Kustomization"][0][1]
    listed = set(kust["resources"])
    want = {f for f in files if f not in ("kustomization.yaml", "secret.example.yaml")}
    expect(listed == want, f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(want)}")
    for kind in ["Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret"]:
        expect(kind in docs, f"no {kind} manifest")

    dep = docs["Deployment"][0][1]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    expect(all(labels.get(k) == v for k, v in sel.items()), f"Deployment selector {sel} does not match {labels}")
    svc = docs["Service"][0][1]
    expect(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector misses the pods")
    pdb = docs["PodDisruptionBudget"][0][1]
    expect(pdb["spec"]["selector"]["matchLabels"] == sel, "PodDisruptionBudget selector")
    expect(dep["spec"]["replicas"] > pdb["spec"]["minAvailable"], "replicas must exceed the PDB's minAvailable")

    (c,) = pod["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect(svc["spec"]["ports"][0]["targetPort"] in port_names, "Service targetPort is not a container port name")
    ready, live = probe(c, "readinessProbe"), probe(c, "livenessProbe")
    expect(ready["path"] == "/readyz", f"readinessProbe path {ready['path']}")
    expect(live["path"] == "/healthz", f"livenessProbe path {live['path']}")
    limits, requests = c["resources"]["limits"], c["resources"]["requests"]
    expect("memory" in limits and "cpu" in limits and "memory" in requests, f"resources: {c['resources']}")
    sc, psc = c["securityContext"], pod["spec"]["securityContext"]
    expect(sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], "container securityContext")
    expect(sc["capabilities"]["drop"] == ["ALL"] and psc["runAsNonRoot"], "securityContext: drop ALL, non-root")
    expect(psc["seccompProfile"]["type"] == "RuntimeDefault", "seccompProfile RuntimeDefault")

    # The config file the container reads comes from the ConfigMap volume.
    args = c["args"]
    config_path = args[args.index("--config") + 1]
    mount = next(m for m in c["volumeMounts"] if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
    expect(mount.get("readOnly") and "subPath" not in mount, f"config mount {mount}: read-only, without subPath")
    vol = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    cm = next(d for _, d in docs["ConfigMap"] if d["metadata"]["name"] == vol["configMap"]["name"])
    key = os.path.relpath(config_path, mount["mountPath"])
    expect(key in cm["data"], f"ConfigMap {cm['metadata']['name']} has no {key}")
    cfg = tomllib.loads(cm["data"][key])
    listen_port = int(cfg["server"]["listen"].rsplit(":", 1)[1])
    expect(listen_port in port_names.values(), f"listen port {listen_port} is not a containerPort {port_names}")
    expect(not cfg.get("local"), "the edge router's config has a local tier")

    # Every variable the config names comes from the Secret.
    env = {e["name"]: e for e in c["env"]}
    named = [cfg["server"]["client_token_env"]] + [
        ep["api_key_env"] for tier in cfg.get("cloud", []) for ep in tier["endpoints"] if "api_key_env" in ep
    ]
    secret = docs["Secret"][0][1]
    for var in named:
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
        expect(ref, f"{var} (named in {key}) is not taken from a Secret")
        expect(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"], f"{var}: {ref}")
    ok("Kubernetes manifests: parse, kustomization complete, selectors/ports/probes/resources/securityContext agree")

    # The ConfigMap's files, laid out as the kubelet mounts a ConfigMap
    # (files are symlinks through ..data, swapped atomically on update).
    fake_env = {var: secrets.token_hex(16) for var in named}
    token = fake_env[cfg["server"]["client_token_env"]]
    with tempfile.TemporaryDirectory() as d:
        mnt = os.path.join(d, "etc-tandem")
        os.makedirs(mnt)

        def publish(version, data):
            target = os.path.join(mnt, f"..{version}")
            os.makedirs(target)
            for name, text in data.items():
                with open(os.path.join(target, name), "w") as f:
                    f.write(text)
            tmp = os.path.join(mnt, "..data_tmp")
            os.symlink(f"..{version}", tmp)
            os.replace(tmp, os.path.join(mnt, "..data"))
            for name in data:
                link = os.path.join(mnt, name)
                if not os.path.islink(link):
                    os.symlink(os.path.join("..data", name), link)

        publish("v1", cm["data"])
        cfg_file = os.path.join(mnt, key)
        summary = policy_check(tandem, os.path.join(mnt, cfg["policy"]["file"]), cfg_file, fake_env)
        ok(f"ConfigMap files pass `tandem policy check` ({summary.split(': ', 1)[-1]})")

        daemon = Daemon(tandem, cfg_file, fake_env)
        try:
            host = next(h["value"] for h in ready.get("httpHeaders", []) if h["name"].lower() == "host")
            for p in (ready, live):
                status, body = daemon.get(p["path"], host=host)
                expect(status == 200, f"probe {p['path']} with Host {host}: {status} {body}")
            # Probes skip the Host check: kubelet probes by pod IP.
            status, _ = daemon.get(ready["path"], host="10.1.2.3")
            expect(status == 200, f"a probe by pod IP got {status}")
            status, _ = daemon.get("/v1/models", host="10.1.2.3")
            expect(status in (401, 403), f"a non-probe request by pod IP got {status}")
            svc_host = f"{svc['metadata']['name']}.tandem.svc.cluster.local"
            status, _ = daemon.get("/v1/models", host=svc_host)
            expect(status == 401, f"/v1/models without the token: {status}")
            status, body = daemon.get("/v1/models", host=svc_host, token=token)
            ids = [m["id"] for m in (body or {}).get("data", [])]
            tiers = [t["name"] for t in cfg["cloud"]]
            expect(status == 200 and all(t in ids for t in tiers), f"/v1/models via {svc_host}: {status} {ids}")
            rss = daemon.rss_mb()
            ok(f"`tandem serve` on the ConfigMap: {ready['path']} and {live['path']} answer 200 with Host {host}, "
               f"token required, tiers {tiers}; RSS {rss:.0f} MB (limit {limits['memory']})")

            # A ConfigMap update: the policy is reloaded without a restart.
            new_policy = cm["data"][cfg["policy"]["file"]].replace('name = "default"', 'name = "default-updated"')
            expect(new_policy != cm["data"][cfg["policy"]["file"]], "the ConfigMap policy has no rule named default")
            publish("v2", {**cm["data"], cfg["policy"]["file"]: new_policy})

            def reloaded():
                _, st = daemon.get("/v1/status", token=token)
                names = [r["name"] for r in st["policy"]["rules"]["rules"]]
                return st["policy"]["reloads_ok"] >= 1 and "default-updated" in names

            wait_until("policy reload after a ConfigMap update", reloaded)
            ok("a kubelet-style ConfigMap update (..data swap) reloads the policy without a restart")
        finally:
            rc = daemon.stop()
        expect(rc == 0, f"tandem serve exited {rc} on SIGTERM: {daemon.tail()}")


# --- compose ------------------------------------------------------------------


def rule_block(policy_text, name):
    m = re.search(r'\[\[rule\]\]\nname = "' + re.escape(name) + r'"\n.*?(?=\n\[\[rule\]\]|\Z)', policy_text, re.S)
    expect(m, f"no rule {name}")
    lines = m.group(0).strip().splitlines()
    # The comment introducing the next rule is not part of this one.
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "\n".join(lines)


def check_compose(tandem):
    path = os.path.join(ROOT, "docker-compose.yml")
    (doc,) = load_yaml_docs(path)
    expect(str(doc.get("version")) == "2.4", f"{rel(path)}: version {doc.get('version')}, want 2.4 (compose 1.29)")
    services = doc["services"]
    for name, s in services.items():
        for p in s.get("ports", []):
            expect(str(p).startswith("127.0.0.1:"), f"{name} publishes {p} beyond 127.0.0.1")
    t = services["tandem"]
    # source:target[:mode]; the source may hold `${VAR:-default}`.
    mounts = {}
    for v in t["volumes"]:
        parts = v.rsplit(":", 2) if v.endswith((":ro", ":rw")) else v.rsplit(":", 1)
        mounts[parts[1]] = v
    for target in ["/models", "/etc/tandem/tandem.toml", "/etc/tandem/policy", "/ca"]:
        expect(target in mounts and mounts[target].endswith(":ro"), f"tandem mount {target}: {mounts.get(target)}")
    cfg_path = os.path.join(ROOT, mounts["/etc/tandem/tandem.toml"].rsplit(":", 2)[0])
    with open(cfg_path, "rb") as f:
        cfg = tomllib.load(f)
    expect(cfg["server"]["listen"].startswith("0.0.0.0:"), "the compose gateway listens on 0.0.0.0")
    expect(cfg["server"]["client_token_env"] in t["environment"], "the client token variable is not passed")
    expect("tandem" in cfg["server"]["allowed_hosts"], "allowed_hosts lacks the service name")

    # The CA files the gateway trusts are written by mocks it waits for.
    ca_out = {}
    for name, s in services.items():
        cmd = s.get("command", [])
        if "--ca-out" in cmd:
            ca_out[cmd[cmd.index("--ca-out") + 1]] = name
            test = " ".join(s["healthcheck"]["test"])
            expect(cmd[cmd.index("--ca-out") + 1] in test, f"{name}'s healthcheck does not test its CA file")
    for tier in cfg["cloud"]:
        host = tier["endpoints"][0]["url"].split("//")[1].split(":")[0]
        expect(host in services, f"tier {tier['name']}: no service {host}")
        ca = tier.get("extra_ca_file")
        if ca:
            expect(ca_out.get(ca) == host, f"tier {tier['name']} trusts {ca}, which {host} does not write")
            dep = t["depends_on"][host]
            expect(dep["condition"] == "service_healthy", f"tandem does not wait for {host}'s CA: {dep}")
        else:
            expect(host not in ca_out.values(), f"tier {tier['name']}: {host} writes a CA the gateway ignores")
    env = {cfg["server"]["client_token_env"]: "x"}
    compose_policy = os.path.join(ROOT, "config", "compose", "policy", "policy.toml")
    shipped = os.path.join(ROOT, "config", "policy.toml")
    policy_check(tandem, compose_policy, cfg_path, env)
    policy_check(tandem, shipped, cfg_path, env)
    with open(compose_policy) as a, open(shipped) as b:
        ours, theirs = a.read(), b.read()
    for rule in ["private-stays-local", "offline-stays-local"]:
        expect(rule_block(ours, rule) == rule_block(theirs, rule), f"the compose policy's {rule} differs from the shipped one")
    expect(ours.index('name = "private-stays-local"') < ours.index('name = "e2e-cloud"'), "privacy rule must come first")
    how = "parsed"
    if shutil.which("docker-compose"):
        r = subprocess.run(
            ["docker-compose", "--file", path, "--project-directory", ROOT, "config", "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "TANDEM_CLIENT_TOKEN": "x", "TANDEM_CLOUD_API_KEY": "y"},
        )
        expect(r.returncode == 0, f"docker-compose config: {r.stderr.strip()}")
        how = "docker-compose config"
    ok(f"compose file ({how}): 127.0.0.1-only ports, read-only mounts, CA files waited for; "
       "both policies pass `tandem policy check`; privacy rules identical to the shipped policy")


# --- phone and Termux ---------------------------------------------------------


def device_read(daemon, token, what):
    """The device status once the file source has been read, well or not."""

    def read():
        _, st = daemon.get("/v1/status", token=token)
        dev = st["device"]
        return dev if dev["ok_reads"] or dev["failed_reads"] else None

    dev = wait_until(what, read)
    expect(dev["source"] == "file", f"device source {dev['source']}")
    expect(dev["failed_reads"] == 0, f"{what}: {dev['last_error']}")
    return dev


def phone_layout(d, config_src):
    """The app's files directory: config, policy, token, key, model, device.json."""
    with open(config_src, "rb") as f:
        cfg = tomllib.load(f)
    shutil.copy(config_src, os.path.join(d, "tandem.toml"))
    shutil.copy(os.path.join(ROOT, "config", "policy.toml"), os.path.join(d, cfg["policy"]["file"]))
    token = secrets.token_hex(16)
    with open(os.path.join(d, cfg["server"]["client_token_file"]), "w") as f:
        f.write(token + "\n")
    for tier in cfg.get("cloud", []):
        for ep in tier["endpoints"]:
            if "api_key_file" in ep:
                with open(os.path.join(d, ep["api_key_file"]), "w") as f:
                    f.write("sk-test\n")
    for tier in cfg.get("local", []):
        expect(tier.get("load") == "on_demand", f"{rel(config_src)}: a phone loads the model on demand")
        model = os.path.join(d, tier["model"])
        os.makedirs(os.path.dirname(model), exist_ok=True)
        # Only the GGUF header is read at start (load = "on_demand").
        os.symlink(MODEL, model)
    expect(cfg["server"]["listen"].startswith("127.0.0.1:"), f"{rel(config_src)}: loopback only")
    expect(cfg["device"]["source"] == "file", f"{rel(config_src)}: device source")
    return cfg, token


def check_phone(tandem):
    if not os.path.exists(MODEL):
        raise CheckFailed(f"{rel(MODEL)} is missing: run scripts/fetch-model.sh")
    src = os.path.join(DEPLOY, "mobile", "tandem.toml")
    example = os.path.join(DEPLOY, "mobile", "device.example.json")
    with open(example) as f:
        snap = json.load(f)
    with tempfile.TemporaryDirectory() as d:
        cfg, token = phone_layout(d, src)
        shutil.copy(example, os.path.join(d, cfg["device"]["file"]))
        daemon = Daemon(tandem, os.path.join(d, "tandem.toml"), {})
        try:
            dev = device_read(daemon, token, f"reading {rel(example)}")
            state = dev["state"]
            expect(abs(state["battery"] - snap["battery"]) < 1e-6, f"battery {state['battery']} != {snap['battery']}")
            expect(state["thermal"] == snap["thermal"] and state["power_saver"] == snap["power_saver"], f"{state}")
            expect(state["mem_available"] == snap["mem_available_mb"] << 20, f"mem_available {state['mem_available']}")
        finally:
            daemon.stop()
    ok(f"phone embedding: {rel(src)} loads; {rel(example)} read by the file source "
       f"(battery {state['battery']:.2f}, thermal {state['thermal']})")

    # Termux: the feed script with a stand-in `termux-battery-status`.
    feed = os.path.join(DEPLOY, "android", "termux-device-feed.sh")
    expect(os.stat(feed).st_mode & stat.S_IXUSR, f"{rel(feed)} is not executable")
    src = os.path.join(DEPLOY, "android", "tandem.toml")
    with tempfile.TemporaryDirectory() as d:
        bindir = os.path.join(d, "bin")
        os.makedirs(bindir)
        fake = os.path.join(bindir, "termux-battery-status")
        with open(fake, "w") as f:
            f.write(
                "#!/bin/sh\n"
                'echo \'{"health":"GOOD","percentage":17,"plugged":"UNPLUGGED","status":"DISCHARGING",'
                '"temperature":46.5,"current":-512000}\'\n'
            )
        os.chmod(fake, 0o755)
        cfg, token = phone_layout(d, src)
        out = os.path.join(d, cfg["device"]["file"])
        r = subprocess.run(
            ["sh", feed, out],
            env={**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "TANDEM_FEED_ONCE": "1"},
            capture_output=True,
            text=True,
        )
        expect(r.returncode == 0, f"{rel(feed)}: {r.stderr}")
        with open(out) as f:
            fed = json.load(f)
        expect(fed == {"battery": 0.17, "charging": False, "temperature_c": 46.5, "thermal": "serious"}, f"fed {fed}")
        daemon = Daemon(tandem, os.path.join(d, "tandem.toml"), {})
        try:
            dev = device_read(daemon, token, "reading the fed snapshot")
            expect(dev["state"]["thermal"] == "serious", f"device status {dev}")
            expect(dev["state"]["charging"] is False, f"device status {dev}")
        finally:
            daemon.stop()
    ok(f"Termux: {rel(feed)} turns termux-battery-status into a snapshot the daemon reads ({rel(src)} loads)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tandem", default=os.path.join(ROOT, "target", "release", "tandem"))
    tandem = ap.parse_args().tandem
    expect(os.access(tandem, os.X_OK), f"{tandem} is missing: cargo build --release --bin tandem")
    check_systemd(tandem)
    check_launchd()
    check_kubernetes(tandem)
    check_compose(tandem)
    check_phone(tandem)
    print("deployment files: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
