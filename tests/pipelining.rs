//! Pipelined HTTP/1.1 requests (RFC 9112 §9.3.2): a client may send its
//! next requests before the answers; Pylon answers each in order on the same
//! connection, never reads a body as a request, and still closes after an
//! early answer to a request whose body it did not read.

mod common;

use std::io::ErrorKind;
use std::thread;
use std::time::Duration;

use common::{Client, Pylon, Response, Upstream};

fn one_route() -> (Upstream, Pylon) {
    let up = Upstream::start("rest-server");
    let p = Pylon::start("", &[("REST_SERVER_URI", up.uri())]);
    (up, p)
}

/// Reads one answer and checks it is the upstream's answer to `target`.
fn expect_upstream_answer(client: &mut Client, target: &str) -> Response {
    let r = client
        .read_final_response(false)
        .unwrap_or_else(|e| panic!("no answer for {target}: {e}"));
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    assert!(
        r.text().contains(&format!("\"target\":\"{target}\"")),
        "expected the answer to {target}, got {:?}",
        r.text()
    );
    r
}

fn targets(up: &Upstream) -> Vec<String> {
    up.seen().into_iter().map(|s| s.target).collect()
}

/// The connection is still open and usable: one more request on it.
fn still_serves(client: &mut Client) {
    client
        .send(b"GET /rest-server/later HTTP/1.1\r\nHost: pylon.test\r\n\r\n")
        .unwrap();
    expect_upstream_answer(client, "/later");
}

#[test]
fn several_gets_in_one_write_are_answered_in_order() {
    let (up, p) = one_route();
    let mut client = Client::connect(p.addr());
    client
        .send(
            b"GET /rest-server/one HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/two HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              HEAD /rest-server/three HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/four HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .unwrap();
    expect_upstream_answer(&mut client, "/one");
    expect_upstream_answer(&mut client, "/two");
    let head = client.read_final_response(true).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    expect_upstream_answer(&mut client, "/four");
    still_serves(&mut client);
    assert_eq!(targets(&up), ["/one", "/two", "/three", "/four", "/later"]);
}

#[test]
fn a_get_pipelined_after_a_post_with_a_body_is_answered_after_it() {
    let (up, p) = one_route();
    let mut client = Client::connect(p.addr());
    // The body looks like a request head: it must stay a body.
    let body = b"GET /rest-server/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut raw = format!(
        "POST /rest-server/post HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw.extend_from_slice(
        b"POST /rest-server/chunked HTTP/1.1\r\nHost: pylon.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n\
          GET /rest-server/next HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
    );
    client.send(&raw).unwrap();
    expect_upstream_answer(&mut client, "/post");
    expect_upstream_answer(&mut client, "/chunked");
    expect_upstream_answer(&mut client, "/next");
    still_serves(&mut client);
    let seen = up.seen();
    let got: Vec<(&str, u64)> = seen
        .iter()
        .map(|s| (s.target.as_str(), s.body_len))
        .collect();
    assert_eq!(
        got,
        [
            ("/post", body.len() as u64),
            ("/chunked", 5),
            ("/next", 0),
            ("/later", 0)
        ]
    );
}

#[test]
fn requests_pipelined_after_local_answers_are_answered() {
    let (up, p) = one_route();
    let mut client = Client::connect(p.addr());
    client
        .send(
            b"GET /healthz HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/after-healthz HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /no-such-route HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/after-404 HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .unwrap();
    let r = client.read_final_response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "Pylon ready."));
    expect_upstream_answer(&mut client, "/after-healthz");
    let r = client.read_final_response(false).unwrap();
    assert_eq!(r.status, 404);
    expect_upstream_answer(&mut client, "/after-404");
    still_serves(&mut client);
    assert_eq!(targets(&up), ["/after-healthz", "/after-404", "/later"]);
}

#[test]
fn a_pipeline_cut_in_the_middle_of_a_request_head_waits_for_the_rest() {
    let (up, p) = one_route();
    let mut client = Client::connect(p.addr());
    client
        .send(
            b"GET /rest-server/first HTTP/1.1\r\nHost: pylon.test\r\n\r\n\
              GET /rest-server/second HTTP/1.1\r\nHo",
        )
        .unwrap();
    expect_upstream_answer(&mut client, "/first");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(targets(&up), ["/first"], "half a head was forwarded");
    client.send(b"st: pylon.test\r\n\r\n").unwrap();
    expect_upstream_answer(&mut client, "/second");
    still_serves(&mut client);

    // Cut for good: the client goes away with half a head sent, and nothing
    // of it is forwarded.
    client
        .send(b"GET /rest-server/third HTTP/1.1\r\nHost: pylon.test\r\n\r\nGET /rest-server/fourth HT")
        .unwrap();
    expect_upstream_answer(&mut client, "/third");
    drop(client);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(targets(&up), ["/first", "/second", "/later", "/third"]);
}

#[test]
fn an_early_answer_to_a_request_with_an_unread_body_still_closes() {
    let (up, p) = one_route();
    let mut client = Client::connect(p.addr());
    client
        .send(
            b"POST /healthz HTTP/1.1\r\nHost: pylon.test\r\nContent-Length: 47\r\n\r\n\
              GET /rest-server/smuggled HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /rest-server/next HTTP/1.1\r\nHost: pylon.test\r\n\r\n",
        )
        .unwrap();
    let r = client.read_final_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")));
    match client.read_final_response(false) {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    assert!(targets(&up).is_empty(), "{:?}", targets(&up));
}
