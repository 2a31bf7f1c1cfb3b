"""Tandem through the official OpenAI Python SDK.

Usage: sdk_check.py BASE_URL MODE EXPECT_JSON

BASE_URL is the daemon's `/v1` URL. MODE is one of `chat`, `stream`, `error`,
`failover` or `all`. EXPECT_JSON carries the prompts and the answers the mock
cloud gives them (computed by the Rust test that started the daemon):
`{"prompt": ..., "answer": ..., "cut_prompt": ..., "cut_prefix": ...}`.

Exits 0 when every check of MODE holds, 1 (with the reason on stderr) on the
first mismatch. Prints one line per passed check.
"""

import json
import sys

import openai


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def tandem_of(obj):
    """The `tandem` object the SDK keeps among a response's extra fields."""
    extra = getattr(obj, "model_extra", None) or {}
    return extra.get("tandem")


def check_chat(client, exp):
    r = client.chat.completions.create(
        model="cloud",
        messages=[{"role": "user", "content": exp["prompt"]}],
        max_tokens=16,
    )
    check(r.choices[0].message.content == exp["answer"], f"chat content {r.choices[0].message.content!r}")
    check(r.model == "cloud", f"chat model {r.model!r}")
    check(r.choices[0].finish_reason == "stop", f"finish {r.choices[0].finish_reason!r}")
    check(r.usage is not None and r.usage.completion_tokens == 12, f"usage {r.usage!r}")
    t = tandem_of(r)
    check(t is not None and t["route"] == "cloud", f"tandem {t!r}")

    local = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
    )
    check(bool(local.choices[0].message.content), "local answer is empty")
    check(tandem_of(local)["route"] == "local", f"local tandem {tandem_of(local)!r}")

    ids = [m.id for m in client.models.list()]
    for want in ("auto", "local", "cloud"):
        check(want in ids, f"models {ids!r} lack {want}")


def read_stream(stream, usage_asked=True):
    """Concatenates the deltas; returns (text, ids, last chunk, usage).

    Without `include_usage` every chunk must have a choice: the common
    loop `chunk.choices[0].delta.content` reads them unguarded."""
    text, ids, last, usage = [], set(), None, None
    for chunk in stream:
        ids.add(chunk.id)
        last = chunk
        if chunk.usage is not None:
            usage = chunk.usage
        if not usage_asked:
            check(len(chunk.choices) == 1, f"a chunk without a choice: {chunk!r}")
        for c in chunk.choices:
            if c.delta and c.delta.content:
                text.append(c.delta.content)
    return "".join(text), ids, last, usage


def check_stream(client, exp):
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": exp["prompt"]}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, ids, last, usage = read_stream(stream)
    check(text == exp["answer"], f"stream text {text!r}")
    check(len(ids) == 1, f"stream ids {ids!r}")
    check(usage is not None and usage.completion_tokens == 12, f"stream usage {usage!r}")
    t = tandem_of(last)
    check(t is not None and t["route"] == "cloud", f"stream tandem {t!r}")


def check_error(client, exp):
    try:
        client.chat.completions.create(
            model="no-such-model",
            messages=[{"role": "user", "content": exp["prompt"]}],
            max_tokens=8,
        )
    except openai.NotFoundError as e:
        check(e.status_code == 404, f"status {e.status_code}")
        body = e.body if isinstance(e.body, dict) else {}
        # The SDK hands over the `error` object itself.
        code = body.get("code") or (body.get("error") or {}).get("code")
        check(code == "model_not_found", f"error body {e.body!r}")
        return
    raise Mismatch("an unknown model did not raise openai.NotFoundError")


def check_failover(client, exp):
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": exp["cut_prompt"]}],
        max_tokens=16,
        stream=True,
        extra_headers={"x-tandem-app": "cut"},
    )
    text, ids, last, _ = read_stream(stream, usage_asked=False)
    check(last.choices[0].finish_reason is not None, f"failover ends without a finish reason: {last!r}")
    prefix = exp["cut_prefix"]
    check(text.startswith(prefix), f"failover text {text!r} lacks the cloud's {prefix!r}")
    check(len(text) > len(prefix), f"failover text {text!r} has no local continuation")
    check(len(ids) == 1, f"failover ids {ids!r}")
    t = tandem_of(last)
    check(t is not None and t["route"] == "local", f"failover tandem {t!r}")
    hs = t.get("handovers") or []
    check(
        len(hs) == 1 and hs[0]["from"] == "cloud-cut" and hs[0]["to"] == "local" and hs[0]["after_content"] is True,
        f"failover handovers {hs!r}",
    )


CHECKS = {"chat": check_chat, "stream": check_stream, "error": check_error, "failover": check_failover}


def main():
    if len(sys.argv) != 4 or (sys.argv[2] not in CHECKS and sys.argv[2] != "all"):
        print(__doc__, file=sys.stderr)
        return 2
    base_url, mode, expect = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=90.0)
    names = list(CHECKS) if mode == "all" else [mode]
    for name in names:
        try:
            CHECKS[name](client, expect)
        except Mismatch as e:
            print(f"sdk_check {name}: MISMATCH: {e}", file=sys.stderr)
            return 1
        except openai.OpenAIError as e:
            print(f"sdk_check {name}: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"sdk_check {name}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
