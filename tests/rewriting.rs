//! Body and header rewriting through the real binary: the portal's internal
//! URIs, Grafana's and YARN's pages, REST JSON, compressed and dribbled
//! bodies, a 50 MB page in bounded memory, Location/Refresh, ETags, the
//! WebHDFS datanode redirect through `/a/`, the refusals of `/a/`, and a
//! side-by-side comparison with nginx running the original rules.
//!
//! Every test checks both ends: what the client got and what the upstream
//! received. The upstreams are [`Site`]s, small servers that answer
//! whatever a test tells them to (status, headers, body, and how the body
//! is cut into writes), because the shared `Upstream` only answers JSON.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::site::{Body, Reply, Req, Site};
use common::{
    admin_get, free_port, pattern_block, request, series_value, wait_until, Client, KillOnDrop,
    Pylon, Response, TempDir, IO_TIMEOUT,
};

/// The `Host` every test client sends: rewritten URLs must carry it, not
/// Pylon's listening address.
const HOST: &str = "pylon.example.org:8080";
/// What `{scheme}://{host}` becomes for those requests.
const PUBLIC: &str = "http://pylon.example.org:8080";

// ------------------------------------------------------------------ fixture

/// The upstream's own base URL as the proxy addressed it (both Pylon and
/// nginx send the upstream's `host:port` as `Host`), for redirects that
/// point at the upstream itself.
fn own_uri(req: &Req) -> String {
    format!("http://{}", req.header("Host").unwrap_or(""))
}

// ------------------------------------------------------------------ client

/// A request with `Host: HOST`, `Connection: close` and `headers`.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    request(addr, &raw)
}

fn get(addr: SocketAddr, target: &str) -> Response {
    send(addr, "GET", target, &[], b"")
}

/// As a browser asks: compressed if possible.
fn browser_get(addr: SocketAddr, target: &str) -> Response {
    send(
        addr,
        "GET",
        target,
        &[("Accept-Encoding", "gzip, deflate, br")],
        b"",
    )
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A rewritten body's length is not known when the head leaves, so the
/// upstream's `Content-Length` must not reach the client.
fn assert_streamed(r: &Response, what: &str) {
    assert_eq!(
        r.header("Content-Length"),
        None,
        "{what}: stale Content-Length on a rewritten body; headers {:?}",
        r.headers
    );
    assert_eq!(
        r.header("Transfer-Encoding"),
        Some("chunked"),
        "{what}: rewritten body not chunked; headers {:?}",
        r.headers
    );
}

/// What does not match the rules' types passes byte for byte, framing
/// included.
fn assert_untouched(r: &Response, sent: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", text(r));
    assert!(r.body == sent, "{what}: body changed: {:?}", text(r));
    assert_eq!(
        r.header("Content-Length"),
        Some(sent.len().to_string().as_str()),
        "{what}: headers {:?}",
        r.headers
    );
}

fn start_pylon(yaml: &str, env: &[(&str, String)]) -> Pylon {
    Pylon::start(yaml, env)
}

/// Fills `@NAME@` markers; YAML and HTML are full of braces, so `format!`
/// would make them unreadable.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("@{k}@"), v);
    }
    let unfilled = out.split('@').skip(1).step_by(2).find(|m| {
        !m.is_empty()
            && m.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    });
    assert!(unfilled.is_none(), "unfilled marker {unfilled:?} in {out}");
    out
}

// ------------------------------------------------------------- 1. portal

/// The web portal embeds every service's internal URI in its HTML and
/// JavaScript; `@URI_x@` marks where each goes.
const PORTAL_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
<title>Platform for AI</title>
<script>
window.ENV = {
  restServerUri: 'http://@URI_REST@',
  k8sApiServerUri: 'http://@URI_K8S@',
  prometheusUri: 'http://@URI_PROM@/prometheus',
  grafanaUri: 'http://@URI_GRAFANA@',
  k8sDashboardUri: 'http://@URI_DASH@',
  yarnWebPortalUri: 'http://@URI_YARN@',
  webhdfsUri: 'http://@URI_HDFS@/webhdfs/v1',
};
</script>
</head>
<body>
<a href="http://@URI_REST@/api/v1/jobs?username=alice">Jobs</a>
<a href="http://@URI_K8S@/api/v1/nodes">Nodes</a>
<a href="http://@URI_DASH@/#!/pod?namespace=default">Dashboard</a>
<a href="http://@URI_YARN@/cluster/apps">YARN</a>
<a href="http://@URI_HDFS@/explorer.html#/">HDFS</a>
<a href="http://@URI_GRAFANA@/d/cluster-overview?kiosk">Cluster</a>
<iframe src="http://@URI_GRAFANA@/d-solo/pai-cluster?panelId=2"></iframe>
<script>fetch('http://@URI_PROM@/prometheus/api/v1/query?query=up');</script>
<a href="http://@URI_PROM@/metrics">Prometheus' own metrics, outside its base path</a>
<a href="https://github.com/microsoft/pai">Source</a>
</body>
</html>
"#;

const PORTAL_JS: &str = "const config={rest:\"http://@URI_REST@/api/v2\",grafana:\"http://@URI_GRAFANA@\",prometheus:\"http://@URI_PROM@/prometheus\"};\n";

#[test]
fn portal_gets_every_internal_uri_replaced_by_its_public_prefix() {
    let (rest, k8s, hdfs, prom, dash, yarn, grafana) = (
        Site::idle(),
        Site::idle(),
        Site::idle(),
        Site::idle(),
        Site::idle(),
        Site::idle(),
        Site::idle(),
    );
    let internal = |f: &Site| f.addr().to_string();
    let uris = [
        ("URI_REST", internal(&rest)),
        ("URI_K8S", internal(&k8s)),
        ("URI_HDFS", internal(&hdfs)),
        ("URI_PROM", internal(&prom)),
        ("URI_DASH", internal(&dash)),
        ("URI_YARN", internal(&yarn)),
        ("URI_GRAFANA", internal(&grafana)),
    ];
    let uris: Vec<(&str, &str)> = uris.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = fill(PORTAL_PAGE, &uris);
    let js = fill(PORTAL_JS, &uris);
    // Binary content can hold the same bytes by chance; it is never touched.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(format!("tEXtsource=http://{}/api", rest.addr()).as_bytes());
    let portal = Site::pages(vec![
        ("/index.html", Reply::html(page.clone())),
        (
            "/scripts/config.js",
            Reply::typed("application/javascript", js.clone()),
        ),
        ("/logo.png", Reply::typed("image/png", png.clone())),
    ]);

    // The portal's own rule runs after the automatic ones: it only matches
    // what they produced.
    let p = start_pylon(
        r#"
routes:
  portal:
    rewrite:
      - pattern: 'href="/grafana/'
        replacement: 'href="{scheme}://{host}/grafana/'
"#,
        &[
            ("REST_SERVER_URI", rest.uri()),
            ("K8S_API_SERVER_URI", k8s.uri()),
            ("WEBHDFS_URI", hdfs.uri()),
            ("PROMETHEUS_URI", format!("{}/prometheus", prom.uri())),
            ("K8S_DASHBOARD_URI", dash.uri()),
            ("YARN_WEB_PORTAL_URI", yarn.uri()),
            ("GRAFANA_URI", grafana.uri()),
            ("PAI_WEB_PORTAL_URI", portal.uri()),
        ],
    );

    let r = browser_get(p.addr(), "/index.html");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_streamed(&r, "portal page");
    let public_grafana = format!("{PUBLIC}/grafana");
    let expected = fill(
        &PORTAL_PAGE
            .replace("http://@URI_REST@", "/rest-server")
            .replace("http://@URI_K8S@", "/kubernetes")
            .replace("http://@URI_PROM@/prometheus", "/prometheus")
            .replace(
                "href=\"http://@URI_GRAFANA@",
                &format!("href=\"{public_grafana}"),
            )
            .replace("http://@URI_GRAFANA@", "/grafana")
            .replace("http://@URI_DASH@", "/kubernetes-dashboard")
            .replace("http://@URI_YARN@", "/yarn")
            .replace("http://@URI_HDFS@/webhdfs", "/webhdfs/api")
            .replace("http://@URI_HDFS@", "/webhdfs"),
        &uris,
    );
    // The WebHDFS API has two prefixes on one upstream: the canonical one,
    // the first in the route table, is used.
    let got = text(&r);
    assert_eq!(got, expected);
    assert!(
        got.contains(&format!("http://{}/metrics", prom.addr())),
        "a URL outside Prometheus' base path is no URL of the route"
    );

    let s = portal.last();
    assert_eq!(s.path(), "/index.html");
    assert_eq!(
        s.header("Accept-Encoding"),
        None,
        "a rewritten route must ask for an uncompressed body"
    );

    let r = browser_get(p.addr(), "/scripts/config.js");
    assert_streamed(&r, "portal script");
    assert_eq!(
        text(&r),
        "const config={rest:\"/rest-server/api/v2\",grafana:\"/grafana\",prometheus:\"/prometheus\"};\n"
    );

    let r = browser_get(p.addr(), "/logo.png");
    assert_untouched(&r, &png, "image on the portal");

    // The services behind the prefixes were named, never called.
    for f in [&rest, &k8s, &hdfs, &prom, &dash, &yarn, &grafana] {
        assert_eq!(f.count(), 0, "{} was called", f.addr());
    }
}

// ------------------------------------------------------------ 2. grafana

/// Grafana 6 as the original served it under `/grafana`: a `<base>`, a
/// navigation tree of root-relative `"url":"/…"` entries and `appSubUrl`.
/// `@BASE@`, `@URL@` and `@SUB@` mark what the original's rules rewrote.
const GRAFANA_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Grafana</title>
  @BASE@
  <link rel="stylesheet" href="public/build/grafana.dark.css">
</head>
<body class="theme-dark">
  <grafana-app class="grafana-app"></grafana-app>
  <script>
    window.grafanaBootData = {"user":{"login":"admin","orgId":1},"settings":{"appSubUrl":"","buildInfo":{"version":"6.1.4"}},"navTree":[{"id":"create","text":"Create",@URL@dashboard/new"},{"id":"dashboards","text":"Dashboards",@URL@","children":[{"text":"Home",@URL@"},{"text":"Playlists",@URL@playlists"}]},{"id":"explore",@URL@explore"}]};
    var homeLink = window.grafanaBootData.settings.@SUB@;
  </script>
  <script src="public/build/app.js"></script>
  <a href='http://node1:8042/node'>node1</a>
</body>
</html>
"#;

fn grafana_page(base: &str, url: &str, sub: &str) -> String {
    fill(GRAFANA_PAGE, &[("BASE", base), ("URL", url), ("SUB", sub)])
}

fn grafana_original() -> String {
    grafana_page(r#"<base href="/" />"#, r#""url":"/"#, r#"appSubUrl+"/""#)
}

fn grafana_rewritten() -> String {
    grafana_page(
        r#"<base href="/grafana/" />"#,
        r#""url":"./"#,
        r#"appSubUrl+"/grafana/""#,
    )
}

/// The original's three Grafana `sub_filter`s, in Pylon's syntax.
const GRAFANA_RULES: &str = r#"
      - {pattern: '<base href="/" />', replacement: '<base href="/grafana/" />'}
      - {pattern: '"url":"/', replacement: '"url":"./'}
      - {pattern: 'appSubUrl+"/"', replacement: 'appSubUrl+"/grafana/"'}
"#;

#[test]
fn grafana_page_is_rewritten_as_the_original_did() {
    let api_json = r#"[{"id":1,"uid":"cluster","title":"Cluster","url":"/d/cluster/overview","type":"dash-db"}]"#;
    let grafana = Site::pages(vec![
        ("/", Reply::html(grafana_original())),
        ("/api/search", Reply::typed("application/json", api_json)),
    ]);
    let p = start_pylon(
        &format!(
            "routes:\n  grafana:\n    rewrite_types: [\"text/html\"]\n    rewrite:{GRAFANA_RULES}"
        ),
        &[("GRAFANA_URI", grafana.uri())],
    );

    let r = browser_get(p.addr(), "/grafana/");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_streamed(&r, "grafana page");
    assert_eq!(text(&r), grafana_rewritten());
    let s = grafana.last();
    assert_eq!(s.target, "/");
    assert_eq!(s.header("Accept-Encoding"), None);

    // Only HTML was listed: Grafana's API answers keep their own URLs, which
    // Grafana's front end resolves against the <base>.
    let r = browser_get(p.addr(), "/grafana/api/search?query=");
    assert_untouched(
        &r,
        api_json.as_bytes(),
        "grafana JSON with rewrite_types HTML",
    );
    assert_eq!(grafana.last().target, "/api/search?query=");
}

// --------------------------------------------------------------- 3. yarn

/// A YARN ResourceManager nodes page: node-manager links in both quote
/// styles, as YARN's own templates write them.
const YARN_PAGE: &str = r#"<html>
<head><title>Nodes of the cluster</title></head>
<body>
<table id="nodes">
<tr><td>/default-rack</td><td>RUNNING</td><td>node1:45454</td><td><a href='@NODE1@'>node1:8042</a></td></tr>
<tr><td>/default-rack</td><td>RUNNING</td><td>node2:45454</td><td><a href="@NODE2@">container logs</a></td></tr>
<tr><td>/default-rack</td><td>LOST</td><td>node3:45454</td><td><a href='@NODE3@'>node3:8042</a></td></tr>
</table>
<a href='http://rm1:8088/cluster/scheduler'>Scheduler</a>
<a href="http://node1:8041/">not a node manager port</a>
</body>
</html>
"#;

/// The spec's YARN rules: node-manager links go back through `/a/`.
const YARN_RULES: &str = r#"
      - pattern: 'href=''http://([^/]*):8042/([^'']*)'''
        replacement: 'href=''{scheme}://{host}/a/$1:8042/$2'''
        regex: true
      - pattern: 'href="http://([^/]*):8042/([^"]*)"'
        replacement: 'href="{scheme}://{host}/a/$1:8042/$2"'
        regex: true
"#;

fn yarn_page(node: impl Fn(&str, &str) -> String) -> String {
    fill(
        YARN_PAGE,
        &[
            ("NODE1", &node("node1", "node")),
            ("NODE2", &node("node2", "logs/x")),
            (
                "NODE3",
                &node(
                    "node3",
                    "node/containerlogs/container_e02_1_0001_01_000002/alice",
                ),
            ),
        ],
    )
}

#[test]
fn yarn_node_manager_links_go_through_a_with_the_requests_scheme_and_host() {
    let original = yarn_page(|host, path| format!("http://{host}:8042/{path}"));
    let yarn = Site::pages(vec![("/cluster/nodes", Reply::html(original))]);
    let p = start_pylon(
        &format!("routes:\n  yarn:\n    rewrite:{YARN_RULES}"),
        &[("YARN_WEB_PORTAL_URI", yarn.uri())],
    );

    let r = browser_get(p.addr(), "/yarn/cluster/nodes");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_streamed(&r, "yarn page");
    assert_eq!(
        text(&r),
        yarn_page(|host, path| format!("{PUBLIC}/a/{host}:8042/{path}"))
    );
    assert!(
        text(&r).contains("href='@NODE1@'")
            || text(&r).contains(&format!("href='{PUBLIC}/a/node1:8042/node'"))
    );
    assert_eq!(yarn.last().header("Accept-Encoding"), None);

    // The links follow whatever address the client used.
    let raw = "GET /yarn/cluster/nodes HTTP/1.1\r\nHost: 10.1.2.3\r\nConnection: close\r\n\r\n";
    let r = request(p.addr(), raw.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        yarn_page(|host, path| format!("http://10.1.2.3/a/{host}:8042/{path}"))
    );
}

// --------------------------------------------------------------- 4. json

/// A REST server job: the YARN-era fields that carried internal URLs.
const JOB_JSON: &str = r#"{"name":"mnist","jobStatus":{"state":"RUNNING","appTrackingUrl":"@TRACK@"},"taskRoles":{"worker":{"taskStatuses":[{"taskIndex":0,"containerLog":"@LOG0@"},{"taskIndex":1,"containerLog":"@LOG1@"}]}},"privateKeyDirectDownloadLink":"@KEY@","description":"see \"http://10.0.1.7:8042/\" for logs"}"#;

fn job_json(f: impl Fn(&str, &str) -> String) -> String {
    fill(
        JOB_JSON,
        &[
            ("TRACK", &f("10.0.1.5:8088", "proxy/application_1_0001/")),
            (
                "LOG0",
                &f(
                    "10.0.1.7:8042",
                    "node/containerlogs/container_1_0001_01_000002/root/",
                ),
            ),
            (
                "LOG1",
                &f(
                    "10.0.1.8:8042",
                    "node/containerlogs/container_1_0001_01_000003/root/",
                ),
            ),
            (
                "KEY",
                &f(
                    "10.0.1.9:5070",
                    "webhdfs/v1/Container/root/mnist/ssh/keyFiles/mnist?op=OPEN",
                ),
            ),
        ],
    )
}

/// The original's REST `subs_filter`s (§1b), with `/a/` for every field.
const REST_RULES: &str = r#"
      - pattern: '"containerLog":"http://([^/]*):8042/([^"]*)"'
        replacement: '"containerLog":"{scheme}://{host}/a/$1:8042/$2"'
        regex: true
      - pattern: '"appTrackingUrl":"http://([^/]*):8088/([^"]*)"'
        replacement: '"appTrackingUrl":"{scheme}://{host}/a/$1:8088/$2"'
        regex: true
      - pattern: '"privateKeyDirectDownloadLink":"http://([^/]*):5070/([^"]*)"'
        replacement: '"privateKeyDirectDownloadLink":"{scheme}://{host}/a/$1:5070/$2"'
        regex: true
"#;

#[test]
fn rest_json_fields_are_rewritten_by_regex_rules() {
    let original = job_json(|hp, path| format!("http://{hp}/{path}"));
    let rest = Site::pages(vec![
        (
            "/api/v1/jobs/mnist",
            Reply::typed("application/json; charset=utf-8", original.clone()),
        ),
        (
            "/api/v1/jobs/mnist/raw",
            Reply::typed("application/octet-stream", original.clone()),
        ),
    ]);
    let p = start_pylon(
        &format!("routes:\n  rest-server:\n    rewrite:{REST_RULES}"),
        &[("REST_SERVER_URI", rest.uri())],
    );

    let r = browser_get(p.addr(), "/rest-server/api/v1/jobs/mnist");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_streamed(&r, "job JSON");
    // Only the three fields change; the same URL in free text does not.
    assert_eq!(
        text(&r),
        job_json(|hp, path| format!("{PUBLIC}/a/{hp}/{path}"))
    );
    let s = rest.last();
    assert_eq!(s.target, "/api/v1/jobs/mnist");
    assert_eq!(s.header("Accept-Encoding"), None);

    let r = browser_get(p.addr(), "/rest-server/api/v1/jobs/mnist/raw");
    assert_untouched(&r, original.as_bytes(), "octet-stream on a rewritten route");

    // An HTTP/1.0 client knows no chunking: the body ends with the
    // connection, and no stale length goes out.
    let raw = format!("GET /rest-server/api/v1/jobs/mnist HTTP/1.0\r\nHost: {HOST}\r\n\r\n");
    let r = request(p.addr(), raw.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), None, "{:?}", r.headers);
    assert_eq!(r.header("Transfer-Encoding"), None, "{:?}", r.headers);
    assert_eq!(
        text(&r),
        job_json(|hp, path| format!("{PUBLIC}/a/{hp}/{path}"))
    );

    // A Host that is no plain name or address never lands in a body.
    let raw = "GET /rest-server/api/v1/jobs/mnist HTTP/1.1\r\nHost: x\"><script>alert(1)</script>\r\nConnection: close\r\n\r\n";
    let r = request(p.addr(), raw.as_bytes());
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(!text(&r).contains("<script>"), "{}", text(&r));
    assert_eq!(text(&r), original, "left as the upstream wrote it");
}

#[test]
fn bodiless_responses_pass_untouched_on_a_kept_alive_connection() {
    let page = yarn_page(|host, path| format!("http://{host}:8042/{path}"));
    let yarn = Site::start(move |req| match req.path() {
        "/nothing" => Reply::new(204).with("X-Site", "204"),
        "/cached" => Reply::new(304).with("ETag", "\"v1\"").with("X-Site", "304"),
        _ => Reply::html(page.clone()).with("X-Site", "page"),
    });
    let p = start_pylon(
        &format!("routes:\n  yarn:\n    rewrite:{YARN_RULES}"),
        &[("YARN_WEB_PORTAL_URI", yarn.uri())],
    );
    // A wrong framing of any of these (a body on a HEAD, a chunked 304)
    // would garble every later response on the connection.
    let mut c = Client::connect(p.addr());
    let ask = |c: &mut Client, method: &str, path: &str| {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        c.send(raw.as_bytes()).expect("send");
        c.read_final_response(method == "HEAD")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };
    let page_len = yarn_page(|host, path| format!("http://{host}:8042/{path}")).len();

    let r = ask(&mut c, "HEAD", "/yarn/page");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Site"), Some("page"));
    assert!(r.body.is_empty());
    if let Some(len) = r.header("Content-Length") {
        assert_eq!(
            len,
            page_len.to_string(),
            "HEAD keeps the upstream's length"
        );
    }
    let r = ask(&mut c, "GET", "/yarn/nothing");
    assert_eq!((r.status, r.header("X-Site")), (204, Some("204")));
    assert!(r.body.is_empty());
    let r = ask(&mut c, "GET", "/yarn/cached");
    assert_eq!((r.status, r.header("X-Site")), (304, Some("304")));
    assert!(r.body.is_empty());
    let r = ask(&mut c, "GET", "/yarn/page");
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        yarn_page(|host, path| format!("{PUBLIC}/a/{host}:8042/{path}"))
    );
    assert_eq!(yarn.count(), 4);
}

// --------------------------------------------------------------- 5. gzip

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A gzip member of stored (uncompressed) deflate blocks: the text stays
/// readable inside the compressed stream, so a proxy that wrongly rewrote
/// it would find the patterns and break the length and checksum.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(0xffff).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gzip -dc");
    let mut stdin = child.stdin.take().expect("gzip stdin");
    let input = data.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    let _ = writer.join();
    assert!(
        out.status.success(),
        "gzip -dc refused the body: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_compressed_body_from_a_misbehaving_upstream_passes_untouched() {
    let json = job_json(|hp, path| format!("http://{hp}/{path}"));
    let gz = gzip_stored(json.as_bytes());
    assert_eq!(gunzip(&gz), json.as_bytes(), "the fixture's own gzip");
    // It compresses although Pylon asked for no encoding.
    let rest = Site::pages(vec![(
        "/api/v1/jobs/mnist",
        Reply::typed("application/json", gz.clone()).with("Content-Encoding", "gzip"),
    )]);
    let p = start_pylon(
        &format!("routes:\n  rest-server:\n    rewrite:{REST_RULES}"),
        &[("REST_SERVER_URI", rest.uri())],
    );
    let r = browser_get(p.addr(), "/rest-server/api/v1/jobs/mnist");
    assert_eq!(rest.last().header("Accept-Encoding"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert!(r.body == gz, "compressed body altered");
    assert_eq!(gunzip(&r.body), json.as_bytes());
}

// ------------------------------------------------------ 6. chunk borders

#[test]
fn matches_straddling_every_read_boundary_give_the_same_result() {
    let yarn_part = yarn_page(|host, path| format!("http://{host}:8042/{path}"));
    let page = format!("{}{}", grafana_original(), yarn_part);
    let expected = format!(
        "{}{}",
        grafana_rewritten().replace(
            "href='http://node1:8042/node'",
            &format!("href='{PUBLIC}/a/node1:8042/node'")
        ),
        yarn_page(|host, path| format!("{PUBLIC}/a/{host}:8042/{path}"))
    );
    let grafana = Site::pages(vec![
        ("/whole", Reply::html(page.clone())),
        (
            "/one-byte-per-write",
            Reply::html("").body(Body::OneBytePerWrite(page.clone().into_bytes())),
        ),
        (
            "/one-byte-per-chunk",
            Reply::html("").body(Body::OneBytePerChunk(page.clone().into_bytes())),
        ),
    ]);
    let p = start_pylon(
        &format!("routes:\n  grafana:\n    rewrite:{GRAFANA_RULES}{YARN_RULES}"),
        &[("GRAFANA_URI", grafana.uri())],
    );
    for path in ["/whole", "/one-byte-per-write", "/one-byte-per-chunk"] {
        let started = Instant::now();
        let r = get(p.addr(), &format!("/grafana{path}"));
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        assert_streamed(&r, path);
        assert_eq!(text(&r), expected, "{path}");
        eprintln!(
            "{path}: {} bytes in {:.2} s",
            page.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

// ------------------------------------------------------------ 7. 50 MB

#[test]
fn a_50_mb_page_streams_through_the_rules_in_bounded_memory() {
    const SIZE: usize = 50 << 20;
    const RSS_LIMIT_KIB: u64 = 64 * 1024;
    let unit = |host: &str, link: &str| {
        format!(
            "<tr><td>{host}:45454</td><td><a href='{link}'>logs</a></td><td>RUNNING</td></tr>\n"
        )
        .into_bytes()
    };
    let path = "node/containerlogs/container_e01_1_0001_01_000042/alice";
    let unit_in = unit("node17", &format!("http://node17:8042/{path}"));
    let unit_out = unit("node17", &format!("{PUBLIC}/a/node17:8042/{path}"));
    let head_in = b"<html><head><base href=\"/\" /></head><body><table>\n".to_vec();
    let head_out = b"<html><head><base href=\"/yarn/\" /></head><body><table>\n".to_vec();
    let tail = b"</table></body></html>\n".to_vec();
    let count = SIZE / unit_in.len();
    let yarn = Site::pages(vec![(
        "/cluster/apps",
        Reply::html("").body(Body::Repeated {
            head: head_in,
            unit: unit_in.clone(),
            count,
            tail: tail.clone(),
        }),
    )]);
    let p = start_pylon(
        &format!(
            "routes:\n  yarn:\n    rewrite:{YARN_RULES}      - {{pattern: '<base href=\"/\" />', replacement: '<base href=\"/yarn/\" />'}}\n"
        ),
        &[("YARN_WEB_PORTAL_URI", yarn.uri())],
    );
    let rss_at_start = p.peak_rss_kib();

    let started = Instant::now();
    let mut c = Client::connect(p.addr());
    let raw =
        format!("GET /yarn/cluster/apps HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    c.send(raw.as_bytes()).expect("send");
    let mut body = Vec::with_capacity(count * unit_out.len() + 4096);
    let r = c
        .read_response_with(false, &mut |b| body.extend_from_slice(b))
        .expect("50 MB response");
    let took = started.elapsed();
    let peak = p.peak_rss_kib();
    eprintln!(
        "50 MB page: {} bytes out in {:.2} s; pylon VmHWM {peak} KiB (after start {rss_at_start} KiB)",
        body.len(),
        took.as_secs_f64()
    );
    assert_eq!(r.status, 200);
    assert_streamed(&r, "50 MB page");
    assert!(body.starts_with(&head_out), "head of the page");
    assert!(body.ends_with(&tail), "tail of the page");
    let middle = &body[head_out.len()..body.len() - tail.len()];
    assert_eq!(
        middle.len(),
        count * unit_out.len(),
        "length of the rewritten rows"
    );
    let rewritten = middle
        .chunks(unit_out.len())
        .filter(|row| *row == unit_out.as_slice())
        .count();
    assert_eq!(rewritten, count, "rows rewritten exactly once each");
    assert!(
        peak < RSS_LIMIT_KIB,
        "pylon peak RSS {peak} KiB while rewriting 50 MB (limit {RSS_LIMIT_KIB} KiB)"
    );
}

// --------------------------------------------------- 8. Location, Refresh

#[test]
fn redirects_to_upstreams_become_public_urls() {
    let prom = Site::idle();
    let prom_uri = prom.uri();
    let grafana = Site::start(move |req| {
        let own = own_uri(req);
        match req.path() {
            "/login-absolute" => Reply::redirect(302, &format!("{own}/login")),
            "/login-relative" => Reply::redirect(302, "/login?redirect=%2Fd%2Fhome"),
            "/already-public" => Reply::redirect(302, "/grafana/d/home"),
            "/external" => Reply::redirect(
                302,
                "https://login.example.com/oauth/authorize?client_id=grafana",
            ),
            "/to-prometheus" => {
                Reply::redirect(302, &format!("{prom_uri}/prometheus/graph?g0.expr=up#tab"))
            }
            "/refresh" => {
                Reply::html("<p>wait</p>").with("Refresh", &format!("5; url={own}/d/home?orgId=1"))
            }
            "/content-location" => Reply::typed("application/json", "{}")
                .with("Content-Location", &format!("{own}/api/dashboards/home")),
            _ => Reply::new(404),
        }
    });
    let rest = Site::start(|req| {
        let own = own_uri(req);
        Reply::new(201)
            .with("Location", &format!("{own}/api/v2/jobs/alice~mnist"))
            .with("Content-Type", "application/json")
            .body(Body::Whole(b"{\"message\":\"created\"}".to_vec()))
    });
    let k8s = Site::start(|req| {
        let own = own_uri(req);
        Reply::redirect(301, &format!("{own}/api/v1/"))
    });
    let p = start_pylon(
        "routes:\n  kubernetes:\n    proxy_redirect: false\n",
        &[
            ("GRAFANA_URI", grafana.uri()),
            ("PROMETHEUS_URI", format!("{}/prometheus", prom.uri())),
            ("REST_SERVER_URI", rest.uri()),
            ("K8S_API_SERVER_URI", k8s.uri()),
        ],
    );
    let location = |path: &str| {
        let r = get(p.addr(), path);
        r.header("Location").map(str::to_string)
    };
    assert_eq!(
        location("/grafana/login-absolute").as_deref(),
        Some(format!("{PUBLIC}/grafana/login").as_str())
    );
    assert_eq!(
        location("/grafana/login-relative").as_deref(),
        Some("/grafana/login?redirect=%2Fd%2Fhome")
    );
    assert_eq!(
        location("/grafana/already-public").as_deref(),
        Some("/grafana/d/home"),
        "a Grafana that knows its sub-path is left alone"
    );
    assert_eq!(
        location("/grafana/external").as_deref(),
        Some("https://login.example.com/oauth/authorize?client_id=grafana")
    );
    assert_eq!(
        location("/grafana/to-prometheus").as_deref(),
        Some(format!("{PUBLIC}/prometheus/graph?g0.expr=up#tab").as_str()),
        "a redirect to another route's upstream goes to that route"
    );

    let r = browser_get(p.addr(), "/grafana/refresh");
    assert_eq!(
        grafana.last().header("Accept-Encoding"),
        Some("gzip, deflate, br"),
        "a route without body rules keeps compression"
    );
    assert_eq!(
        r.header("Refresh"),
        Some(format!("5; url={PUBLIC}/grafana/d/home?orgId=1").as_str())
    );
    let r = get(p.addr(), "/grafana/content-location");
    assert_eq!(
        r.header("Content-Location"),
        Some(format!("{PUBLIC}/grafana/api/dashboards/home").as_str())
    );

    let r = send(
        p.addr(),
        "POST",
        "/rest-server/api/v2/jobs",
        &[("Content-Type", "application/json")],
        b"{\"jobName\":\"mnist\"}",
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("Location"),
        Some(format!("{PUBLIC}/rest-server/api/v2/jobs/alice~mnist").as_str())
    );

    let r = get(p.addr(), "/kubernetes/api/v1");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("Location"),
        Some(format!("{}/api/v1/", k8s.uri()).as_str()),
        "proxy_redirect: false leaves the route's redirects alone"
    );
    assert_eq!(prom.count(), 0);
}

// ---------------------------------------------------------------- 9. ETag

/// `"opaque|<16 hex>"` (weak marker kept): the opaque part and the suffix.
fn split_suffixed(etag: &str) -> (String, String) {
    let (weak, rest) = match etag.strip_prefix("W/") {
        Some(r) => ("W/", r),
        None => ("", etag),
    };
    let inner = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| panic!("ETag {etag:?} is not quoted"));
    let (opaque, suffix) = inner
        .rsplit_once('|')
        .unwrap_or_else(|| panic!("ETag {etag:?} has no |suffix"));
    assert!(
        suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "ETag {etag:?}: suffix is not 16 hex digits"
    );
    (format!("{weak}\"{opaque}\""), suffix.to_string())
}

/// A REST server that validates with strong and weak ETags.
fn etag_server() -> Site {
    let body = job_json(|hp, path| format!("http://{hp}/{path}"));
    Site::start(move |req| {
        let tag = if req.path().ends_with("/weak") {
            "W/\"w-41\""
        } else {
            "\"5f3e-1a2b\""
        };
        if req.header("If-None-Match") == Some(tag) {
            return Reply::new(304).with("ETag", tag);
        }
        Reply::typed("application/json", body.clone()).with("ETag", tag)
    })
}

fn rest_pylon(rules: &str, rest: &Site) -> Pylon {
    start_pylon(
        &format!("routes:\n  rest-server:\n    rewrite:{rules}"),
        &[("REST_SERVER_URI", rest.uri())],
    )
}

#[test]
fn etags_carry_the_rules_hash_and_stale_validators_are_dropped() {
    let rest = etag_server();
    let p = rest_pylon(REST_RULES, &rest);
    let path = "/rest-server/api/v1/jobs/mnist";

    let r = get(p.addr(), path);
    assert_eq!(r.status, 200);
    let etag = r.header("ETag").expect("ETag").to_string();
    let (opaque, suffix) = split_suffixed(&etag);
    assert_eq!(opaque, "\"5f3e-1a2b\"");

    // The current validator is the upstream's once the suffix is removed.
    let r = send(p.addr(), "GET", path, &[("If-None-Match", &etag)], b"");
    assert_eq!(rest.last().header("If-None-Match"), Some("\"5f3e-1a2b\""));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("ETag"), Some(etag.as_str()));

    // Issued under other rules, or before Pylon rewrote anything: the
    // upstream must answer in full, so the body is rewritten anew.
    for stale in ["\"5f3e-1a2b|0123456789abcdef\"", "\"5f3e-1a2b\""] {
        let r = send(p.addr(), "GET", path, &[("If-None-Match", stale)], b"");
        assert_eq!(
            rest.last().header("If-None-Match"),
            None,
            "If-None-Match {stale} reached the upstream"
        );
        assert_eq!(r.status, 200, "If-None-Match {stale}");
        assert_eq!(
            text(&r),
            job_json(|hp, path| format!("{PUBLIC}/a/{hp}/{path}"))
        );
    }

    let r = get(p.addr(), "/rest-server/api/v1/jobs/mnist/weak");
    let weak = r.header("ETag").expect("weak ETag").to_string();
    let (weak_opaque, weak_suffix) = split_suffixed(&weak);
    assert_eq!(weak_opaque, "W/\"w-41\"");
    assert!(weak.starts_with("W/\""), "weak marker kept: {weak}");
    assert_eq!(weak_suffix, suffix);
    let r = send(
        p.addr(),
        "GET",
        "/rest-server/api/v1/jobs/mnist/weak",
        &[("If-None-Match", &weak)],
        b"",
    );
    assert_eq!(rest.last().header("If-None-Match"), Some("W/\"w-41\""));
    assert_eq!(r.status, 304);

    // Other rules, other suffix; the same rules on another instance, the
    // same suffix, so instances behind one balancer validate each other's.
    let other_rules = REST_RULES.replace("/a/$1:5070/", "/a/$1:5070/webhdfs-keys/");
    let p2 = rest_pylon(&other_rules, &rest);
    let r = get(p2.addr(), path);
    let (_, other_suffix) = split_suffixed(r.header("ETag").expect("ETag"));
    assert_ne!(other_suffix, suffix, "changed rules must change the suffix");
    let r = send(p2.addr(), "GET", path, &[("If-None-Match", &etag)], b"");
    assert_eq!(
        r.status, 200,
        "a validator from the old rules gets a full body"
    );
    assert_eq!(rest.last().header("If-None-Match"), None);

    let p3 = rest_pylon(REST_RULES, &rest);
    let r = get(p3.addr(), path);
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
}

// ------------------------------------------------------------ 10. WebHDFS

/// A namenode that sends CREATE and OPEN to `datanode`, with a body that
/// some namenode versions add and pyhdfs rejects.
fn namenode(datanode: SocketAddr) -> Site {
    Site::start(move |req| {
        let op = req
            .query()
            .split('&')
            .find_map(|kv| kv.strip_prefix("op="))
            .unwrap_or("");
        match op {
            "CREATE" | "OPEN" => {
                let location = format!(
                    "http://{datanode}{}?{}&namenoderpcaddress=nn1:8020&createparent=true",
                    req.path(),
                    req.query()
                );
                Reply::new(307)
                    .with("Location", &location)
                    .with("Content-Type", "application/json")
                    .body(Body::Whole(
                        format!("{{\"Location\":\"{location}\"}}").into_bytes(),
                    ))
            }
            _ => Reply::typed("application/json", "{\"FileStatuses\":{\"FileStatus\":[]}}"),
        }
    })
}

/// Path and contents of the files a datanode holds.
type Files = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A datanode that keeps what is written and returns it.
fn datanode() -> Site {
    let files: Files = Arc::default();
    Site::start(move |req| {
        let mut files = files.lock().expect("files");
        match req.method.as_str() {
            "PUT" => {
                files.push((req.path().to_string(), req.body.clone()));
                Reply::new(201).with("Location", &format!("hdfs://nn1:8020{}", req.path()))
            }
            _ => match files.iter().rev().find(|(p, _)| p == req.path()) {
                Some((_, data)) => Reply::typed("application/octet-stream", data.clone()),
                None => Reply::typed("application/json", "{\"RemoteException\":{}}").status(404),
            },
        }
    })
}

/// The target of a Location that points at Pylon.
fn follow(location: &str) -> String {
    location
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("Location {location:?} does not point at {PUBLIC}"))
        .to_string()
}

/// What a WebHDFS client does after the redirect: `Expect: 100-continue`,
/// the body only once the datanode said so.
fn put_expecting_continue(addr: SocketAddr, target: &str, data: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        data.len()
    );
    c.send(head.as_bytes()).expect("send head");
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let interim = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("no 100 Continue within 5 s for PUT {target}: {e}"));
    assert_eq!(interim.status, 100, "PUT {target}: {}", text(&interim));
    c.stream()
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    c.stream().write_all(data).expect("send body");
    c.read_final_response(false).expect("final response")
}

#[test]
fn webhdfs_create_and_open_go_through_a_on_both_prefixes() {
    let dn = datanode();
    let nn = namenode(dn.addr());
    let p = start_pylon(
        "hostport:\n  allow: [\"127.0.0.1/32\"]\n  allow_loopback: true\n",
        &[("WEBHDFS_URI", nn.uri())],
    );
    let data = &pattern_block()[..300 * 1024];

    for (prefix, file) in [("/webhdfs/api", "/tmp/f"), ("/webhdfs/webhdfs", "/tmp/g")] {
        let r = send(
            p.addr(),
            "PUT",
            &format!("{prefix}/v1{file}?op=CREATE&overwrite=true"),
            &[],
            b"",
        );
        assert_eq!(r.status, 307, "{prefix}: {}", text(&r));
        let query = "op=CREATE&overwrite=true&namenoderpcaddress=nn1:8020&createparent=true";
        assert_eq!(
            r.header("Location"),
            Some(format!("{PUBLIC}/a/{}/webhdfs/v1{file}?{query}", dn.addr()).as_str()),
            "{prefix}"
        );
        assert!(r.body.is_empty(), "{prefix}: 307 body {:?}", text(&r));
        assert_eq!(r.header("Content-Length"), Some("0"), "{prefix}");
        assert_eq!(
            nn.last().target,
            format!("/webhdfs/v1{file}?op=CREATE&overwrite=true")
        );

        let r = put_expecting_continue(p.addr(), &follow(r.header("Location").unwrap()), data);
        assert_eq!(r.status, 201, "{prefix}: {}", text(&r));
        assert_eq!(
            r.header("Location"),
            Some(format!("hdfs://nn1:8020/webhdfs/v1{file}").as_str()),
            "not an HTTP URL: left alone"
        );
        let s = dn.last();
        assert_eq!(s.method, "PUT");
        assert_eq!(s.target, format!("/webhdfs/v1{file}?{query}"));
        assert!(
            s.body == data,
            "{prefix}: datanode got {} bytes",
            s.body.len()
        );

        let r = get(p.addr(), &format!("{prefix}/v1{file}?op=OPEN"));
        assert_eq!(r.status, 307, "{prefix}");
        assert!(r.body.is_empty());
        let r = get(p.addr(), &follow(r.header("Location").unwrap()));
        assert_eq!(r.status, 200, "{prefix}: {}", text(&r));
        assert!(
            r.body == data,
            "{prefix}: OPEN returned {} bytes",
            r.body.len()
        );
    }

    // Other answers of the namenode are the API's own.
    let r = get(p.addr(), "/webhdfs/api/v1/tmp?op=LISTSTATUS");
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "{\"FileStatuses\":{\"FileStatus\":[]}}");
}

// ------------------------------------------------------- 11. /a/ refusals

#[test]
fn a_destinations_are_counted_under_their_own_route_label() {
    let target = Site::start(|_| Reply::typed("text/plain", "reached\n"));
    let p = start_pylon(
        "hostport:\n  allow: [\"127.0.0.1/32\"]\n  allow_loopback: true\n",
        &[] as &[(&str, String)],
    );
    for _ in 0..3 {
        let r = get(p.addr(), &format!("/a/127.0.0.1:{}/x", target.port()));
        assert_eq!(r.status, 200, "{}", text(&r));
    }
    let metrics = text(&admin_get(&p, "/metrics"));
    let count = |route| {
        series_value(
            &metrics,
            "pylon_requests_total",
            &[("route", route), ("method", "GET"), ("status", "2xx")],
        )
    };
    assert_eq!(count("hostport"), Some(3.0), "{metrics}");
    assert!(
        count("none").is_none_or(|n| n < 3.0),
        "/a/ traffic counted as answered before routing: {metrics}"
    );
}

#[test]
fn a_refuses_what_is_not_allowed_and_the_target_sees_nothing() {
    let target = Site::start(|_| Reply::typed("text/plain", "reached\n"));
    // 127.0.0.2 is loopback too on Linux, but outside a /32 for 127.0.0.1.
    let elsewhere = Site::start_on(Ipv4Addr::new(127, 0, 0, 2), |_| {
        Reply::typed("text/plain", "reached\n")
    });
    let t = target.port();

    // Everything allowed by CIDR; loopback, link-local and unspecified
    // addresses still refused by default.
    let open = start_pylon(
        "hostport:\n  allow: [\"0.0.0.0/0\"]\n",
        &[] as &[(&str, String)],
    );
    for path in [
        format!("/a/127.0.0.1:{t}/"),
        format!("/yarn/127.0.0.1:{t}/node"),
        format!("/log-manager/127.0.0.1:{t}/tail/stdout"),
        format!("/a/localhost:{t}/"),
        format!("/a/0.0.0.0:{t}/"),
        format!("/a/127.0.0.2:{}/", elsewhere.port()),
        "/a/169.254.169.254:80/latest/meta-data/iam/security-credentials/".to_string(),
    ] {
        let r = get(open.addr(), &path);
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
    }
    for path in ["/a/not-a-hostport/", "/a/127.0.0.1:http/"] {
        let r = get(open.addr(), path);
        assert_eq!(r.status, 400, "{path}: {}", text(&r));
    }
    let r = get(open.addr(), "/a/no-such-node.invalid:8042/node");
    assert_eq!(r.status, 502, "unresolvable name: {}", text(&r));

    // Loopback allowed and 127.0.0.1 listed: Pylon's own listeners are
    // still no destination, nor is an address outside the list.
    let local = start_pylon(
        "hostport:\n  allow: [\"127.0.0.1/32\"]\n  allow_loopback: true\n",
        &[] as &[(&str, String)],
    );
    for path in [
        format!("/a/127.0.0.1:{}/healthz", local.addr().port()),
        format!("/a/127.0.0.1:{}/metrics", local.admin_addr().port()),
        format!("/a/127.0.0.2:{}/", elsewhere.port()),
    ] {
        let r = get(local.addr(), &path);
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
    }
    let r = get(local.addr(), &format!("/a/127.0.0.1:{t}/x?y=1"));
    assert_eq!(r.status, 200, "an allowed destination: {}", text(&r));
    assert_eq!(target.last().target, "/x?y=1");
    // The original's other host:port paths, for node managers and log
    // managers, forward the same way.
    let r = get(
        local.addr(),
        &format!("/yarn/127.0.0.1:{t}/node/allContainers"),
    );
    assert_eq!(r.status, 200, "/yarn/host:port: {}", text(&r));
    assert_eq!(target.last().target, "/node/allContainers");
    let r = get(
        local.addr(),
        &format!("/log-manager/127.0.0.1:{t}/tail/stdout?n=10"),
    );
    assert_eq!(r.status, 200, "/log-manager/host:port: {}", text(&r));
    assert_eq!(target.last().target, "/tail/stdout?n=10");
    let r = get(
        local.addr(),
        &format!("/yarn/127.0.0.2:{}/node", elsewhere.port()),
    );
    assert_eq!(r.status, 403, "/yarn/ checks its destination as /a/ does");
    target.clear();
    let allowed_connections = target.connections();

    // Ports listed: any other port is refused.
    let ports = start_pylon(
        "hostport:\n  allow: [\"127.0.0.1/32\"]\n  ports: [9864, 8042]\n  allow_loopback: true\n",
        &[] as &[(&str, String)],
    );
    let r = get(ports.addr(), &format!("/a/127.0.0.1:{t}/"));
    assert_eq!(r.status, 403, "port not listed: {}", text(&r));

    // No hostport section: no /a/ route at all.
    let off = start_pylon("", &[] as &[(&str, String)]);
    let r = get(off.addr(), &format!("/a/127.0.0.1:{t}/"));
    assert_eq!(r.status, 404, "/a/ without hostport: {}", text(&r));

    assert_eq!(target.count(), 0, "a refused request reached the target");
    assert_eq!(
        target.connections(),
        allowed_connections,
        "a refused request connected to the target"
    );
    assert_eq!(elsewhere.connections(), 0, "127.0.0.2 was connected to");
}

// -------------------------------------------------------- 12. nginx parity

/// nginx with the original's rules (pylon-history §1, §1a, §1b), pointed at
/// the same fixtures as Pylon. `@X@` markers are filled in by the test.
const NGINX_CONF: &str = r##"
load_module /usr/lib/nginx/modules/ngx_http_subs_filter_module.so;
master_process off;
worker_processes 1;
error_log @DIR@/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path @DIR@/client_body;
  proxy_temp_path @DIR@/proxy;
  fastcgi_temp_path @DIR@/fastcgi;
  uwsgi_temp_path @DIR@/uwsgi;
  scgi_temp_path @DIR@/scgi;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:@PORT@;

    location ~ ^/a/([^/]+):(\d*)(.*)$ {
      proxy_pass http://$1:$2$3$is_args$args;
    }

    location ~ ^/rest-server/api(.*)$ {
      proxy_pass @REST@/api$1$is_args$args;
      proxy_redirect @REST@/api http://$http_host/rest-server/api;
      proxy_set_header Accept-Encoding "";
      subs_filter_types *;
      subs_filter \"containerLog\":\"http://([^/]*):8042/([^\"]*)\" \"containerLog\":\"$scheme://$http_host/yarn/$1:8042/$2\" r;
      subs_filter \"appTrackingUrl\":\"http://([^/]*):8088/([^\"]*)\" \"appTrackingUrl\":\"$scheme://$http_host/yarn/$1:8088/$2\" r;
      subs_filter \"privateKeyDirectDownloadLink\":\"http://([^/]*):5070/([^\"]*)\" \"privateKeyDirectDownloadLink\":\"$scheme://$http_host/a/$1:5070/$2\" r;
      subs_filter \"containerLog\":\"http://([^/]*):(\d+)/log-manager/([^\"]*)\" \"containerLog\":\"/log-manager/$1:$2/$3\" r;
    }

    location ~ ^/webhdfs/api(.*)$ {
      proxy_pass @WEBHDFS@/webhdfs$1$is_args$args;
      proxy_intercept_errors on;
      error_page 307 @handle_webhdfs_api_redirect;
    }
    location ~ ^/webhdfs/webhdfs {
      rewrite ^/webhdfs/webhdfs(.*)$ /webhdfs/api$1 last;
    }
    location @handle_webhdfs_api_redirect {
      if ($upstream_http_location ~ ^http://([^/]+):(\d+)/(.*)$) {
        add_header Location $scheme://$http_host/a/$1:$2/$3;
        return 300 "";
      }
    }

    location ~ ^/grafana$ { return 301 $scheme://$http_host$request_uri/; }
    location ~ ^/grafana(.*)$ {
      proxy_pass @GRAFANA@$1$is_args$args;
      proxy_set_header Accept-Encoding "";
      sub_filter '<base href="/" />' '<base href="/grafana/" />';
      sub_filter '"url":"/' '"url":"./';
      sub_filter 'appSubUrl+"/"' 'appSubUrl+"/grafana/"';
      sub_filter_once off;
    }

    location ~ ^/yarn/(.*)$ {
      proxy_pass @YARN@/$1$is_args$args;
      proxy_set_header Accept-Encoding "";
      set $base $scheme://$http_host/yarn/;
      subs_filter "<html>" "<head><base href=\"$base\"></head><html>" o;
      subs_filter " src=\"/static" " src=\"static" g;
      subs_filter href=(['"])/ href=$1 r;
      subs_filter href=\'http://([^/]*):8042\' href=\'$scheme://$http_host/yarn/$1:8042/node\' r;
      subs_filter href=\'http://([^/]*):8042/([^\']*)\' href=\'$scheme://$http_host/yarn/$1:8042/$2\' r;
      subs_filter href=\'http://([^/]*):8088/([^\']*)\' href=\'$scheme://$http_host/yarn/$1:8088/$2\' r;
      subs_filter href=\"/([^/]*):8042\" href=\"$scheme://$http_host/yarn/$1:8042/node\" r;
      subs_filter href=\"http://([^/]*):8042\" href=\"$scheme://$http_host/yarn/$1:8042/node\" r;
      subs_filter href=\"http://([^/]*):8042/([^\"]*)\" href=\"$scheme://$http_host/yarn/$1:8042/$2\" r;
      subs_filter href=\"http://([^/]*):8088\" href=\"$scheme://$http_host/yarn/$1:8088/cluster\" r;
      subs_filter href=\"http://([^/]*):8088/([^\"]*)\" href=\"$scheme://$http_host/yarn/$1:8088/$2\" r;
      subs_filter url=http://([^/]*):8188/([^\"]*)\"> url=$scheme://$http_host/yarn/$1:8188/$2\"> r;
      subs_filter 8088/proxy/application 8088/cluster/app/application g;
    }

    location ~ ^(.*)$ {
      proxy_pass @PORTAL@$1$is_args$args;
      proxy_set_header Accept-Encoding "";
      sub_filter_types *;
      sub_filter_once off;
      sub_filter '@REST@' '/rest-server';
      sub_filter '@K8S@' '/kubernetes';
      sub_filter '@PROMETHEUS@/prometheus' '/prometheus';
      sub_filter '@DASHBOARD@' '/kubernetes-dashboard/';
      sub_filter '@GRAFANA@' '/grafana';
      sub_filter '@YARN@' '/yarn';
    }
  }
}
"##;

/// The same rules for Pylon: the portal's list is automatic; YARN's links
/// go to `/a/` (Pylon's `/yarn` route reaches the ResourceManager only).
const PARITY_PYLON: &str = r#"
hostport:
  allow: ["127.0.0.1/32"]
  allow_loopback: true
routes:
  rest-server:
    rewrite:
      - pattern: '"containerLog":"http://([^/]*):8042/([^"]*)"'
        replacement: '"containerLog":"{scheme}://{host}/yarn/$1:8042/$2"'
        regex: true
      - pattern: '"appTrackingUrl":"http://([^/]*):8088/([^"]*)"'
        replacement: '"appTrackingUrl":"{scheme}://{host}/yarn/$1:8088/$2"'
        regex: true
      - pattern: '"privateKeyDirectDownloadLink":"http://([^/]*):5070/([^"]*)"'
        replacement: '"privateKeyDirectDownloadLink":"{scheme}://{host}/a/$1:5070/$2"'
        regex: true
      - pattern: '"containerLog":"http://([^/]*):(\d+)/log-manager/([^"]*)"'
        replacement: '"containerLog":"/log-manager/$1:$2/$3"'
        regex: true
  grafana:
    rewrite_types: ["text/html"]
    rewrite:
      - {pattern: '<base href="/" />', replacement: '<base href="/grafana/" />'}
      - {pattern: '"url":"/', replacement: '"url":"./'}
      - {pattern: 'appSubUrl+"/"', replacement: 'appSubUrl+"/grafana/"'}
  yarn:
    rewrite:
      - {pattern: '<html>', replacement: '<head><base href="{scheme}://{host}/yarn/"></head><html>'}
      - {pattern: ' src="/static', replacement: ' src="static'}
      - {pattern: 'href=([''"])/', replacement: 'href=$1', regex: true}
      - {pattern: 'href=''http://([^/]*):8042''', replacement: 'href=''{scheme}://{host}/yarn/$1:8042/node''', regex: true}
      - {pattern: 'href=''http://([^/]*):8042/([^'']*)''', replacement: 'href=''{scheme}://{host}/yarn/$1:8042/$2''', regex: true}
      - {pattern: 'href=''http://([^/]*):8088/([^'']*)''', replacement: 'href=''{scheme}://{host}/yarn/$1:8088/$2''', regex: true}
      - {pattern: 'href="/([^/]*):8042"', replacement: 'href="{scheme}://{host}/yarn/$1:8042/node"', regex: true}
      - {pattern: 'href="http://([^/]*):8042"', replacement: 'href="{scheme}://{host}/yarn/$1:8042/node"', regex: true}
      - {pattern: 'href="http://([^/]*):8042/([^"]*)"', replacement: 'href="{scheme}://{host}/yarn/$1:8042/$2"', regex: true}
      - {pattern: 'href="http://([^/]*):8088"', replacement: 'href="{scheme}://{host}/yarn/$1:8088/cluster"', regex: true}
      - {pattern: 'href="http://([^/]*):8088/([^"]*)"', replacement: 'href="{scheme}://{host}/yarn/$1:8088/$2"', regex: true}
      - {pattern: 'url=http://([^/]*):8188/([^"]*)">', replacement: 'url={scheme}://{host}/yarn/$1:8188/$2">', regex: true}
      - {pattern: '8088/proxy/application', replacement: '8088/cluster/app/application'}
"#;

/// A ResourceManager applications page touching every YARN rule.
const YARN_APPS_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head><meta http-equiv="refresh" content="30; url=http://ats1:8188/applicationhistory/app/application_1_0001"></head>
<link rel="stylesheet" href="/static/yarn.css">
<script type="text/javascript" src="/static/jquery/jquery-3.4.1.min.js"></script>
<a href="/cluster/apps/RUNNING">RUNNING</a>
<a href='/cluster/nodes'>Nodes</a>
<a href='http://node1:8042'>node1</a>
<a href='http://node1:8042/node/containerlogs/container_1_0001_01_000001/alice'>logs</a>
<a href='http://rm1:8088/proxy/application_1_0001/'>ApplicationMaster</a>
<a href="/node2:8042">node2</a>
<a href="http://node2:8042">node2</a>
<a href="http://node2:8042/node/allContainers">containers</a>
<a href="http://rm1:8088">RM</a>
<a href="http://rm1:8088/cluster/app/application_1_0001">app</a>
<td>http://rm1:8088/proxy/application_1_0002/</td>
</html>
"#;

/// One nginx with its own prefix directory, stopped on drop.
struct Nginx {
    addr: SocketAddr,
    dir: TempDir,
    _child: KillOnDrop,
}

const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_subs_filter_module.so";

impl Nginx {
    fn start(conf_template: &str, values: &[(&str, &str)]) -> Nginx {
        let missing = !Path::new(NGINX_MODULE).exists()
            || Command::new("nginx")
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true);
        assert!(
            !missing,
            "nginx with the substitutions filter is needed: apt-get install nginx libnginx-mod-http-subs-filter (tests/install-deps.sh)"
        );
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.path().display().to_string();
        let p = port.to_string();
        let mut all: Vec<(&str, &str)> = vec![("DIR", &d), ("PORT", &p)];
        all.extend_from_slice(values);
        let conf = fill(conf_template, &all);
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(format!("daemon off; pid {}/nginx.pid;", d))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nginx");
        let mut child = KillOnDrop(child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("nginx to listen", Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "nginx exited ({status}): {err}\n{}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
        Nginx {
            addr,
            dir,
            _child: child,
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

#[test]
fn pylon_rewrites_as_nginx_did_with_the_original_rules() {
    let (k8s, prom, dash) = (Site::idle(), Site::idle(), Site::idle());
    let dn = datanode();
    let nn = namenode(dn.addr());
    let grafana = Site::start(move |req| match req.path() {
        "/" => Reply::html(grafana_original()),
        "/login" => Reply::redirect(302, "/login/generic_oauth"),
        "/absolute" => Reply::redirect(302, &format!("{}/d/home", own_uri(req))),
        _ => Reply::new(404),
    });
    let yarn = Site::pages(vec![("/cluster/apps", Reply::html(YARN_APPS_PAGE))]);
    let log_json = r#"{"containerLog":"http://10.0.1.7:9103/log-manager/tail/container_1/stdout"}"#;
    let job = job_json(|hp, path| format!("http://{hp}/{path}"));
    let rest = Site::start(move |req| match req.path() {
        "/api/v1/jobs/mnist" => Reply::typed("application/json", job.clone()),
        "/api/v1/jobs/mnist/log" => Reply::typed("application/json", log_json),
        "/api/v2/jobs" => Reply::new(201)
            .with(
                "Location",
                &format!("{}/api/v2/jobs/alice~mnist", own_uri(req)),
            )
            .with("Content-Type", "application/json")
            .body(Body::Whole(b"{\"message\":\"created\"}".to_vec())),
        _ => Reply::new(404),
    });
    let uris = [
        ("URI_REST", rest.addr().to_string()),
        ("URI_K8S", k8s.addr().to_string()),
        ("URI_HDFS", nn.addr().to_string()),
        ("URI_PROM", prom.addr().to_string()),
        ("URI_DASH", dash.addr().to_string()),
        ("URI_YARN", yarn.addr().to_string()),
        ("URI_GRAFANA", grafana.addr().to_string()),
    ];
    let uris: Vec<(&str, &str)> = uris.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Upper case: nginx's sub_filter ignores case, Pylon's literal rules
    // do not.
    let portal_page = format!(
        "{}<a href=\"HTTP://{}/api/v1/jobs\">shouting</a>\n",
        fill(PORTAL_PAGE, &uris),
        rest.addr()
    );
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(format!("tEXtsource=http://{}/api", rest.addr()).as_bytes());
    let portal = Site::pages(vec![
        ("/index.html", Reply::html(portal_page.clone())),
        ("/logo.png", Reply::typed("image/png", png.clone())),
    ]);

    let nginx = Nginx::start(
        NGINX_CONF,
        &[
            ("REST", &rest.uri()),
            ("K8S", &k8s.uri()),
            ("WEBHDFS", &nn.uri()),
            ("PROMETHEUS", &prom.uri()),
            ("DASHBOARD", &dash.uri()),
            ("GRAFANA", &grafana.uri()),
            ("YARN", &yarn.uri()),
            ("PORTAL", &portal.uri()),
        ],
    );
    let pylon = start_pylon(
        PARITY_PYLON,
        &[
            ("REST_SERVER_URI", rest.uri()),
            ("K8S_API_SERVER_URI", k8s.uri()),
            ("WEBHDFS_URI", nn.uri()),
            ("PROMETHEUS_URI", format!("{}/prometheus", prom.uri())),
            ("K8S_DASHBOARD_URI", dash.uri()),
            ("YARN_WEB_PORTAL_URI", yarn.uri()),
            ("GRAFANA_URI", grafana.uri()),
            ("PAI_WEB_PORTAL_URI", portal.uri()),
        ],
    );
    let both = |method: &str, target: &str, body: &[u8]| {
        let n = send(nginx.addr, method, target, &[], body);
        let p = send(pylon.addr(), method, target, &[], body);
        assert!(
            n.status < 500,
            "nginx {method} {target}: {} {}\n{}",
            n.status,
            text(&n),
            nginx.error_log()
        );
        (n, p)
    };

    // Identical: Grafana, the REST job and log fields that go to /a/ or
    // /log-manager in both, the REST Location, the WebHDFS redirects.
    let (n, p) = both("GET", "/grafana/", b"");
    assert_eq!(text(&n), grafana_rewritten(), "nginx itself");
    assert_eq!(text(&p), text(&n), "grafana page");

    let (n, p) = both("GET", "/rest-server/api/v1/jobs/mnist/log", b"");
    assert_eq!(
        text(&n),
        r#"{"containerLog":"/log-manager/10.0.1.7:9103/tail/container_1/stdout"}"#
    );
    assert_eq!(text(&p), text(&n), "log-manager link");

    let (n, p) = both("POST", "/rest-server/api/v2/jobs", b"{}");
    assert_eq!((n.status, p.status), (201, 201));
    let created = format!("{PUBLIC}/rest-server/api/v2/jobs/alice~mnist");
    assert_eq!(n.header("Location"), Some(created.as_str()));
    assert_eq!(p.header("Location"), n.header("Location"), "REST Location");

    for prefix in ["/webhdfs/api", "/webhdfs/webhdfs"] {
        for op in ["CREATE", "OPEN"] {
            let method = if op == "CREATE" { "PUT" } else { "GET" };
            let (n, p) = both(method, &format!("{prefix}/v1/tmp/f?op={op}"), b"");
            assert_eq!((n.status, p.status), (307, 307), "{prefix} {op}");
            assert!(
                n.header("Location")
                    .is_some_and(|l| l.starts_with(&format!("{PUBLIC}/a/{}/", dn.addr()))),
                "nginx {prefix} {op}: {:?}",
                n.headers
            );
            assert_eq!(p.header("Location"), n.header("Location"), "{prefix} {op}");
            assert_eq!((n.body.len(), p.body.len()), (0, 0), "{prefix} {op} body");
        }
    }

    // The YARN page and the REST job, with the original's rules verbatim:
    // `/yarn/<host>:<port>/…` is a host:port path in Pylon as it was in
    // the original, so even the links into it are the same.
    let (n, p) = both("GET", "/yarn/cluster/apps", b"");
    assert!(
        text(&n).contains(&format!("href='{PUBLIC}/yarn/node1:8042/node'")),
        "nginx applied the YARN rules: {}",
        text(&n)
    );
    assert_eq!(text(&p), text(&n), "YARN page");
    let (n, p) = both("GET", "/rest-server/api/v1/jobs/mnist", b"");
    assert!(text(&n).contains("/yarn/10.0.1.7:8042/"), "{}", text(&n));
    assert_eq!(text(&p), text(&n), "REST job");

    // Intentional differences, each asserted as such:
    //
    // 1. The portal: Pylon replaces every active route's upstream,
    //    WebHDFS's included, which the original's list lacked; the
    //    dashboard's prefix has no trailing slash (the original's
    //    `/kubernetes-dashboard/` doubled the slash before a path); and
    //    Pylon's literal rules match case-sensitively, where sub_filter
    //    ignores case.
    let (n, p) = both("GET", "/index.html", b"");
    let nginx_portal = text(&n);
    let hdfs = nn.addr().to_string();
    let expected = nginx_portal
        .replace(&format!("http://{hdfs}/webhdfs"), "/webhdfs/api")
        .replace(&format!("http://{hdfs}"), "/webhdfs")
        .replace("/kubernetes-dashboard//", "/kubernetes-dashboard/")
        .replace("'/kubernetes-dashboard/'", "'/kubernetes-dashboard'")
        .replace(
            "<a href=\"/rest-server/api/v1/jobs\">shouting",
            &format!("<a href=\"HTTP://{}/api/v1/jobs\">shouting", rest.addr()),
        );
    assert!(
        nginx_portal.contains("<a href=\"/rest-server/api/v1/jobs\">shouting"),
        "nginx's sub_filter ignores case: {nginx_portal}"
    );
    assert_eq!(text(&p), expected, "portal page");

    // 2. Binary types are never rewritten; the original's
    //    `sub_filter_types *` rewrote images too.
    let (n, p) = both("GET", "/logo.png", b"");
    assert!(n.body != png, "nginx rewrites binary bodies");
    assert_untouched(&p, &png, "image on the portal");

    // 3. Grafana's redirects: nginx, with variables in proxy_pass, left
    //    them pointing at Grafana's internal address or root; Pylon maps
    //    them under /grafana.
    let (n, p) = both("GET", "/grafana/login", b"");
    assert_eq!(n.header("Location"), Some("/login/generic_oauth"));
    assert_eq!(p.header("Location"), Some("/grafana/login/generic_oauth"));
    let (n, p) = both("GET", "/grafana/absolute", b"");
    assert_eq!(
        n.header("Location"),
        Some(format!("{}/d/home", grafana.uri()).as_str())
    );
    assert_eq!(
        p.header("Location"),
        Some(format!("{PUBLIC}/grafana/d/home").as_str())
    );
}
