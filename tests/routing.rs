//! Which upstream a request reaches and with which target: the original
//! Pylon's URL table, prefix matching on segment boundaries, base paths,
//! query strings, trailing-slash redirects and path normalisation, all
//! through the real binary and real sockets.

mod common;

use common::{request, Cluster, Pylon, Upstream};

/// Sends `GET path` and asserts that exactly one request arrived, at
/// `expect` with the request target `target`.
fn check(pylon: &Pylon, cluster: &Cluster, path: &str, expect: &Upstream, target: &str) {
    for u in cluster.all() {
        u.clear();
    }
    let r = pylon.get(path);
    assert_eq!(
        r.status,
        200,
        "GET {path}: status {}, body {:?}",
        r.status,
        r.text()
    );
    assert_eq!(
        r.header("X-Upstream"),
        Some(expect.name()),
        "GET {path} answered by the wrong upstream: {:?}",
        r.text()
    );
    let others: Vec<String> = cluster
        .all()
        .iter()
        .filter(|u| u.count() > 0 && u.name() != expect.name())
        .map(|u| format!("{} saw {:?}", u.name(), u.last().target))
        .collect();
    assert!(others.is_empty(), "GET {path} also reached: {others:?}");
    let seen = expect.seen();
    assert_eq!(
        seen.len(),
        1,
        "GET {path}: {} received {seen:?}",
        expect.name()
    );
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].target,
        target,
        "GET {path}: {} received the wrong target",
        expect.name()
    );
    assert!(
        r.text().contains(&format!("\"target\":\"{target}\"")),
        "response does not come from that request: {:?}",
        r.text()
    );
}

#[test]
fn every_example_url_of_the_original_readme_reaches_its_service() {
    let c = Cluster::start();
    let p = c.pylon();
    let cases: [(&str, &Upstream, &str); 10] = [
        ("/rest-server/api/v1/jobs", &c.rest, "/api/v1/jobs"),
        ("/kubernetes/api/v1/nodes", &c.k8s, "/api/v1/nodes"),
        (
            "/webhdfs/api/v1/?op=LISTSTATUS",
            &c.webhdfs,
            "/webhdfs/v1/?op=LISTSTATUS",
        ),
        (
            "/webhdfs/webhdfs/v1/tmp?op=LISTSTATUS",
            &c.webhdfs,
            "/webhdfs/v1/tmp?op=LISTSTATUS",
        ),
        (
            "/prometheus/api/v1/query?query=up",
            &c.prometheus,
            "/prometheus/api/v1/query?query=up",
        ),
        ("/kubernetes-dashboard/", &c.dashboard, "/"),
        ("/yarn/", &c.yarn, "/"),
        ("/webhdfs/", &c.webhdfs, "/"),
        ("/grafana/", &c.grafana, "/"),
        ("/", &c.portal, "/"),
    ];
    for (path, upstream, target) in cases {
        check(&p, &c, path, upstream, target);
    }
}

#[test]
fn prefixes_match_whole_segments_and_the_longest_wins() {
    let c = Cluster::start();
    let p = c.pylon();
    let cases: &[(&str, &Upstream, &str)] = &[
        ("/kubernetes-dashboard/x", &c.dashboard, "/x"),
        (
            "/kubernetes-dashboard/api/v1/login",
            &c.dashboard,
            "/api/v1/login",
        ),
        ("/kubernetesx", &c.portal, "/kubernetesx"),
        (
            "/kubernetesx/api/v1/nodes",
            &c.portal,
            "/kubernetesx/api/v1/nodes",
        ),
        ("/kubernetes", &c.k8s, "/"),
        ("/rest-server", &c.rest, "/"),
        ("/rest-serverx/api", &c.portal, "/rest-serverx/api"),
        ("/webhdfs/apix", &c.webhdfs, "/apix"),
        ("/webhdfs/api", &c.webhdfs, "/webhdfs"),
        ("/webhdfs/webhdfsx", &c.webhdfs, "/webhdfsx"),
        ("/webhdfs/explorer.html", &c.webhdfs, "/explorer.html"),
        ("/webhdfsx", &c.portal, "/webhdfsx"),
        ("/prometheus", &c.prometheus, "/prometheus"),
        ("/prometheus/graph", &c.prometheus, "/prometheus/graph"),
        ("/prometheusx", &c.portal, "/prometheusx"),
        (
            "/grafana/public/build/app.js",
            &c.grafana,
            "/public/build/app.js",
        ),
        ("/grafanax/", &c.portal, "/grafanax/"),
        ("/yarn/cluster/apps", &c.yarn, "/cluster/apps"),
        ("/index.html", &c.portal, "/index.html"),
        ("/scripts/app.js", &c.portal, "/scripts/app.js"),
    ];
    for (path, upstream, target) in cases {
        check(&p, &c, path, upstream, target);
    }
}

#[test]
fn query_strings_pass_byte_for_byte() {
    let c = Cluster::start();
    let p = c.pylon();
    let cases: &[(&str, &Upstream, &str)] = &[
        (
            "/rest-server/api/v1/jobs?username=a%2e%2e&x=%2F..%2F",
            &c.rest,
            "/api/v1/jobs?username=a%2e%2e&x=%2F..%2F",
        ),
        (
            "/rest-server/api?q=a+b&&c=%41&d=",
            &c.rest,
            "/api?q=a+b&&c=%41&d=",
        ),
        ("/rest-server/api?", &c.rest, "/api?"),
        ("/rest-server/api??x?", &c.rest, "/api??x?"),
        (
            "/kubernetes/api/v1/pods?labelSelector=app%3Dx,tier!%3Dweb&watch=1",
            &c.k8s,
            "/api/v1/pods?labelSelector=app%3Dx,tier!%3Dweb&watch=1",
        ),
        (
            "/prometheus/api/v1/query?query=sum%28rate%28x%5B5m%5D%29%29&time=1.5",
            &c.prometheus,
            "/prometheus/api/v1/query?query=sum%28rate%28x%5B5m%5D%29%29&time=1.5",
        ),
        ("/?a=/../b&c=./", &c.portal, "/?a=/../b&c=./"),
        (
            "/webhdfs/api/v1/?op=LISTSTATUS&user.name=root",
            &c.webhdfs,
            "/webhdfs/v1/?op=LISTSTATUS&user.name=root",
        ),
        ("/webhdfs/api?op=X", &c.webhdfs, "/webhdfs?op=X"),
        (
            "/grafana/d/abc/x?orgId=1&var-a=%2e&refresh=5s",
            &c.grafana,
            "/d/abc/x?orgId=1&var-a=%2e&refresh=5s",
        ),
    ];
    for (path, upstream, target) in cases {
        check(&p, &c, path, upstream, target);
    }
}

#[test]
fn bare_prefixes_of_web_portals_redirect_to_the_slash() {
    let c = Cluster::start();
    let p = c.pylon();
    let cases = [
        ("/kubernetes-dashboard", "/kubernetes-dashboard/"),
        ("/yarn", "/yarn/"),
        ("/webhdfs", "/webhdfs/"),
        ("/grafana", "/grafana/"),
        (
            "/grafana?orgId=1&from=now-1h",
            "/grafana/?orgId=1&from=now-1h",
        ),
        ("/yarn?", "/yarn/?"),
        ("/webhdfs?a=%2e%2e&b", "/webhdfs/?a=%2e%2e&b"),
        // Normalised first: the redirect is for the path that is routed.
        ("//grafana", "/grafana/"),
        ("/x/../yarn", "/yarn/"),
    ];
    for (path, location) in cases {
        let r = p.get(path);
        assert_eq!(r.status, 301, "GET {path}: {:?}", r.text());
        assert_eq!(r.header("Location"), Some(location), "GET {path}");
        // Following the redirect reaches the service.
        let followed = p.get(location);
        assert_eq!(followed.status, 200, "GET {location}");
    }
    // Only the followed requests reached anyone.
    assert_eq!(c.total_requests(), cases.len());
    assert_eq!(c.portal.count(), 0);

    // HEAD gets the same redirect without a body.
    let r = request(
        p.addr(),
        b"HEAD /grafana HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/grafana/"));
}

#[test]
fn dot_segments_and_escapes_are_resolved_before_routing() {
    let c = Cluster::start();
    let p = c.pylon();
    let cases: &[(&str, &Upstream, &str)] = &[
        (
            "/grafana/../kubernetes/api/v1/secrets",
            &c.k8s,
            "/api/v1/secrets",
        ),
        (
            "/grafana/%2e%2e/kubernetes/api/v1/secrets",
            &c.k8s,
            "/api/v1/secrets",
        ),
        (
            "/grafana/%2E%2E/kubernetes/api/v1/secrets",
            &c.k8s,
            "/api/v1/secrets",
        ),
        (
            "/grafana/.%2e/kubernetes/api/v1/secrets",
            &c.k8s,
            "/api/v1/secrets",
        ),
        ("/rest-server/./api/v1/./jobs", &c.rest, "/api/v1/jobs"),
        ("/rest-server/api/v1/jobs/x/..", &c.rest, "/api/v1/jobs/"),
        ("//kubernetes//api//v1/nodes", &c.k8s, "/api/v1/nodes"),
        (
            "/kubernetes/api/v1/namespaces/a%2Fb",
            &c.k8s,
            "/api/v1/namespaces/a%2Fb",
        ),
        (
            "/kubernetes/api/v1/namespaces/a%2fb/..",
            &c.k8s,
            "/api/v1/namespaces/",
        ),
        ("/rest-server/%7euser/%41", &c.rest, "/~user/A"),
        ("/webhdfs/api/../../kubernetes/x", &c.k8s, "/x"),
        ("/kubernetes-dashboard/..", &c.portal, "/"),
        ("/%6bubernetes/api", &c.k8s, "/api"),
    ];
    for (path, upstream, target) in cases {
        check(&p, &c, path, upstream, target);
    }
}

#[test]
fn unsafe_paths_are_refused_with_400() {
    let c = Cluster::start();
    let p = c.pylon();
    let refused = [
        "/../x",
        "/..",
        "/%2e%2e/x",
        "/grafana/../../x",
        "/grafana/%2e%2e/%2E%2E/kubernetes/api",
        "/rest-server/a%00b",
        "/rest-server/%00",
        "/rest-server/a\\b",
        "/rest-server/..\\kubernetes",
        "/rest-server/..;/kubernetes/api",
        "/grafana/..;/kubernetes",
        "/rest-server/.;x/y",
        "/rest-server/a%zzb",
        "/rest-server/a%2",
    ];
    for path in refused {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
        let r = request(p.addr(), raw.as_bytes());
        assert_eq!(r.status, 400, "GET {path}: {:?}", r.text());
    }
    let leaked: Vec<String> = c
        .all()
        .iter()
        .flat_map(|u| u.seen())
        .map(|s| s.target)
        .collect();
    assert!(
        leaked.is_empty(),
        "refused paths reached upstreams: {leaked:?}"
    );
    // Pylon is still serving.
    assert_eq!(p.get("/rest-server/ok").status, 200);
}

/// `true` if a path segment is `.` or `..`, also when spelled with escapes.
fn is_dot_segment(seg: &str) -> bool {
    let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
    let before_params = decoded.split(';').next().unwrap_or_default();
    before_params == "." || before_params == ".."
}

#[test]
fn no_combination_of_dot_segments_reaches_an_upstream() {
    let c = Cluster::start();
    let p = c.pylon();
    let parts = [
        "grafana",
        "kubernetes",
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "%2e",
        "",
        "..;",
        "a%2f..",
    ];
    // Every sequence of one to three parts.
    let mut paths: Vec<String> = Vec::new();
    let mut level = vec![String::new()];
    for _ in 0..3 {
        level = level
            .iter()
            .flat_map(|base| parts.iter().map(move |part| format!("{base}/{part}")))
            .collect();
        paths.extend(level.iter().cloned());
    }
    let mut statuses = std::collections::BTreeMap::new();
    for path in &paths {
        let raw =
            format!("GET {path}/end HTTP/1.1\r\nHost: pylon.test\r\nConnection: close\r\n\r\n");
        let r = request(p.addr(), raw.as_bytes());
        assert!(
            [200, 301, 400].contains(&r.status),
            "GET {path}/end: unexpected {}",
            r.status
        );
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let mut checked = 0;
    for u in c.all() {
        for s in u.seen() {
            checked += 1;
            assert!(
                !s.path().split('/').any(is_dot_segment),
                "{} received a dot-segment: {:?}",
                u.name(),
                s.target
            );
            assert!(
                !s.path().contains("//"),
                "{} received an empty segment: {:?}",
                u.name(),
                s.target
            );
        }
    }
    // Both outcomes occurred, so the check above had something to check.
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    assert!(checked > 100);
}

#[test]
fn without_a_portal_unknown_paths_are_404() {
    let rest = Upstream::start("rest-server");
    let p = Pylon::start("", &[("REST_SERVER_URI", rest.uri())]);
    for path in [
        "/nothing",
        "/",
        "/grafana/",
        "/kubernetes/api/v1/nodes",
        "/rest-serverx",
    ] {
        let r = p.get(path);
        assert_eq!(r.status, 404, "GET {path}: {:?}", r.text());
    }
    assert_eq!(rest.count(), 0);
    let r = p.get("/rest-server/api/v1/jobs");
    assert_eq!(r.status, 200);
    assert_eq!(rest.last().target, "/api/v1/jobs");
}

#[test]
fn healthz_is_answered_by_pylon_itself() {
    let c = Cluster::start();
    let p = c.pylon();
    let r = p.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Pylon ready.");
    assert_eq!(c.total_requests(), 0, "/healthz was proxied");
}

#[test]
fn routes_from_the_file_with_base_paths_overrides_and_switches() {
    let tool = Upstream::start("tool");
    let docs = Upstream::start("docs");
    let grafana = Upstream::start("grafana");
    let portal = Upstream::start("portal");
    let dead = common::closed_port();
    let yaml = format!(
        "routes:
  tool:
    prefix: /tools/my-tool/
    upstream: http://127.0.0.1:{dead}/nowhere
    upstream_env: MY_TOOL_URI
  docs:
    prefix: /docs
    upstream: {docs}/base/path/
    add_slash: true
  grafana:
    upstream: http://127.0.0.1:{dead}
  yarn:
    upstream: {grafana}
    enabled: false
  portal:
    upstream: {portal}
",
        docs = docs.uri(),
        grafana = grafana.uri(),
        portal = portal.uri(),
    );
    let p = Pylon::start(
        &yaml,
        &[
            ("MY_TOOL_URI", format!("{}/api/", tool.uri())),
            ("GRAFANA_URI", grafana.uri()),
        ],
    );

    // A custom variable overrides the file, and its base path is kept.
    let r = p.get("/tools/my-tool/v2/items?id=7");
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(tool.last().target, "/api/v2/items?id=7");
    let r = p.get("/tools/my-tool");
    assert_eq!(r.status, 200);
    assert_eq!(tool.last().target, "/api");

    // A base path from the file; add_slash on a custom route.
    let r = p.get("/docs/guide/intro.html?lang=en");
    assert_eq!(r.status, 200);
    assert_eq!(docs.last().target, "/base/path/guide/intro.html?lang=en");
    let r = p.get("/docs/");
    assert_eq!(r.status, 200);
    assert_eq!(docs.last().target, "/base/path/");
    let r = p.get("/docs");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/docs/"));

    // The standard variable beats the file's dead upstream.
    let r = p.get("/grafana/login");
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(grafana.last().target, "/login");

    // A disabled route's paths fall through to the portal.
    let r = p.get("/yarn/cluster");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Upstream"), Some("portal"));
    assert_eq!(portal.last().target, "/yarn/cluster");
    assert_eq!(grafana.count(), 1);
}
