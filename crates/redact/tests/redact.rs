//! Redaction of whole conversations and restoration of answers, table-driven,
//! plus property tests: restore(redact(x)) == x and no value leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::{ChatRequest, Event, FinishReason};
use proptest::prelude::*;
use redact::{
    EventRestorer, JsonRestorer, PlaceholderMap, Restorer, Span, redact, restore_all, restore_completion,
    restore_json_all,
};
use serde_json::{Value, json};

fn request(messages: Value) -> ChatRequest {
    ChatRequest::from_slice(json!({"model": "auto", "messages": messages}).to_string().as_bytes()).unwrap()
}

/// The span of the `nth` occurrence of `needle` in message `message`'s text.
fn span_nth(req: &ChatRequest, message: usize, needle: &str, nth: usize, label: &'static str) -> Span {
    let text = req.messages[message].text();
    let (start, _) = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    Span {
        message,
        byte_start: start,
        byte_end: start + needle.len(),
        label,
    }
}

fn span(req: &ChatRequest, message: usize, needle: &str, label: &'static str) -> Span {
    span_nth(req, message, needle, 0, label)
}

/// The span of the first `needle` in the request's side texts, indexed as
/// the scanner reports it (past the messages).
fn side_span(req: &ChatRequest, needle: &str, label: &'static str) -> Span {
    let side = req.side_texts();
    let k = side.iter().position(|t| t.contains(needle)).unwrap();
    let start = side[k].find(needle).unwrap();
    Span {
        message: req.messages.len() + k,
        byte_start: start,
        byte_end: start + needle.len(),
        label,
    }
}

fn text(req: &ChatRequest, i: usize) -> String {
    req.messages[i].text().into_owned()
}

/// Every char boundary of `s`, ends included.
fn boundaries(s: &str) -> Vec<usize> {
    (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
}

/// The held-back amount the brief asks for: the text from the last `[`
/// when it is a proper prefix of a known placeholder (any case), else none.
fn minimal_hold(map: &PlaceholderMap, s: &str) -> usize {
    let Some(k) = s.rfind('[') else { return 0 };
    let tail = s[k..].to_ascii_uppercase();
    let viable = map
        .placeholders()
        .any(|(p, _)| p.len() > tail.len() && p.starts_with(&tail));
    if viable { s.len() - k } else { 0 }
}

#[test]
fn placeholders_are_stable_across_turns() {
    let turn1 = request(json!([
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Email ann@x.io and tell Bob Li about card 4111 1111 1111 1111."}
    ]));
    let spans1 = [
        span(&turn1, 1, "ann@x.io", "email"),
        span(&turn1, 1, "Bob Li", "person"),
        span(&turn1, 1, "4111 1111 1111 1111", "credit_card"),
    ];
    let r1 = redact(&turn1, &spans1);
    assert_eq!(
        text(&r1.request, 1),
        "Email [EMAIL_1] and tell [PERSON_1] about card [CREDIT_CARD_1]."
    );
    let answer = restore_all("Sure: I'll email [EMAIL_1] and let [person_1] know.", &r1.map);
    assert_eq!(answer, "Sure: I'll email ann@x.io and let Bob Li know.");

    // Turn 2 resends turn 1 and the restored answer. The scanner misses the
    // e-mail in the answer; the new message reuses two values in another
    // case and adds one.
    let turn2 = request(json!([
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Email ann@x.io and tell Bob Li about card 4111 1111 1111 1111."},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Also cc ANN@X.IO and carol@y.org, and ask Bob Li."}
    ]));
    let mut spans2 = vec![
        span(&turn2, 1, "ann@x.io", "email"),
        span(&turn2, 1, "Bob Li", "person"),
        span(&turn2, 1, "4111 1111 1111 1111", "credit_card"),
        span(&turn2, 2, "Bob Li", "person"),
        span(&turn2, 3, "ANN@X.IO", "email"),
        span(&turn2, 3, "carol@y.org", "email"),
        span(&turn2, 3, "Bob Li", "person"),
    ];
    let want = [
        "You are helpful.",
        "Email [EMAIL_1] and tell [PERSON_1] about card [CREDIT_CARD_1].",
        "Sure: I'll email [EMAIL_1] and let [PERSON_1] know.",
        "Also cc [EMAIL_1] and [EMAIL_2], and ask [PERSON_1].",
    ];
    for shuffle in 0..3 {
        // The scanner's order must not matter.
        spans2.rotate_left(shuffle * 2);
        let r2 = redact(&turn2, &spans2);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(text(&r2.request, i), *w, "message {i}, shuffle {shuffle}");
        }
        assert_eq!(
            r2.request.messages[..2],
            r1.request.messages[..],
            "turn 1 resent unchanged"
        );
        assert_eq!(r2.map.len(), 4);
        assert_eq!(r2.map.labels(), ["email", "person", "credit_card"]);
        assert_eq!(r2.map.value("[EMAIL_2]"), Some("carol@y.org"));
        // Restoration gives the value as first flagged.
        assert_eq!(restore_all("[Email_1]", &r2.map), "ann@x.io");
    }
}

#[test]
fn unflagged_occurrences_tool_arguments_and_tool_results_are_redacted() {
    let req = request(json!([
        {"role": "user", "content": "Book for 张伟, phone +62 812 555 0199."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "book",
             "arguments": "{\"guest\":\"张伟\",\"guest_ascii\":\"\\u5f20\\u4f1f\",\"phone\":\"+62 812 555 0199\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\":true,\"guest\":\"\\u5F20\\u4F1F\",\"note\":\"O\\\"Neil\"}"},
        {"role": "user", "content": [
            {"type": "text", "text": "Also add O\"Neil"},
            {"type": "image_url", "image_url": {"url": "data:"}},
            {"type": "text", "text": "and 张伟's wife."}
        ]}
    ]));
    let spans = [
        span(&req, 0, "张伟", "person"),
        span(&req, 0, "+62 812 555 0199", "phone"),
        span(&req, 3, "O\"Neil", "person"),
    ];
    let r = redact(&req, &spans);
    let out = serde_json::to_value(&r.request).unwrap();
    assert_eq!(out["messages"][0]["content"], "Book for [PERSON_1], phone [PHONE_1].");
    assert_eq!(
        out["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"guest":"[PERSON_1]","guest_ascii":"[PERSON_1]","phone":"[PHONE_1]"}"#
    );
    assert_eq!(out["messages"][1]["tool_calls"][0]["id"], "c1");
    assert_eq!(
        out["messages"][2]["content"],
        r#"{"ok":true,"guest":"[PERSON_1]","note":"[PERSON_2]"}"#
    );
    assert_eq!(out["messages"][3]["content"][0]["text"], "Also add [PERSON_2]");
    assert_eq!(out["messages"][3]["content"][1]["image_url"]["url"], "data:");
    assert_eq!(out["messages"][3]["content"][2]["text"], "and [PERSON_1]'s wife.");
    let wire = out.to_string();
    for v in ["张伟", "5f20", "5F20", "555 0199", "Neil"] {
        assert!(!wire.contains(v), "{v} left in {wire}");
    }
}

#[test]
fn spans_in_side_texts_are_redacted_wherever_the_value_is() {
    let mut req = request(json!([
        {"role": "user", "content": "Pay the usual invoice."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "pay",
             "arguments": "{\"card\":\"4111 1111 1111 1111\"}"}}
        ]},
        {"role": "user", "content": "Again, please."}
    ]));
    req.extra.insert("metadata".into(), json!({"owner": "ops@example.com"}));
    let side = req.side_texts();
    let spans = [
        side_span(&req, "4111 1111 1111 1111", "credit_card"),
        side_span(&req, "ops@example.com", "email"),
        // Past every side text: ignored, never a panic.
        Span {
            message: req.messages.len() + side.len(),
            byte_start: 0,
            byte_end: 1,
            label: "email",
        },
    ];
    let r = redact(&req, &spans);
    let out = serde_json::to_value(&r.request).unwrap();
    assert_eq!(
        out["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"card":"[CREDIT_CARD_1]"}"#
    );
    assert_eq!(out["metadata"]["owner"], "[EMAIL_1]");
    assert_eq!(r.map.len(), 2);

    // A participant name keeps OpenAI's pattern ([a-zA-Z0-9_-]).
    let req = request(json!([{"role": "user", "name": "ops@example.com", "content": "Hi, ops@example.com here."}]));
    let r = redact(&req, &[span(&req, 0, "ops@example.com", "email")]);
    let out = serde_json::to_value(&r.request).unwrap();
    assert_eq!(out["messages"][0]["name"], "EMAIL_1");
    assert_eq!(out["messages"][0]["content"], "Hi, [EMAIL_1] here.");
}

/// A value found only in an earlier turn's tool call keeps its number when
/// the next turn adds a value of the same kind to a later message.
#[test]
fn side_text_values_keep_their_numbers_across_turns() {
    let turn1 = request(json!([
        {"role": "user", "content": "Send the report."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "send", "arguments": "{\"to\":\"a@x.io\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sent"}
    ]));
    let r1 = redact(&turn1, &[side_span(&turn1, "a@x.io", "email")]);
    assert_eq!(r1.map.value("[EMAIL_1]"), Some("a@x.io"));

    let mut messages = serde_json::to_value(&turn1.messages).unwrap();
    messages
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": "Copy b@x.io too."}));
    let turn2 = request(messages);
    let spans = [span(&turn2, 3, "b@x.io", "email"), side_span(&turn2, "a@x.io", "email")];
    let r2 = redact(&turn2, &spans);
    assert_eq!(r2.map.value("[EMAIL_1]"), Some("a@x.io"), "{:?}", r2.map);
    assert_eq!(r2.map.value("[EMAIL_2]"), Some("b@x.io"));
}

#[test]
fn multibyte_text_around_spans_and_spans_across_parts() {
    let req = request(json!([
        {"role": "user", "content": "😀张伟😀说：邮箱 wei@例子.cn，电话１３８。"},
        {"role": "user", "content": [
            {"type": "text", "text": "Kirim ke Budi"},
            {"type": "text", "text": "Santoso 🙏 ya"}
        ]}
    ]));
    let joined = text(&req, 1);
    assert_eq!(joined, "Kirim ke Budi\nSantoso 🙏 ya");
    let start = joined.find("Budi").unwrap();
    let spans = [
        span(&req, 0, "张伟", "person"),
        span(&req, 0, "wei@例子.cn", "email"),
        span(&req, 0, "１３８", "phone"),
        Span {
            message: 1,
            byte_start: start,
            byte_end: start + "Budi\nSantoso".len(),
            label: "person",
        },
    ];
    let r = redact(&req, &spans);
    assert_eq!(text(&r.request, 0), "😀[PERSON_1]😀说：邮箱 [EMAIL_1]，电话[PHONE_1]。");
    // Each part's piece has its own placeholder; the joining newline stays.
    assert_eq!(text(&r.request, 1), "Kirim ke [PERSON_2]\n[PERSON_3] 🙏 ya");
    for i in 0..2 {
        assert_eq!(restore_all(&text(&r.request, i), &r.map), text(&req, i));
    }
}

#[test]
fn invalid_and_overlapping_spans() {
    let req = request(json!([
        {"role": "user", "content": "x 🙂 Ann Marie Lee y"},
        {"role": "assistant", "content": null},
        {"role": "user", "content": "tail"}
    ]));
    let t = text(&req, 0);
    let emoji = t.find('🙂').unwrap();
    let ann = t.find("Ann").unwrap();
    let s = |message, byte_start, byte_end| Span {
        message,
        byte_start,
        byte_end,
        label: "person",
    };
    let cases: &[(&str, Vec<Span>, &str)] = &[
        ("no spans", vec![], "x 🙂 Ann Marie Lee y"),
        ("message out of range", vec![s(7, 0, 1)], "x 🙂 Ann Marie Lee y"),
        ("message without content", vec![s(1, 0, 1)], "x 🙂 Ann Marie Lee y"),
        (
            "end past the text",
            vec![s(0, ann, t.len() + 1)],
            "x 🙂 Ann Marie Lee y",
        ),
        ("inside a char", vec![s(0, emoji + 1, ann + 3)], "x 🙂 Ann Marie Lee y"),
        ("empty", vec![s(0, ann, ann)], "x 🙂 Ann Marie Lee y"),
        ("reversed", vec![s(0, ann + 3, ann)], "x 🙂 Ann Marie Lee y"),
        ("huge", vec![s(0, usize::MAX - 1, usize::MAX)], "x 🙂 Ann Marie Lee y"),
        (
            "contained",
            vec![s(0, ann, ann + 13), s(0, ann + 4, ann + 9)],
            "x 🙂 [PERSON_1] y",
        ),
        (
            "overlapping: the union",
            vec![s(0, ann + 4, ann + 13), s(0, ann, ann + 8)],
            "x 🙂 [PERSON_1] y",
        ),
        (
            "touching: two values",
            vec![s(0, ann, ann + 3), s(0, ann + 3, ann + 13)],
            "x 🙂 [PERSON_1][PERSON_2] y",
        ),
        (
            "valid among invalid",
            vec![s(0, 0, 1), s(9, 0, 1), s(0, 2, 3)],
            "[PERSON_1] 🙂 Ann Marie Lee y",
        ),
    ];
    for (name, spans, want) in cases {
        let r = redact(&req, spans);
        assert_eq!(text(&r.request, 0), *want, "{name}");
        assert_eq!(text(&r.request, 2), "tail", "{name}");
        assert_eq!(restore_all(want, &r.map), t, "{name}");
    }
}

/// A map with e-mail, person and card values, and an answer using them.
fn answer_fixture() -> (PlaceholderMap, &'static str, &'static str) {
    let req = request(json!([
        {"role": "user", "content": "a@b.io 王芳 4111-1111 c@d.io"}
    ]));
    let spans = [
        span(&req, 0, "a@b.io", "email"),
        span(&req, 0, "王芳", "person"),
        span(&req, 0, "4111-1111", "credit_card"),
        span(&req, 0, "c@d.io", "email"),
    ];
    let map = redact(&req, &spans).map;
    let answer = "好的😀[EMAIL_1]，[person_1]的卡[Credit_Card_1]。[EMAIL_9] [X] [[EMAIL_2]] [EMAIL_] [] \
                  [EMAIL_1 ] [EMAIL_2][EMAIL_1][em[email_2]Z [EMAIL_1";
    let want = "好的😀a@b.io，王芳的卡4111-1111。[EMAIL_9] [X] [c@d.io] [EMAIL_] [] \
                [EMAIL_1 ] c@d.ioa@b.io[emc@d.ioZ [EMAIL_1";
    (map, answer, want)
}

#[test]
fn restore_whole_answer_case_changes_unknowns_and_look_alikes() {
    let (map, answer, want) = answer_fixture();
    assert_eq!(restore_all(answer, &map), want);
    for (input, want) in [
        ("[EMAIL_1]", "a@b.io"),
        ("[email_1]", "a@b.io"),
        ("[Email_1]", "a@b.io"),
        ("[eMaIl_2]", "c@d.io"),
        ("[EMAIL_3]", "[EMAIL_3]"),
        ("[EMAIL_1", "[EMAIL_1"),
        ("EMAIL_1]", "EMAIL_1]"),
        ("[EMAIL-1]", "[EMAIL-1]"),
        ("[ＥMAIL_1]", "[ＥMAIL_1]"),
        ("[[[", "[[["),
        ("", ""),
    ] {
        assert_eq!(restore_all(input, &map), want, "{input}");
    }
}

#[test]
fn stream_split_at_every_position_and_every_pair() {
    let (map, answer, want) = answer_fixture();
    let cuts = boundaries(answer);
    let check = |parts: &[&str]| {
        let mut r = Restorer::new(&map);
        let mut got = String::new();
        let mut fed = String::new();
        for p in parts {
            fed.push_str(p);
            got.push_str(&r.push(p));
            // Minimal hold, and what is out is exactly the restored prefix.
            assert_eq!(r.held(), minimal_hold(&map, &fed), "after {fed:?}");
            assert_eq!(got, restore_all(&fed[..fed.len() - r.held()], &map), "after {fed:?}");
        }
        got.push_str(&r.finish());
        assert_eq!(got, want, "{parts:?}");
    };
    for &i in &cuts {
        check(&[&answer[..i], &answer[i..]]);
    }
    for (a, &i) in cuts.iter().enumerate() {
        for &j in &cuts[a..] {
            check(&[&answer[..i], &answer[i..j], &answer[j..]]);
        }
    }
    // One char at a time.
    let chars: Vec<String> = answer.chars().map(String::from).collect();
    check(&chars.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn hold_back_is_minimal() {
    let (map, _, _) = answer_fixture();
    // (chunk, released, held after)
    let steps: &[(&str, &str, usize)] = &[
        ("Hello ", "Hello ", 0),
        ("[", "", 1),
        ("EMA", "", 4),
        ("IL_1", "", 8),
        ("] and [X", "a@b.io and [X", 0),
        ("[cr", "", 3),
        ("edit_card_1]!", "4111-1111!", 0),
        ("[EMAIL_9", "[EMAIL_9", 0),
        ("[EMAIL_1[", "[EMAIL_1", 1),
        ("a", "[a", 0),
        ("写[", "写", 1),
        ("PERSON_1", "", 9),
        ("]😀", "王芳😀", 0),
        ("[EMAIL_", "", 7),
    ];
    let mut r = Restorer::new(&map);
    for (chunk, out, held) in steps {
        assert_eq!(r.push(chunk), *out, "{chunk}");
        assert_eq!(r.held(), *held, "{chunk}");
    }
    assert_eq!(r.finish(), "[EMAIL_");
    assert_eq!(r.held(), 0);
    // An empty map holds nothing, ever.
    let empty = redact(&request(json!([{"role": "user", "content": "x"}])), &[]).map;
    let mut r = Restorer::new(&empty);
    assert_eq!(r.push("a ["), "a [");
    assert_eq!(r.held(), 0);
    assert!(empty.is_empty());
}

fn json_fixture() -> PlaceholderMap {
    let req = request(json!([
        {"role": "user", "content": "to a@b.io, note pa\"ss\\wörd\n张, name Ann"}
    ]));
    let spans = [
        span(&req, 0, "a@b.io", "email"),
        span(&req, 0, "pa\"ss\\wörd\n张", "secret"),
        span(&req, 0, "Ann", "person"),
    ];
    redact(&req, &spans).map
}

#[test]
fn json_restoration_escapes_values_even_split_across_deltas() {
    let map = json_fixture();
    let args =
        r#"{"to":"[EMAIL_1]","note":"say [secret_1]!","who":[PERSON_1],"list":["[X]",[1]],"esc":"\"[EMAIL_1]\\"}"#;
    let want = json!({
        "to": "a@b.io",
        "note": "say pa\"ss\\wörd\n张!",
        "who": "Ann",
        "list": ["[X]", [1]],
        "esc": "\"a@b.io\\",
    });
    let whole = restore_json_all(args, &map);
    assert_eq!(serde_json::from_str::<Value>(&whole).unwrap(), want, "{whole}");
    let cuts = boundaries(args);
    for (a, &i) in cuts.iter().enumerate() {
        for &j in &cuts[a..] {
            let mut r = JsonRestorer::new(&map);
            let mut got = r.push(&args[..i]);
            got.push_str(&r.push(&args[i..j]));
            got.push_str(&r.push(&args[j..]));
            got.push_str(&r.finish());
            assert_eq!(got, whole, "split at {i},{j}");
        }
    }
    // In plain text the same value is written as is.
    assert_eq!(restore_all("[SECRET_1]", &map), "pa\"ss\\wörd\n张");
}

#[test]
fn event_stream_restoration_keeps_order() {
    let map = json_fixture();
    let mut r = EventRestorer::new(&map);
    let mut out = Vec::new();
    for ev in [
        Event::text("Writing to [EMA"),
        Event::text("IL_1] for [PERS"),
        Event::ToolCall {
            index: 0,
            id: Some("call_1".into()),
            name: Some("send".into()),
            arguments: "{\"to\":\"[EMAIL".into(),
        },
        Event::ToolCall {
            index: 0,
            id: None,
            name: None,
            arguments: "_1]\",\"body\":\"[SECRET".into(),
        },
        Event::ToolCall {
            index: 1,
            id: Some("call_2".into()),
            name: Some("log".into()),
            arguments: "{\"who\":\"[Person_1]\"}".into(),
        },
        Event::Finish(FinishReason::ToolCalls),
    ] {
        out.extend(r.push(ev));
    }
    out.extend(r.finish());
    let call = |index, id: Option<&str>, name: Option<&str>, arguments: &str| Event::ToolCall {
        index,
        id: id.map(str::to_owned),
        name: name.map(str::to_owned),
        arguments: arguments.to_owned(),
    };
    assert_eq!(
        out,
        vec![
            Event::text("Writing to "),
            Event::text("a@b.io for "),
            // The text held at the switch to a tool call is released as is.
            Event::text("[PERS"),
            call(0, Some("call_1"), Some("send"), "{\"to\":\""),
            call(0, None, None, "a@b.io\",\"body\":\""),
            call(0, None, None, "[SECRET"),
            call(1, Some("call_2"), Some("log"), "{\"who\":\"Ann\"}"),
            Event::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn non_stream_completion_is_restored_in_place() {
    let map = json_fixture();
    let mut completion = json!({
        "id": "x",
        "choices": [{"index": 0, "message": {
            "role": "assistant",
            "content": "Hi [PERSON_1], mailed [email_1].",
            "tool_calls": [{"id": "c", "type": "function",
                            "function": {"name": "f", "arguments": "{\"p\":\"[SECRET_1]\"}"}}]
        }}]
    });
    restore_completion(&mut completion, &map);
    let msg = &completion["choices"][0]["message"];
    assert_eq!(msg["content"], "Hi Ann, mailed a@b.io.");
    let args: Value = serde_json::from_str(msg["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["p"], "pa\"ss\\wörd\n张");

    // Reasoning, refusals and content as parts are the app's text too.
    let mut completion = json!({"choices": [{"index": 0, "message": {
        "role": "assistant",
        "content": [{"type": "text", "text": "To [PERSON_1]"}],
        "reasoning_content": "write to [email_1]",
        "refusal": "not [Person_1]"
    }}]});
    restore_completion(&mut completion, &map);
    let msg = &completion["choices"][0]["message"];
    assert_eq!(msg["content"][0]["text"], "To Ann");
    assert_eq!(msg["reasoning_content"], "write to a@b.io");
    assert_eq!(msg["refusal"], "not Ann");
    assert_eq!(msg["role"], "assistant");
}

#[test]
fn refusals_and_reasoning_are_restored_as_they_stream() {
    let map = json_fixture();
    let aside = |key: &str, text: &str| Event::Aside {
        key: key.into(),
        text: text.into(),
    };
    let mut r = EventRestorer::new(&map);
    let mut out = Vec::new();
    for ev in [
        aside("reasoning_content", "Mail [EMA"),
        Event::text("Hi [PERS"),
        aside("reasoning_content", "IL_1] now"),
        Event::text("ON_1]"),
        aside("refusal", "not [person_1"),
        Event::Finish(FinishReason::Stop),
    ] {
        out.extend(r.push(ev));
    }
    out.extend(r.finish());
    let joined = |want: &str| -> String {
        out.iter()
            .filter_map(|e| match e {
                Event::Aside { key, text } if key == want => Some(text.as_str()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(joined("reasoning_content"), "Mail a@b.io now");
    assert_eq!(
        joined("refusal"),
        "not [person_1",
        "not a placeholder: passed on as it came"
    );
    let text: String = out
        .iter()
        .filter_map(|e| match e {
            Event::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hi Ann");
    assert!(matches!(out.last(), Some(Event::Finish(_))), "{out:?}");
}

#[test]
fn no_flagged_value_leaves_in_any_field_of_the_request() {
    let req = ChatRequest::from_slice(
        json!({
            "model": "auto",
            "user": "ann@x.io",
            "metadata": {"owner": "ann@x.io"},
            "prediction": {"type": "content", "content": "To: ann@x.io"},
            "stop": ["ann@x.io"],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
                "type": "object", "properties": {"to": {"enum": ["ann@x.io"]}}}}},
            "tools": [{"type": "function", "function": {"name": "send",
                "description": "Send mail, usually to ann@x.io"}}],
            "messages": [
                {"role": "user", "content": "mail ann@x.io", "name": "ann@x.io"},
                {"role": "assistant", "content": null, "refusal": "won't mail ann@x.io",
                 "reasoning_content": "ann@x.io is the user",
                 "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "send", "arguments": {"to": "ann@x.io"}}}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "again ann@x.io"},
                    {"type": "image_url", "image_url": {"url": "https://x.io/ann@x.io.png"}}
                ]}
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let spans = [span(&req, 0, "ann@x.io", "email")];
    let r = redact(&req, &spans);
    let sent = serde_json::to_string(&r.request).unwrap();
    assert!(!sent.contains("ann@x.io"), "{sent}");
    assert_eq!(sent.matches("[EMAIL_1]").count(), 12, "{sent}");
    // The participant name, in the form OpenAI accepts there.
    assert_eq!(r.request.messages[0].extra["name"], "EMAIL_1");
    // Structure is untouched.
    assert_eq!(r.request.model, "auto");
    assert_eq!(r.request.messages[1].extra["tool_calls"][0]["id"], "c1");
}

#[test]
fn redact_str_hides_text_sent_besides_the_request() {
    let map = json_fixture();
    assert_eq!(
        map.redact_str("so far: A@B.IO and Ann"),
        "so far: [EMAIL_1] and [PERSON_1]"
    );
}

// ---- properties ----

const LABELS: [&str; 3] = ["person", "id", "email"];

/// Random messages (no backslash and no `_`, so no text is an escaped
/// spelling of a value or a placeholder) and random spans, some invalid.
fn conversation() -> impl Strategy<Value = (Vec<String>, Vec<Span>)> {
    let texts = prop::collection::vec("[a-dA-D \"\\[\\]0-9,张伟😀é]{0,24}", 1..5);
    texts
        .prop_flat_map(|texts| {
            let n = texts.len();
            let raw = prop::collection::vec((0..n + 1, 0usize..40, 0usize..40, 0..LABELS.len(), any::<bool>()), 0..8);
            (Just(texts), raw)
        })
        .prop_map(|(texts, raw)| {
            let spans = raw
                .into_iter()
                .map(|(message, a, b, l, as_chars)| {
                    // Mostly char offsets made valid; sometimes raw bytes.
                    let (a, b) = (a.min(b), a.max(b));
                    let (byte_start, byte_end) = match texts.get(message) {
                        Some(t) if as_chars => {
                            let idx = |c: usize| {
                                t.char_indices()
                                    .map(|(i, _)| i)
                                    .chain([t.len()])
                                    .nth(c)
                                    .unwrap_or(t.len())
                            };
                            (idx(a), idx(b))
                        }
                        _ => (a, b),
                    };
                    Span {
                        message,
                        byte_start,
                        byte_end,
                        label: LABELS[l],
                    }
                })
                .collect();
            (texts, spans)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn redact_then_restore_round_trips_and_nothing_leaks((texts, spans) in conversation(), cuts in prop::collection::vec(0usize..64, 0..6)) {
        let messages: Vec<Value> = texts.iter().map(|t| json!({"role": "user", "content": t})).collect();
        let req = request(Value::Array(messages));
        let r = redact(&req, &spans);
        let has_email = r.map.labels().contains(&"email");
        // The values that were flagged, as the map restores them.
        let values: Vec<(String, &str)> = r
            .map
            .placeholders()
            .map(|(p, l)| (r.map.value(p).unwrap().to_owned(), l))
            .collect();
        for (i, original) in texts.iter().enumerate() {
            let red = text(&r.request, i);
            let back = restore_all(&red, &r.map);
            if has_email {
                prop_assert!(back.eq_ignore_ascii_case(original), "{back:?} vs {original:?}");
            } else {
                prop_assert_eq!(&back, original);
            }
            // Streamed in random chunks, the same.
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (red.len() + 1)).filter(|&c| red.is_char_boundary(c)).collect();
            bounds.sort_unstable();
            let mut rs = Restorer::new(&r.map);
            let mut streamed = String::new();
            let mut at = 0;
            for b in bounds.into_iter().chain([red.len()]) {
                streamed.push_str(&rs.push(&red[at..b]));
                at = b;
            }
            streamed.push_str(&rs.finish());
            prop_assert_eq!(&streamed, &back);
            // No value in the JSON that leaves, outside the placeholders.
            let mut wire = serde_json::to_string(&r.request.messages[i].content).unwrap();
            for (p, _) in r.map.placeholders() {
                wire = wire.replace(p, "\u{1}");
            }
            for (v, label) in &values {
                let v = redact_json_escape(v);
                let leaked = if *label == "email" {
                    wire.to_ascii_lowercase().contains(&v.to_ascii_lowercase())
                } else {
                    wire.contains(&v)
                };
                prop_assert!(!leaked, "{v:?} in {wire:?}");
            }
        }
    }
}

fn redact_json_escape(v: &str) -> String {
    let s = serde_json::to_string(v).unwrap();
    s[1..s.len() - 1].to_owned()
}
