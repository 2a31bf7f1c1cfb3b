//! Bad policy files are refused with the file, the line and column of the
//! culprit, and a reason naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use policy::{ErrorKind, Policy, PolicyError, Targets};

fn targets() -> Targets {
    Targets::new().with_local("local").with_cloud("cloud")
}

fn refuse(text: &str) -> PolicyError {
    match Policy::parse(text, Path::new("conf/bad.toml"), &targets()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// `(what, file text, line, column, kind, words the reason must hold)`.
type Case = (&'static str, &'static str, usize, usize, ErrorKind, &'static str);

const HEAD: &str = "version = 1\n";

#[test]
fn bad_files_are_refused_at_the_right_place() {
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("unterminated string",
         "version = 1\n[[rule]]\nname = \"a\nwhen = \"true\"\n", 3, 10, ErrorKind::Syntax, "string"),
        ("unknown field in a rule",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\ncolud = \"never\"\n", 6, 1, ErrorKind::Syntax, "unknown field `colud`"),
        ("unknown top-level field",
         "version = 1\ndefault_tier = \"local\"\n", 2, 1, ErrorKind::Syntax, "unknown field `default_tier`"),
        ("unknown cloud value",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\ncloud = \"sometimes\"\n", 6, 9, ErrorKind::Syntax, "sometimes"),
        ("missing target",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\n", 2, 1, ErrorKind::Syntax, "missing field `target`"),
        ("unknown target",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"clod\"\n", 5, 10, ErrorKind::UnknownTarget, "unknown target 'clod'; known targets: local, cloud, cascade, redact-then-cloud"),
        ("unknown fallback",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\nfallbacks = [\"cloud\", \"npu\"]\n", 6, 23, ErrorKind::UnknownTarget, "unknown fallback 'npu'"),
        ("strategy as a fallback",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\nfallbacks = [\"cascade\"]\n", 6, 14, ErrorKind::UnknownTarget, "is a strategy"),
        ("fallback repeating the target",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\nfallbacks = [\"local\"]\n", 6, 14, ErrorKind::UnknownTarget, "already tried first"),
        ("fallback listed twice",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\nfallbacks = [\"cloud\", \"cloud\"]\n", 6, 23, ErrorKind::UnknownTarget, "listed twice"),
        ("bad CEL",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"privacy >= \"\ntarget = \"local\"\n", 4, 20, ErrorKind::BadCondition, "not valid CEL"),
        ("bad CEL in the middle",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"privacy >=* 0.5\"\ntarget = \"local\"\n", 4, 19, ErrorKind::BadCondition, "Syntax error"),
        ("unknown signal",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"complexity > 0.5 && batery < 0.2\"\ntarget = \"cloud\"\n", 4, 29, ErrorKind::UnknownSignal, "unknown signal 'batery'; did you mean 'battery'?"),
        ("unknown signal in a multi-line condition",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"\"\"\nprivacy > 0.5 ||\n  prompt.contains('x')\n\"\"\"\ntarget = \"local\"\n", 6, 3, ErrorKind::UnknownSignal, "unknown signal 'prompt'"),
        ("comprehension variable escaping its scope",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"entities.exists(e, e == 'x') && e == 'y'\"\ntarget = \"local\"\n", 4, 41, ErrorKind::UnknownSignal, "unknown signal 'e'"),
        ("condition of the wrong type",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"thermal >= 2\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "cannot be evaluated"),
        ("wrong type behind a short circuit",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"local_ready && !cloud_up && thermal >= 2\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "cannot be evaluated"),
        ("wrong type behind a threshold",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"complexity > 0.95 ? thermal >= 2 : false\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "cannot be evaluated"),
        ("condition failing on every sample",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"app.matches('[')\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "could never match"),
        ("constant division by zero",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"max_tokens / 0 > 1\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "could never match"),
        ("condition that is not a bool",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"complexity * 2.0\"\ntarget = \"local\"\n", 4, 9, ErrorKind::BadCondition, "gives a float, not a bool"),
        ("cloud target with cloud = never",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"cloud\"\ncloud = \"never\"\n", 5, 10, ErrorKind::CloudConflict, "cloud = \"never\" but target 'cloud' is a cloud tier"),
        ("cloud fallback with cloud = never",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\ncloud = \"never\"\nfallbacks = [\"cloud\"]\n", 7, 14, ErrorKind::CloudConflict, "fallback 'cloud' is a cloud tier"),
        ("cascade with cloud = never",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"cascade\"\ncloud = \"never\"\n", 5, 10, ErrorKind::CloudConflict, "strategy 'cascade' sends the text to the cloud"),
        ("redact-then-cloud with cloud = allowed",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"redact-then-cloud\"\ncloud = \"allowed\"\n", 6, 9, ErrorKind::CloudConflict, "needs cloud = \"redacted\""),
        ("no rules",
         "version = 1\ndefault_local = \"local\"\n", 3, 1, ErrorKind::NoRules, "no rules"),
        ("last rule not a catch-all",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"privacy > 0.5\"\ntarget = \"local\"\n", 4, 9, ErrorKind::NoCatchAll, "must be a catch-all"),
        ("rule after a catch-all",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\n[[rule]]\nname = \"b\"\nwhen = \"privacy > 0.5\"\ntarget = \"local\"\n", 6, 1, ErrorKind::Unreachable, "rule 'b' can never match: rule 'a' (line 2) above it matches every request"),
        ("rule that is always false",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"1 > 2\"\ntarget = \"cloud\"\n[[rule]]\nname = \"b\"\nwhen = \"true\"\ntarget = \"local\"\n", 4, 9, ErrorKind::Unreachable, "always false"),
        ("duplicate rule names",
         "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"privacy > 0.5\"\ntarget = \"local\"\n[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\n", 7, 8, ErrorKind::BadName, "duplicate rule name 'a': line 3"),
        ("name unfit for a header",
         "version = 1\n[[rule]]\nname = \"private rule\"\nwhen = \"true\"\ntarget = \"local\"\n", 3, 8, ErrorKind::BadName, "x-tandem-rule"),
        ("unsupported version",
         "version = 2\n", 1, 11, ErrorKind::Version, "version 2 is not supported"),
        ("default_local of the wrong kind",
         "version = 1\ndefault_local = \"cloud\"\n", 2, 17, ErrorKind::UnknownTarget, "default_local = 'cloud' is a tier of the other kind"),
        ("default_cloud unknown",
         "version = 1\ndefault_cloud = \"cloud-175b\"\n", 2, 17, ErrorKind::UnknownTarget, "not a configured tier"),
    ];
    let mut wrong = Vec::new();
    for (what, text, line, column, kind, words) in cases {
        let e = refuse(text);
        let shown = e.to_string();
        let ok = (e.line, e.column, e.kind) == (line, column, kind)
            && e.reason.contains(words)
            && e.file == Path::new("conf/bad.toml")
            && shown.starts_with(&format!("conf/bad.toml:{line}:{column}: "));
        if !ok {
            wrong.push(format!(
                "{what}: want {line}:{column} {kind:?} '{words}', got {:?}: {shown}",
                e.kind
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn strategies_need_a_default_cloud_tier() {
    let local_only = Targets::new().with_local("local");
    let text = format!("{HEAD}[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"cascade\"\n");
    let e = Policy::parse(&text, Path::new("p.toml"), &local_only).unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (5, 10, ErrorKind::UnknownTarget), "{e}");
    assert!(e.reason.contains("default_cloud"), "{e}");
}

#[test]
fn a_policy_needs_a_local_tier() {
    let cloud_only = Targets::new().with_cloud("cloud");
    let text = format!("{HEAD}[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"cloud\"\n");
    let e = Policy::parse(&text, Path::new("p.toml"), &cloud_only).unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (1, 1, ErrorKind::UnknownTarget), "{e}");
    assert!(e.reason.contains("default_local is not set"), "{e}");
}

#[test]
fn a_tier_may_not_take_a_strategy_name() {
    let clash = Targets::new().with_local("local").with_cloud("cascade");
    let text = format!("{HEAD}[[rule]]\nname = \"a\"\nwhen = \"true\"\ntarget = \"local\"\n");
    let e = Policy::parse(&text, Path::new("p.toml"), &clash).unwrap_err();
    assert!(e.reason.contains("named 'cascade'"), "{e}");
}

#[test]
fn an_escaped_condition_is_located_at_its_string() {
    // With an escape in the string, positions inside it cannot be mapped to
    // the file exactly: the error points at the string's start.
    let text = "version = 1\n[[rule]]\nname = \"a\"\nwhen = \"app == \\\"x\\\" && batery < 0.2\"\ntarget = \"local\"\n";
    let e = refuse(text);
    assert_eq!((e.line, e.column, e.kind), (4, 8, ErrorKind::UnknownSignal), "{e}");
}

#[test]
fn valid_variations_are_accepted() {
    // Comprehension variables, type names and a constant-true catch-all in
    // another spelling are not mistakes.
    let text = r#"
version = 1
[[rule]]
name = "typed"
when = "type(max_tokens) == int && entities.all(x, x != 'secret') && [1, 2].map(n, n * 2).exists(m, m > 3) && local_tps > 1"
target = "cloud"
[[rule]]
name = "rest"
when = "(1 < 2)"
target = "local"
"#;
    let policy = Policy::parse(text, Path::new("ok.toml"), &targets()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.rule_names().collect::<Vec<_>>(), ["typed", "rest"]);
    assert_eq!(policy.source_path(), Path::new("ok.toml"));
}
