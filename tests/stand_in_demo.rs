//! The demo set-up: the `stand-in` example plays the cluster's services and
//! Pylon routes to them, as a person trying Pylon would run it.

mod common;

use common::{start_stand_ins, Pylon};

const SERVICES: [(&str, &str); 8] = [
    ("rest-server", "REST_SERVER_URI"),
    ("kubernetes", "K8S_API_SERVER_URI"),
    ("webhdfs", "WEBHDFS_URI"),
    ("prometheus", "PROMETHEUS_URI"),
    ("kubernetes-dashboard", "K8S_DASHBOARD_URI"),
    ("yarn", "YARN_WEB_PORTAL_URI"),
    ("grafana", "GRAFANA_URI"),
    ("portal", "PAI_WEB_PORTAL_URI"),
];

#[test]
fn stand_ins_behind_pylon_show_where_requests_went() {
    let names: Vec<&str> = SERVICES.iter().map(|(n, _)| *n).collect();
    let (_stand_ins, urls) = start_stand_ins(&names);
    let mut env = Vec::new();
    for (name, url) in urls {
        let var = SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown service {name}"))
            .1;
        let url = if name == "prometheus" {
            format!("{url}/prometheus")
        } else {
            url
        };
        env.push((var, url));
    }
    let p = Pylon::start("", &env);

    let r = p.get("/rest-server/api/v1/jobs?username=alice");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let json = r.text();
    for part in [
        "\"service\":\"rest-server\"",
        "\"method\":\"GET\"",
        "\"path\":\"/api/v1/jobs\"",
        "\"query\":\"username=alice\"",
        "\"x-forwarded-prefix\":\"/rest-server\"",
        "\"x-forwarded-for\":\"127.0.0.1\"",
        "\"x-forwarded-host\":\"pylon.test\"",
        "\"x-forwarded-proto\":\"http\"",
    ] {
        assert!(json.contains(part), "{part} not in {json}");
    }

    let r = p.get("/webhdfs/api/v1/?op=LISTSTATUS");
    assert!(r.text().contains("\"service\":\"webhdfs\""), "{}", r.text());
    assert!(
        r.text().contains("\"path\":\"/webhdfs/v1/\""),
        "{}",
        r.text()
    );

    let r = p.get("/grafana/");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.headers
    );
    let html = r.text();
    assert!(html.contains("<h1>grafana</h1>"), "{html}");
    assert!(html.contains("<code>GET /</code>"), "{html}");
    assert!(
        html.contains("/grafana"),
        "X-Forwarded-Prefix not shown: {html}"
    );

    let r = p.get("/");
    assert!(r.text().contains("<h1>portal</h1>"), "{}", r.text());
    let r = p.get("/prometheus/api/v1/query?query=up");
    assert!(
        r.text().contains("\"path\":\"/prometheus/api/v1/query\""),
        "{}",
        r.text()
    );
}
