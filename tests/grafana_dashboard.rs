//! Checks `deploy/grafana-dashboard.json`, the Grafana dashboard over
//! Pylon's metrics: its structure (what Grafana's "Import dashboard" needs,
//! a data source and a query on every panel, the template variables), that
//! every query filters on the `instance` and `route` variables and uses only
//! metric names, labels and label values Pylon exports, that promtool
//! parses every PromQL expression, and that every expression returns data
//! from a synthetic Pylon.
//!
//! promtool comes with the Debian package `prometheus`
//! (tests/install-deps.sh installs it). A missing promtool fails the test:
//! a check that silently did not run would look exactly like one that
//! passed.
//!
//! JSON is YAML 1.2, so serde_yaml reads the dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

const DASHBOARD: &str = "deploy/grafana-dashboard.json";

/// Every metric Pylon exports, with its labels.
const METRICS: &[(&str, &[&str])] = &[
    ("pylon_requests_total", &["route", "method", "status"]),
    ("pylon_request_duration_seconds_bucket", &["route", "le"]),
    ("pylon_request_duration_seconds_sum", &["route"]),
    ("pylon_request_duration_seconds_count", &["route"]),
    ("pylon_request_body_bytes_total", &["route"]),
    ("pylon_response_body_bytes_total", &["route"]),
    ("pylon_upstream_connect_failures_total", &["route"]),
    ("pylon_upstream_timeouts_total", &["route"]),
    ("pylon_rewrites_total", &["route"]),
    ("pylon_upstream_up", &["route", "endpoint"]),
    ("pylon_downstream_connections", &[]),
    ("pylon_network_bytes_total", &["device", "direction"]),
    ("pylon_build_info", &["version"]),
    ("pylon_config_info", &["hash"]),
    ("process_cpu_seconds_total", &[]),
    ("process_resident_memory_bytes", &[]),
    ("process_open_fds", &[]),
    ("process_max_fds", &[]),
    ("process_start_time_seconds", &[]),
];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// Labels whose values Pylon draws from a fixed set.
const LABEL_VALUES: &[(&str, &[&str])] = &[
    ("status", &["1xx", "2xx", "3xx", "4xx", "5xx", "none"]),
    (
        "method",
        &[
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
        ],
    ),
    ("direction", &["receive", "transmit"]),
];

/// Histogram buckets of `pylon_request_duration_seconds` (src/metrics.rs).
const BUCKETS: &[&str] = &[
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30", "60", "300", "+Inf",
];

/// The rows, top to bottom.
const ROWS: &[&str] = &[
    "Overview",
    "Traffic",
    "Errors",
    "Latency",
    "Upstream health",
    "Process",
];

/// Template variables as Grafana expands them for the checks: `instance`
/// as a multi-value selection of addresses with the regex escaping Grafana
/// applies, `route` as a multi-value selection, the intervals at 1m.
const VARIABLES: &[(&str, &str)] = &[
    ("instance", r"(10\\.0\\.0\\.1:9180|10\\.0\\.0\\.2:9180)"),
    ("route", "(api|models|none)"),
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard_text() -> String {
    let path = repo().join(DASHBOARD);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_yaml::from_str(&dashboard_text())
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn labels_of(metric: &str) -> Option<&'static [&'static str]> {
    METRICS.iter().find(|(m, _)| *m == metric).map(|(_, l)| *l)
}

fn all_labels() -> BTreeSet<&'static str> {
    METRICS
        .iter()
        .flat_map(|(_, l)| l.iter().copied())
        .chain(TARGET_LABELS.iter().copied())
        .collect()
}

/// Every panel, those inside collapsed rows included, rows themselves too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in list(d, "panels") {
        out.push(p);
        out.extend(list(p, "panels"));
    }
    out
}

fn is_row(p: &Value) -> bool {
    str_of(p, "type") == "row"
}

fn variable<'a>(d: &'a Value, name: &str) -> &'a Value {
    list(&d["templating"], "list")
        .iter()
        .find(|v| str_of(v, "name") == name)
        .unwrap_or_else(|| panic!("no template variable `{name}`"))
}

/// The query of a query variable: a string, or `{query: ...}`.
fn variable_query(v: &Value) -> &str {
    match &v["query"] {
        Value::String(s) => s,
        q => str_of(q, "query"),
    }
}

/// Every `expr` in the dashboard (panel targets, annotations), with where
/// it is.
fn exprs(d: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Mapping(m) => {
                let at = match v.get("title").and_then(Value::as_str) {
                    Some(t) => format!("{at} \"{t}\""),
                    None => at.to_string(),
                };
                for (k, child) in m {
                    let k = k.as_str().unwrap_or("?");
                    match (k, child) {
                        ("expr", Value::String(e)) => out.push((at.clone(), e.clone())),
                        _ => walk(child, &format!("{at}/{k}"), out),
                    }
                }
            }
            Value::Sequence(s) => {
                for (i, child) in s.iter().enumerate() {
                    walk(child, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(d, "", &mut out);
    out
}

/// The series selectors of the query variables: `label_values(SEL, label)`.
fn variable_selectors(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in list(&d["templating"], "list") {
        if str_of(v, "type") != "query" {
            continue;
        }
        let name = str_of(v, "name");
        let q = variable_query(v).trim();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable `{name}`: expected label_values(...), got {q}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable `{name}`: label_values needs a metric: {q}"));
        let label = label.trim();
        assert!(
            all_labels().contains(label),
            "variable `{name}`: Pylon's metrics have no label `{label}`"
        );
        out.push((format!("variable `{name}`"), selector.trim().to_string()));
    }
    out
}

// ------------------------------------------------------------------ PromQL

/// A series selector: metric name and matchers.
/// `(label, operator, value)`, the value as written between the quotes.
type Matcher = (String, String, String);

#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct Scan {
    selectors: Vec<Selector>,
    /// Labels of `by`, `without`, `on`, `ignoring`, `group_left` and
    /// `group_right` clauses.
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_ws(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident(c: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < c.len() && is_ident(c[i]) {
        i += 1;
    }
    (c[start..i].iter().collect(), i)
}

/// The string literal starting at `i`: its text between the quotes and the
/// index after it.
fn string(c: &[char], i: usize) -> Result<(String, usize), String> {
    let quote = c[i];
    let mut j = i + 1;
    while j < c.len() {
        if c[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if c[j] == quote {
            return Ok((c[i + 1..j].iter().collect(), j + 1));
        }
        j += 1;
    }
    Err("unterminated string".into())
}

/// The matchers of the `{...}` at `i`, and the index after the `}`.
fn matchers(c: &[char], i: usize) -> Result<(Vec<Matcher>, usize), String> {
    let mut out = Vec::new();
    let mut i = i + 1;
    loop {
        i = skip_ws(c, i);
        match c.get(i) {
            Some('}') => return Ok((out, i + 1)),
            Some(&ch) if is_ident_start(ch) => {}
            other => {
                return Err(format!(
                    "expected a label name in a selector, got {other:?}"
                ))
            }
        }
        let (label, j) = ident(c, i);
        i = skip_ws(c, j);
        let two: String = c[i..(i + 2).min(c.len())].iter().collect();
        let op = match two.as_str() {
            "=~" | "!~" | "!=" => two,
            _ if c.get(i) == Some(&'=') => "=".to_string(),
            _ => return Err(format!("expected a matcher operator after `{label}`")),
        };
        i = skip_ws(c, i + op.len());
        if !matches!(c.get(i), Some('"' | '\'' | '`')) {
            return Err(format!("expected a quoted value after `{label}{op}`"));
        }
        let (value, j) = string(c, i)?;
        out.push((label, op, value));
        i = skip_ws(c, j);
        match c.get(i) {
            Some(',') => i += 1,
            Some('}') => {}
            other => return Err(format!("expected `,` or `}}` in a selector, got {other:?}")),
        }
    }
}

/// Finds the series selectors and grouping labels of a PromQL expression
/// (as written in the dashboard, template variables included). Function
/// names are left to promtool; anything that is neither a keyword nor
/// followed by `(` is a metric name.
fn scan(expr: &str) -> Result<Scan, String> {
    const AGGREGATORS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
    let c: Vec<char> = expr.chars().collect();
    let mut out = Scan::default();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() || "()+-*/%^,=!<>".contains(ch) {
            i += 1;
        } else if matches!(ch, '"' | '\'' | '`') {
            i = string(&c, i)?.1;
        } else if ch == '[' {
            // A range or subquery: durations and interval variables.
            i += c[i..]
                .iter()
                .position(|&x| x == ']')
                .ok_or("unterminated `[`")?
                + 1;
        } else if ch == '{' {
            return Err("a selector without a metric name".into());
        } else if ch.is_ascii_digit() || ch == '.' {
            // A number or duration, exponents included.
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                let exponent = matches!(c[i], 'e' | 'E');
                i += 1;
                if exponent && matches!(c.get(i), Some('+' | '-')) {
                    i += 1;
                }
            }
        } else if is_ident_start(ch) {
            let (word, j) = ident(&c, i);
            let next = skip_ws(&c, j);
            i = j;
            if GROUPING.contains(&word.as_str()) {
                if c.get(next) == Some(&'(') {
                    let close = c[next..]
                        .iter()
                        .position(|&x| x == ')')
                        .ok_or("unterminated label list")?
                        + next;
                    let inner: String = c[next + 1..close].iter().collect();
                    out.grouping.extend(
                        inner
                            .split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(String::from),
                    );
                    i = close + 1;
                }
            } else if KEYWORDS.contains(&word.as_str())
                || AGGREGATORS.contains(&word.as_str())
                || word.eq_ignore_ascii_case("inf")
                || word.eq_ignore_ascii_case("nan")
                || c.get(next) == Some(&'(')
            {
                // An operator, aggregation, number or function call.
            } else {
                let mut sel = Selector {
                    metric: word,
                    matchers: Vec::new(),
                };
                if c.get(next) == Some(&'{') {
                    let (m, after) = matchers(&c, next)?;
                    sel.matchers = m;
                    i = after;
                }
                out.selectors.push(sel);
            }
        } else if ch == '$' {
            return Err("a template variable outside a string or range".into());
        } else {
            return Err(format!("unexpected character {ch:?}"));
        }
    }
    Ok(out)
}

/// `$name`, `${name}` or `${name:format}`.
fn is_variable(value: &str, name: &str) -> bool {
    value == format!("${name}")
        || value == format!("${{{name}}}")
        || (value.starts_with(&format!("${{{name}:")) && value.ends_with('}'))
}

/// What is wrong with one query: unknown metrics, labels or label values,
/// and with `filtered`, selectors that ignore the `instance` or `route`
/// variable.
fn problems(expr: &str, filtered: bool) -> Vec<String> {
    let scan = match scan(expr) {
        Ok(s) => s,
        Err(e) => return vec![format!("cannot read the query: {e}")],
    };
    let mut out = Vec::new();
    if scan.selectors.is_empty() {
        out.push("selects no metric".to_string());
    }
    for sel in &scan.selectors {
        let name = &sel.metric;
        let Some(labels) = labels_of(name) else {
            out.push(format!("`{name}` is not a metric Pylon exports"));
            continue;
        };
        for (label, op, value) in &sel.matchers {
            if !labels.contains(&label.as_str()) && !TARGET_LABELS.contains(&label.as_str()) {
                out.push(format!("`{name}` has no label `{label}`"));
            }
            let fixed = LABEL_VALUES.iter().find(|(l, _)| l == label);
            if let (Some((_, values)), "=" | "!=") = (fixed, op.as_str()) {
                if !values.contains(&value.as_str()) {
                    out.push(format!(
                        "`{name}`: `{label}` is never \"{value}\" (values: {values:?})"
                    ));
                }
            }
        }
        let has = |label: &str| {
            sel.matchers
                .iter()
                .any(|(l, op, v)| l == label && op == "=~" && is_variable(v, label))
        };
        if filtered && !has("instance") {
            out.push(format!("`{name}` lacks instance=~\"$instance\""));
        }
        if filtered && labels.contains(&"route") && !has("route") {
            out.push(format!("`{name}` lacks route=~\"$route\""));
        }
    }
    let known = all_labels();
    for label in &scan.grouping {
        if !known.contains(label.as_str()) {
            out.push(format!("groups by `{label}`, a label no Pylon metric has"));
        }
    }
    out
}

/// Replaces Grafana's template variables (`$name`, `${name}`,
/// `${name:format}`, `[[name]]`) with the values in [`VARIABLES`].
fn substitute(expr: &str) -> Result<String, String> {
    let value = |name: &str| {
        VARIABLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown template variable `{name}`"))
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(pos) = rest.find(['$', '[']) {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or("unterminated ${")?;
            let name = after[..end].split(':').next().unwrap_or("");
            out.push_str(value(name)?);
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix("[[") {
            let end = after.find("]]").ok_or("unterminated [[")?;
            let name = after[..end].split(':').next().unwrap_or("");
            out.push_str(value(name)?);
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('$') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(value(&after[..end])?);
            rest = &after[end..];
        } else {
            out.push('[');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every PromQL expression of the dashboard, variables substituted, each
/// once, with where it first appears.
fn promql(d: &Value) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (at, e) in exprs(d).into_iter().chain(variable_selectors(d)) {
        let e = substitute(&e).unwrap_or_else(|err| panic!("{at}: {err}: {e}"));
        if seen.insert(e.clone()) {
            out.push((at, e));
        }
    }
    out
}

// ------------------------------------------------------------------ promtool

fn promtool() -> PathBuf {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found in PATH or /usr/bin: install the Debian package `prometheus` \
                 (apt-get install prometheus; tests/install-deps.sh does this)"
            )
        })
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = env::temp_dir().join(format!("pylon-grafana-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `text` as a YAML literal block scalar at `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|-\n");
    for line in text.lines() {
        out.push_str(&pad);
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn run_promtool(args: &[&str], file: &Path) -> String {
    let tool = promtool();
    let out = Command::new(&tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} {} failed:\n{text}\n--- {}:\n{}",
        args.join(" "),
        file.display(),
        file.display(),
        fs::read_to_string(file).unwrap_or_default()
    );
    text
}

/// Input series of a synthetic Pylon: two instances, three routes, every
/// counter rising, one endpoint down.
fn synthetic_series() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |series: String, values: &str| out.push((series, values.to_string()));
    for instance in ["10.0.0.1:9180", "10.0.0.2:9180"] {
        let t = format!("instance=\"{instance}\",job=\"pylon\"");
        for route in ["api", "models", "none"] {
            let r = format!("{t},route=\"{route}\"");
            for (status, values) in [("2xx", "0+10x40"), ("4xx", "0+2x40"), ("5xx", "0+1x40")] {
                add(
                    format!("pylon_requests_total{{{r},method=\"GET\",status=\"{status}\"}}"),
                    values,
                );
            }
            for (i, le) in BUCKETS.iter().enumerate() {
                add(
                    format!("pylon_request_duration_seconds_bucket{{{r},le=\"{le}\"}}"),
                    &format!("0+{}x40", i + 1),
                );
            }
            add(
                format!("pylon_request_duration_seconds_count{{{r}}}"),
                &format!("0+{}x40", BUCKETS.len()),
            );
            add(
                format!("pylon_request_duration_seconds_sum{{{r}}}"),
                "0+0.5x40",
            );
            for metric in [
                "pylon_request_body_bytes_total",
                "pylon_response_body_bytes_total",
                "pylon_upstream_connect_failures_total",
                "pylon_upstream_timeouts_total",
                "pylon_rewrites_total",
            ] {
                add(format!("{metric}{{{r}}}"), "0+100x40");
            }
            if route != "none" {
                add(
                    format!("pylon_upstream_up{{{r},endpoint=\"10.0.1.1:8080\"}}"),
                    "1+0x40",
                );
                add(
                    format!("pylon_upstream_up{{{r},endpoint=\"10.0.1.2:8080\"}}"),
                    "0+0x40",
                );
            }
        }
        for direction in ["receive", "transmit"] {
            for device in ["eth0", "lo"] {
                add(
                    format!(
                        "pylon_network_bytes_total{{{t},device=\"{device}\",direction=\"{direction}\"}}"
                    ),
                    "0+1000x40",
                );
            }
        }
        add(format!("pylon_downstream_connections{{{t}}}"), "5+0x40");
        add(
            format!("pylon_build_info{{{t},version=\"0.1.0\"}}"),
            "1+0x40",
        );
        add(
            format!("pylon_config_info{{{t},hash=\"0123456789abcdef\"}}"),
            "1+0x40",
        );
        add(format!("process_cpu_seconds_total{{{t}}}"), "0+0.1x40");
        add(
            format!("process_resident_memory_bytes{{{t}}}"),
            "50000000+0x40",
        );
        add(format!("process_open_fds{{{t}}}"), "40+0x40");
        add(format!("process_max_fds{{{t}}}"), "1048576+0x40");
        add(format!("process_start_time_seconds{{{t}}}"), "100+0x40");
    }
    out
}

// ------------------------------------------------------------------ tests

#[test]
fn importable_dashboard() {
    let text = dashboard_text();
    let d = dashboard();
    assert_eq!(d["schemaVersion"].as_u64(), Some(39), "schemaVersion");
    assert!(!str_of(&d, "title").is_empty(), "dashboard title");
    assert!(
        d["id"].is_null(),
        "`id` must be null so import creates a new dashboard"
    );

    // The data source input that the import dialog asks for, and every
    // ${DS_...} placeholder declared by one.
    let inputs: BTreeMap<&str, &Value> = list(&d, "__inputs")
        .iter()
        .map(|i| (str_of(i, "name"), i))
        .collect();
    let ds = inputs
        .get("DS_PROMETHEUS")
        .expect("__inputs declares DS_PROMETHEUS");
    assert_eq!(str_of(ds, "type"), "datasource");
    assert_eq!(str_of(ds, "pluginId"), "prometheus");
    for (i, _) in text.match_indices("${DS_") {
        let name = &text[i + 2..][..text[i + 2..].find('}').expect("closing }")];
        assert!(
            inputs.contains_key(name),
            "${{{name}}} is used but not declared in __inputs"
        );
    }

    // Template variables.
    let datasource = variable(&d, "datasource");
    assert_eq!(str_of(datasource, "type"), "datasource");
    assert_eq!(str_of(datasource, "query"), "prometheus");
    assert_eq!(
        str_of(&datasource["current"], "value"),
        "${DS_PROMETHEUS}",
        "the datasource variable defaults to the imported data source"
    );
    for (name, metric) in [
        ("instance", "pylon_build_info"),
        ("route", "pylon_requests_total"),
    ] {
        let v = variable(&d, name);
        assert_eq!(str_of(v, "type"), "query", "variable `{name}`");
        assert_eq!(
            v["multi"].as_bool(),
            Some(true),
            "variable `{name}` is multi-select"
        );
        assert_eq!(
            v["includeAll"].as_bool(),
            Some(true),
            "variable `{name}` has All"
        );
        assert_eq!(
            str_of(&v["datasource"], "uid"),
            "${datasource}",
            "variable `{name}` queries the chosen data source"
        );
        let q = variable_query(v);
        assert!(
            q.starts_with(&format!("label_values({metric}")) && q.ends_with(&format!(", {name})")),
            "variable `{name}` comes from label_values({metric}, {name}), not {q}"
        );
    }
    assert_eq!(
        variable_query(variable(&d, "instance")),
        "label_values(pylon_build_info, instance)"
    );
    // With a custom All value such as .*, the process_* panels would also
    // show every other job's processes; the default lists Pylon's instances.
    assert!(
        variable(&d, "instance")
            .get("allValue")
            .is_none_or(Value::is_null),
        "variable `instance` must keep Grafana's default All (the listed instances)"
    );

    // Panels.
    let mut ids = BTreeSet::new();
    let mut rows = Vec::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in panels(&d) {
        let title = str_of(p, "title");
        assert!(!title.is_empty(), "a panel without a title: {p:?}");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("\"{title}\": no id"));
        assert!(ids.insert(id), "\"{title}\": id {id} is used twice");
        let pos = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            pos[k]
                .as_u64()
                .unwrap_or_else(|| panic!("\"{title}\": gridPos.{k}"))
        });
        assert!(
            w >= 1 && h >= 1 && x + w <= 24,
            "\"{title}\": gridPos {pos:?}"
        );
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("\"{title}\" overlaps \"{other}\"");
                }
            }
        }
        if is_row(p) {
            rows.push(title);
            continue;
        }
        let ds = &p["datasource"];
        assert_eq!(str_of(ds, "type"), "prometheus", "\"{title}\": datasource");
        assert!(
            matches!(str_of(ds, "uid"), "${datasource}" | "${DS_PROMETHEUS}"),
            "\"{title}\": datasource uid {ds:?}"
        );
        let targets = list(p, "targets");
        assert!(!targets.is_empty(), "\"{title}\": no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                !str_of(t, "expr").trim().is_empty(),
                "\"{title}\": a target without expr"
            );
            let r = str_of(t, "refId");
            assert!(!r.is_empty() && refs.insert(r), "\"{title}\": refId {r:?}");
            if let Some(tds) = t.get("datasource") {
                assert_eq!(tds, ds, "\"{title}\": target datasource");
            }
            let known = all_labels();
            let legend = str_of(t, "legendFormat");
            for part in legend.split("{{").skip(1) {
                let label = part.split("}}").next().unwrap_or("").trim();
                assert!(
                    known.contains(label),
                    "\"{title}\": legend {legend:?} names `{label}`, a label no Pylon metric has"
                );
            }
        }
    }
    assert_eq!(rows, ROWS, "rows");
    let types: BTreeSet<&str> = panels(&d).iter().map(|p| str_of(p, "type")).collect();
    for kind in ["stat", "timeseries", "heatmap", "state-timeline"] {
        assert!(types.contains(kind), "no {kind} panel");
    }
}

#[test]
fn queries_use_pylon_metrics_and_variables() {
    let d = dashboard();
    let exprs = exprs(&d);
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    let mut report = Vec::new();
    let mut used = BTreeSet::new();
    for (at, e) in &exprs {
        for p in problems(e, true) {
            report.push(format!("{at}: {p}\n    {e}"));
        }
        if let Ok(s) = scan(e) {
            used.extend(s.selectors.into_iter().map(|s| s.metric));
        }
    }
    for (at, e) in variable_selectors(&d) {
        for p in problems(&e, false) {
            report.push(format!("{at}: {p}\n    {e}"));
        }
    }
    assert!(report.is_empty(), "\n{}", report.join("\n"));
    // Every metric is on the dashboard somewhere.
    let unused: Vec<&str> = METRICS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| !used.contains(*m))
        .collect();
    assert!(unused.is_empty(), "metrics on no panel: {unused:?}");
}

#[test]
fn query_checks_catch_mistakes() {
    let good = r#"sum by (route) (rate(pylon_requests_total{instance=~"$instance", route=~"$route", status="5xx"}[$__rate_interval]))"#;
    assert_eq!(problems(good, true), Vec::<String>::new());
    for (bad, expected) in [
        (
            r#"rate(pylon_request_total{instance=~"$instance", route=~"$route"}[1m])"#,
            "not a metric Pylon exports",
        ),
        (
            r#"process_open_fd{instance=~"$instance"}"#,
            "not a metric Pylon exports",
        ),
        (r#"pylon_upstream_up{instance=~"$instance"}"#, "lacks route"),
        ("pylon_downstream_connections", "lacks instance"),
        (
            r#"pylon_downstream_connections{instance="$instance"}"#,
            "lacks instance",
        ),
        (
            r#"sum by (rout) (pylon_rewrites_total{instance=~"$instance", route=~"$route"})"#,
            "no Pylon metric has",
        ),
        (
            r#"pylon_requests_total{instance=~"$instance", route=~"$route", status="5XX"}"#,
            "is never",
        ),
        (
            r#"pylon_network_bytes_total{instance=~"$instance", direction="rx"}"#,
            "is never",
        ),
        (
            r#"pylon_build_info{instance=~"$instance", route=~"$route"}"#,
            "has no label `route`",
        ),
        (r#"{__name__="pylon_build_info"}"#, "without a metric name"),
    ] {
        let found = problems(bad, true);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{bad}: expected a problem with {expected:?}, got {found:?}"
        );
    }
    assert_eq!(
        substitute(r#"rate(x{instance=~"${instance}", route=~"$route"}[$__rate_interval])"#)
            .unwrap(),
        r#"rate(x{instance=~"(10\\.0\\.0\\.1:9180|10\\.0\\.0\\.2:9180)", route=~"(api|models|none)"}[1m])"#
    );
    assert!(substitute("rate(x[$__range])").is_err());
}

#[test]
fn promtool_parses_every_query() {
    let d = dashboard();
    let queries = promql(&d);
    let dir = TempDir::new("rules");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (at, e)) in queries.iter().enumerate() {
        rules.push_str(&format!("      # {}\n", at.replace('\n', " ")));
        rules.push_str(&format!("      - record: dashboard:expr_{n}\n"));
        rules.push_str(&format!("        expr: {}", block(e, 10)));
    }
    let file = dir.0.join("dashboard.rules.yml");
    fs::write(&file, rules).expect("write rules");
    let out = run_promtool(&["check", "rules"], &file);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "promtool: {out}"
    );
}

#[test]
fn every_query_returns_data_from_a_synthetic_pylon() {
    let d = dashboard();
    let dir = TempDir::new("unit");
    let mut test = String::from(
        "rule_files: []\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n",
    );
    for (series, values) in synthetic_series() {
        test.push_str(&format!(
            "      - series: '{series}'\n        values: '{values}'\n"
        ));
    }
    test.push_str("    promql_expr_test:\n");
    for (at, e) in promql(&d) {
        // absent() of a query is empty exactly when the query has data.
        test.push_str(&format!("      # {}\n", at.replace('\n', " ")));
        test.push_str(&format!(
            "      - expr: {}        eval_time: 5m\n        exp_samples: []\n",
            block(&format!("absent(\n{e}\n)"), 10)
        ));
    }
    let file = dir.0.join("dashboard.test.yml");
    fs::write(&file, test).expect("write test");
    run_promtool(&["test", "rules"], &file);
}
