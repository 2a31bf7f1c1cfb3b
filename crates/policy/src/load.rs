//! Reading a policy file: the raw TOML shape (`deny_unknown_fields`, spans
//! kept), then validation into a [`Policy`] whose conditions are compiled
//! once. Every refusal names the file, line and column of the culprit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, ExecutionError, Program, Value};
use serde::Deserialize;
use toml::Spanned;

use crate::decision::{CloudAllowed, Target};
use crate::error::{ErrorKind, Locator, PolicyError};
use crate::policy::{Fallback, Policy, Rule};
use crate::signals::{SIGNAL_NAMES, SignalResolver, Signals};
use crate::targets::{STRATEGY_CASCADE, STRATEGY_NAMES, STRATEGY_REDACT_THEN_CLOUD, Targets, TierKind};

/// The only file format version this build reads.
const VERSION: i64 = 1;
/// A rule name travels in the `x-tandem-rule` response header.
const MAX_NAME_LEN: usize = 64;
/// Identifiers CEL resolves to type values (`type(x) == int`): not signals,
/// but not mistakes either.
const CEL_TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<i64>,
    /// Defaults to the local tier named `local`, when there is one.
    #[serde(default)]
    default_local: Option<Spanned<String>>,
    /// Defaults to the cloud tier named `cloud`, when there is one.
    #[serde(default)]
    default_cloud: Option<Spanned<String>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    /// Free text for operators and the status page.
    #[serde(default)]
    description: Option<String>,
    when: Spanned<String>,
    target: Spanned<String>,
    /// Derived from the target and fallbacks when absent (see `cloud_for`).
    #[serde(default)]
    cloud: Option<Spanned<CloudAllowed>>,
    #[serde(default)]
    fallbacks: Vec<Spanned<String>>,
}

/// What the whole file resolves against.
struct Scope<'a> {
    loc: Locator<'a>,
    targets: &'a Targets,
    env: &'a Arc<Env>,
    default_local: String,
    default_cloud: Option<String>,
}

pub(crate) fn parse(text: &str, path: &Path, targets: &Targets) -> Result<Policy, PolicyError> {
    let loc = Locator { path, text };
    let raw: RawPolicy =
        toml::from_str(text).map_err(|e| loc.error(e.span().map_or(0, |s| s.start), ErrorKind::Syntax, e.message()))?;

    if let Some((name, _)) = targets.iter().find(|(n, _)| STRATEGY_NAMES.contains(n)) {
        return Err(loc.error(
            0,
            ErrorKind::UnknownTarget,
            format!("the gateway configures a tier named '{name}', which is the name of a strategy; rename the tier"),
        ));
    }
    if *raw.version.get_ref() != VERSION {
        return Err(loc.error(
            raw.version.span().start,
            ErrorKind::Version,
            format!(
                "version {} is not supported; this build reads version {VERSION}",
                raw.version.get_ref()
            ),
        ));
    }
    let default_local = default_tier(&loc, targets, raw.default_local.as_ref(), TierKind::Local)?.ok_or_else(|| {
        loc.error(
            0,
            ErrorKind::UnknownTarget,
            format!(
                "default_local is not set and there is no local tier named 'local'; set default_local to one of: {}",
                targets.names_of(TierKind::Local)
            ),
        )
    })?;
    let default_cloud = default_tier(&loc, targets, raw.default_cloud.as_ref(), TierKind::Cloud)?;

    let env = Arc::new(Env::stdlib());
    let scope = Scope {
        loc,
        targets,
        env: &env,
        default_local,
        default_cloud,
    };
    if raw.rules.is_empty() {
        return Err(scope.loc.error(
            text.len(),
            ErrorKind::NoRules,
            "the policy has no rules; end it with a catch-all [[rule]] whose when = \"true\"",
        ));
    }

    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Where each rule's table starts, and whether its condition is a constant.
    let mut placed: Vec<(usize, Option<bool>, usize)> = Vec::with_capacity(raw.rules.len());
    for raw_rule in &raw.rules {
        let table_at = raw_rule.span().start;
        let r = raw_rule.get_ref();
        let name = check_name(&scope.loc, &r.name, &mut seen)?;
        let (program, used, constant) = compile(&scope, &r.when, text)?;
        let target = resolve_target(&scope, &r.target)?;
        let fallbacks = resolve_fallbacks(&scope, &target, &r.fallbacks)?;
        let cloud = cloud_for(&scope, r, &target, &fallbacks)?;
        placed.push((table_at, constant, value_offset(text, &r.when, 0)));
        rules.push(Rule {
            name,
            description: r.description.clone(),
            when: r.when.get_ref().split_whitespace().collect::<Vec<_>>().join(" "),
            always: constant == Some(true),
            program,
            signals: used,
            target,
            fallbacks: fallbacks.into_iter().map(|(f, _)| f).collect(),
            cloud,
            line: scope.loc.line(table_at),
        });
    }
    check_order(&scope.loc, &rules, &placed)?;

    Ok(Policy {
        source_path: path.to_path_buf(),
        content_hash: content_hash(text),
        version: VERSION,
        default_local: scope.default_local,
        default_cloud: scope.default_cloud,
        rules,
        env,
    })
}

/// A default tier: the one named, which must be of `kind`, or else the tier
/// called `local` / `cloud` when it exists and is of that kind.
fn default_tier(
    loc: &Locator<'_>,
    targets: &Targets,
    named: Option<&Spanned<String>>,
    kind: TierKind,
) -> Result<Option<String>, PolicyError> {
    let (field, implicit) = match kind {
        TierKind::Local => ("default_local", "local"),
        TierKind::Cloud => ("default_cloud", "cloud"),
    };
    let Some(named) = named else {
        return Ok((targets.kind(implicit) == Some(kind)).then(|| implicit.to_owned()));
    };
    let name = named.get_ref();
    if targets.kind(name) == Some(kind) {
        return Ok(Some(name.clone()));
    }
    let what = match targets.kind(name) {
        Some(_) => "a tier of the other kind",
        None => "not a configured tier",
    };
    Err(loc.error(
        named.span().start,
        ErrorKind::UnknownTarget,
        format!(
            "{field} = '{name}' is {what}; {} tiers: {}",
            if kind == TierKind::Local { "local" } else { "cloud" },
            targets.names_of(kind)
        ),
    ))
}

fn check_name(
    loc: &Locator<'_>,
    name: &Spanned<String>,
    seen: &mut HashMap<String, usize>,
) -> Result<String, PolicyError> {
    let at = name.span().start;
    let n = name.get_ref();
    let fit = !n.is_empty()
        && n.len() <= MAX_NAME_LEN
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !fit {
        return Err(loc.error(
            at,
            ErrorKind::BadName,
            format!(
                "rule name '{n}' must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ . (it is sent in the x-tandem-rule header)"
            ),
        ));
    }
    if let Some(first) = seen.get(n) {
        return Err(loc.error(
            at,
            ErrorKind::BadName,
            format!("duplicate rule name '{n}': line {first} already uses it"),
        ));
    }
    seen.insert(n.clone(), loc.line(at));
    Ok(n.clone())
}

/// Compiles a condition, checks it names only signals and evaluates to a
/// bool; returns the program, the signals it reads, and its value when it
/// reads none (a constant).
fn compile(
    scope: &Scope<'_>,
    when: &Spanned<String>,
    text: &str,
) -> Result<(Program, Vec<String>, Option<bool>), PolicyError> {
    let src = when.get_ref();
    let program = scope.env.compile(src).map_err(|errs| {
        // The parser may report follow-on errors first; a syntax error is
        // the one that tells the operator what to fix.
        let first = errs
            .errors
            .iter()
            .find(|e| e.msg.starts_with("Syntax error"))
            .or(errs.errors.first());
        let (at, msg) = match first {
            Some(e) => (offset_of_line_col(src, e.pos), e.msg.clone()),
            None => (0, errs.to_string()),
        };
        scope.loc.error(
            value_offset(text, when, at),
            ErrorKind::BadCondition,
            format!("the condition is not valid CEL: {msg}"),
        )
    })?;

    let mut free = Vec::new();
    free_idents(program.expression(), &mut Vec::new(), &mut free);
    let mut used: Vec<String> = Vec::new();
    for (name, id) in free {
        if SIGNAL_NAMES.contains(&name) {
            if !used.iter().any(|u| u == name) {
                used.push(name.to_owned());
            }
            continue;
        }
        if CEL_TYPE_NAMES.contains(&name) {
            continue;
        }
        let at = program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        let hint = match closest_signal(name) {
            Some(s) => format!("did you mean '{s}'? "),
            None => String::new(),
        };
        return Err(scope.loc.error(
            value_offset(text, when, at),
            ErrorKind::UnknownSignal,
            format!(
                "unknown signal '{name}'; {hint}signals are: {}",
                SIGNAL_NAMES.join(", ")
            ),
        ));
    }

    let constant = trial(scope.env, &program, used.is_empty()).map_err(|why| {
        scope
            .loc
            .error(value_offset(text, when, 0), ErrorKind::BadCondition, why)
    })?;
    Ok((program, used, constant))
}

/// Evaluates a condition against sample signals, so that conditions that
/// can never give a bool (`thermal >= 2`, `complexity + 1`) are refused at
/// load instead of silently never matching. Errors that depend on the values
/// (division by zero, an index out of range) are left to evaluation time.
/// But one that fails on every sample (an invalid regular expression, a
/// division by a constant zero) could never match, and is refused too.
/// Returns the condition's value when it reads no signal.
fn trial(env: &Arc<Env>, program: &Program, constant: bool) -> Result<Option<bool>, String> {
    let mut last = None;
    let mut failure = None;
    for sample in trial_samples() {
        let resolver = SignalResolver::new(&sample);
        let mut ctx = Context::with_env(Arc::clone(env));
        ctx.set_variable_resolver(&resolver);
        match program.execute(&ctx) {
            Ok(Value::Bool(b)) => last = Some(b),
            Ok(other) => return Err(format!("the condition gives a {}, not a bool", other.type_of())),
            Err(e) if depends_on_values(&e) => failure = failure.or(Some(e)),
            Err(e) => return Err(format!("the condition cannot be evaluated: {e}")),
        }
    }
    match (last, failure) {
        (None, Some(e)) => Err(format!(
            "the condition fails whatever the signals ({e}), so the rule could never match"
        )),
        _ => Ok(if constant { last } else { None }),
    }
}

fn depends_on_values(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::DivisionByZero(_)
            | ExecutionError::RemainderByZero(_)
            | ExecutionError::Overflow(..)
            | ExecutionError::IndexOutOfBounds(_)
            | ExecutionError::NoSuchKey(_)
            | ExecutionError::FunctionError { .. }
    )
}

/// The opposite corner from `Signals::default()`, so the trial also walks
/// the other side of `&&` / `||` / `?:`.
/// Signals that drive `&&`, `||` and `?:` down each of their branches in
/// some sample, so a bad operand behind a short circuit is reached
/// (`local_ready && !cloud_up && thermal >= 2`): the default and a busy
/// device, then every combination of the boolean signals with the numbers
/// all at their lowest and all at their highest.
fn trial_samples() -> Vec<Signals> {
    let mut out = vec![Signals::default(), busy_sample()];
    for high in [false, true] {
        let (f, i) = if high { (1e9, 1_000_000_000) } else { (0.0, 0) };
        let unit = if high { 1.0 } else { 0.0 };
        for bits in 0u8..32 {
            let bit = |n: u8| bits & (1 << n) != 0;
            out.push(Signals {
                complexity: unit,
                privacy: unit,
                battery: unit,
                cloud_rtt_ms: f,
                local_queue: i,
                local_tps: f,
                mem_available_mb: i,
                est_prompt_tokens: i,
                max_tokens: i,
                thermal_level: if high { 3 } else { 0 },
                charging: bit(0),
                power_saver: bit(1),
                cloud_up: bit(2),
                local_ready: bit(3),
                has_tools: bit(4),
                ..busy_sample()
            });
        }
    }
    out
}

fn busy_sample() -> Signals {
    Signals {
        complexity: 0.9,
        privacy: 0.9,
        entities: vec!["email".into(), "health".into()],
        battery: 0.1,
        charging: false,
        power_saver: true,
        thermal: "critical".into(),
        thermal_level: 3,
        cloud_up: false,
        cloud_rtt_ms: 2000.0,
        local_ready: false,
        local_queue: 9,
        local_tps: 2.0,
        mem_available_mb: 200,
        est_prompt_tokens: 3000,
        max_tokens: 2048,
        has_tools: true,
        hint_privacy: "high".into(),
        hint_route: "local".into(),
        app: "com.example.app".into(),
    }
}

/// Identifiers a condition reads from outside: everything but the
/// variables its comprehensions (`exists`, `all`, `map`, …) bind. The
/// program's own `references()` lists those bound variables too, so it
/// would refuse `entities.exists(e, e == 'health')`.
fn free_idents<'e>(e: &'e IdedExpr, bound: &mut Vec<&'e str>, out: &mut Vec<(&'e str, u64)>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                out.push((name, e.id));
            }
        }
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                free_idents(t, bound, out);
            }
            for a in &call.args {
                free_idents(a, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(&c.iter_var);
            if let Some(v) = &c.iter_var2 {
                bound.push(v);
            }
            bound.push(&c.accu_var);
            free_idents(&c.loop_cond, bound, out);
            free_idents(&c.loop_step, bound, out);
            free_idents(&c.result, bound, out);
            bound.truncate(depth);
        }
        Expr::Select(s) => free_idents(&s.operand, bound, out),
        Expr::List(l) => {
            for x in &l.elements {
                free_idents(x, bound, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                entry_idents(&entry.expr, bound, out);
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                entry_idents(&entry.expr, bound, out);
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry_idents<'e>(entry: &'e EntryExpr, bound: &mut Vec<&'e str>, out: &mut Vec<(&'e str, u64)>) {
    match entry {
        EntryExpr::StructField(f) => free_idents(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            free_idents(&m.key, bound, out);
            free_idents(&m.value, bound, out);
        }
    }
}

/// The signal an unknown name most likely meant: within two edits.
fn closest_signal(name: &str) -> Option<&'static str> {
    SIGNAL_NAMES
        .iter()
        .map(|s| (edit_distance(name, s), *s))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn resolve_target(scope: &Scope<'_>, target: &Spanned<String>) -> Result<Target, PolicyError> {
    let name = target.get_ref().as_str();
    let at = target.span().start;
    let cloud_for_strategy = || {
        scope.default_cloud.clone().ok_or_else(|| {
            scope.loc.error(
                at,
                ErrorKind::UnknownTarget,
                format!(
                    "strategy '{name}' uses default_cloud, which is not set and no cloud tier is named 'cloud'; cloud tiers: {}",
                    scope.targets.names_of(TierKind::Cloud)
                ),
            )
        })
    };
    match name {
        STRATEGY_CASCADE => Ok(Target::Cascade {
            local: scope.default_local.clone(),
            cloud: cloud_for_strategy()?,
        }),
        STRATEGY_REDACT_THEN_CLOUD => Ok(Target::RedactThenCloud {
            cloud: cloud_for_strategy()?,
        }),
        _ => match scope.targets.kind(name) {
            Some(kind) => Ok(Target::Tier {
                name: name.to_owned(),
                local: kind == TierKind::Local,
            }),
            None => Err(scope.loc.error(
                at,
                ErrorKind::UnknownTarget,
                format!("unknown target '{name}'; known targets: {}", scope.targets.known_list()),
            )),
        },
    }
}

/// Each fallback with where it was written.
fn resolve_fallbacks(
    scope: &Scope<'_>,
    target: &Target,
    raw: &[Spanned<String>],
) -> Result<Vec<(Fallback, usize)>, PolicyError> {
    let mut out: Vec<(Fallback, usize)> = Vec::with_capacity(raw.len());
    for f in raw {
        let name = f.get_ref().as_str();
        let at = f.span().start;
        let refuse = |reason: String| Err(scope.loc.error(at, ErrorKind::UnknownTarget, reason));
        if STRATEGY_NAMES.contains(&name) {
            return refuse(format!("fallback '{name}' is a strategy; fallbacks name tiers"));
        }
        let Some(kind) = scope.targets.kind(name) else {
            return refuse(format!(
                "unknown fallback '{name}'; tiers: {}, {}",
                scope.targets.names_of(TierKind::Local),
                scope.targets.names_of(TierKind::Cloud)
            ));
        };
        if target.first_tier().0 == name {
            return refuse(format!("fallback '{name}' is already tried first by the target"));
        }
        if out.iter().any(|(o, _)| o.name == name) {
            return refuse(format!("fallback '{name}' is listed twice"));
        }
        out.push((
            Fallback {
                name: name.to_owned(),
                local: kind == TierKind::Local,
            },
            at,
        ));
    }
    Ok(out)
}

/// The rule's cloud constraint. Written, it must agree with the target and
/// fallbacks; left out, it is the least the rule needs: `redacted` for
/// redact-then-cloud, `allowed` when a cloud tier is named, else `never`.
fn cloud_for(
    scope: &Scope<'_>,
    rule: &RawRule,
    target: &Target,
    fallbacks: &[(Fallback, usize)],
) -> Result<CloudAllowed, PolicyError> {
    let Some(written) = &rule.cloud else {
        return Ok(match target {
            Target::RedactThenCloud { .. } => CloudAllowed::Redacted,
            _ if target.uses_cloud() || fallbacks.iter().any(|(f, _)| !f.local) => CloudAllowed::Allowed,
            _ => CloudAllowed::Never,
        });
    };
    let cloud = *written.get_ref();
    let conflict = |at: usize, reason: String| Err(scope.loc.error(at, ErrorKind::CloudConflict, reason));
    match cloud {
        CloudAllowed::Never => {
            if target.uses_cloud() {
                let what = match target {
                    Target::Tier { name, .. } => format!("target '{name}' is a cloud tier"),
                    other => format!("strategy '{}' sends the text to the cloud", other.label()),
                };
                return conflict(rule.target.span().start, format!("cloud = \"never\" but {what}"));
            }
            if let Some((f, at)) = fallbacks.iter().find(|(f, _)| !f.local) {
                return conflict(
                    *at,
                    format!("cloud = \"never\" but fallback '{}' is a cloud tier", f.name),
                );
            }
        }
        CloudAllowed::Allowed if matches!(target, Target::RedactThenCloud { .. }) => {
            return conflict(
                written.span().start,
                "target redact-then-cloud needs cloud = \"redacted\" (or no cloud setting)".to_owned(),
            );
        }
        CloudAllowed::Allowed | CloudAllowed::Redacted => {}
    }
    Ok(cloud)
}

/// The last rule must match everything, and no rule may hide behind one
/// that does or never match itself.
fn check_order(loc: &Locator<'_>, rules: &[Rule], placed: &[(usize, Option<bool>, usize)]) -> Result<(), PolicyError> {
    let mut catch_all: Option<&Rule> = None;
    for (rule, (table_at, constant, when_at)) in rules.iter().zip(placed) {
        if let Some(earlier) = catch_all {
            return Err(loc.error(
                *table_at,
                ErrorKind::Unreachable,
                format!(
                    "rule '{}' can never match: rule '{}' (line {}) above it matches every request",
                    rule.name, earlier.name, earlier.line
                ),
            ));
        }
        if *constant == Some(false) {
            return Err(loc.error(
                *when_at,
                ErrorKind::Unreachable,
                format!("rule '{}' can never match: its condition is always false", rule.name),
            ));
        }
        if rule.always {
            catch_all = Some(rule);
        }
    }
    match (rules.last(), placed.last()) {
        (Some(last), Some((_, _, when_at))) if !last.always => Err(loc.error(
            *when_at,
            ErrorKind::NoCatchAll,
            format!(
                "the last rule, '{}', must be a catch-all (when = \"true\") so that every request gets a route",
                last.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Byte offset in `src` of a CEL parser position (line and column from 1,
/// the column in characters); the end of `src` when past it.
fn offset_of_line_col(src: &str, (line, col): (isize, isize)) -> usize {
    let mut offset = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if isize::try_from(i + 1).is_ok_and(|n| n == line) {
            let col = usize::try_from(col.saturating_sub(1)).unwrap_or(0);
            return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    src.len()
}

/// Byte offset in the file of byte `at` of a string's value. Exact when the
/// string is written without escapes (the usual case for conditions);
/// otherwise the string's start, the best place that can be named.
fn value_offset(text: &str, s: &Spanned<String>, at: usize) -> usize {
    let span = s.span();
    let Some(raw) = text.get(span.clone()) else {
        return span.start;
    };
    let delim = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    if raw.len() < 2 * delim {
        return span.start;
    }
    let mut open = delim;
    // TOML drops a newline right after the opening of a multi-line string.
    if delim == 3 {
        if raw[open..].starts_with("\r\n") {
            open += 2;
        } else if raw[open..].starts_with('\n') {
            open += 1;
        }
    }
    match raw.get(open..raw.len() - delim) {
        Some(body) if body == s.get_ref() && at <= body.len() => span.start + open + at,
        _ => span.start,
    }
}

/// FNV-1a, 64 bits, as hex: stable across builds and platforms, enough to
/// tell which version of the file is in force (not a security hash).
fn content_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_suggests_near_signals() {
        assert_eq!(edit_distance("batery", "battery"), 1);
        assert_eq!(closest_signal("batery"), Some("battery"));
        assert_eq!(closest_signal("prompt_text"), None);
    }

    #[test]
    fn offsets_of_cel_positions() {
        assert_eq!(offset_of_line_col("ab\ncd", (2, 2)), 4);
        assert_eq!(offset_of_line_col("ab", (1, 9)), 2);
        assert_eq!(offset_of_line_col("'é' x", (1, 5)), 5);
    }

    #[test]
    fn content_hash_is_stable() {
        // FNV-1a of the empty input is its offset basis.
        assert_eq!(content_hash(""), "fnv1a64:cbf29ce484222325");
        assert_ne!(content_hash("a"), content_hash("b"));
    }
}
