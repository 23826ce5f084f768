//! The route table: a normalised path → the route that serves it and the
//! part of the path the upstream should see. Longest prefix wins, and a
//! prefix only matches on a segment boundary (`/kubernetes` does not catch
//! `/kubernetes-dashboard/…`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// (prefix, route index), longest prefix first.
    entries: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub route: usize,
    /// Byte offset in the path where the part after the prefix starts; that
    /// part is empty (bare prefix) or starts with `/`.
    pub rest_start: usize,
}

impl Router {
    /// Prefixes are as [`crate::config::normalise_prefix`] returns them; the
    /// index of each is the route number reported by [`Router::find`].
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut entries: Vec<(String, usize)> = prefixes
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i))
            .collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Router { entries }
    }

    pub fn find(&self, path: &str) -> Option<Match> {
        self.entries.iter().find_map(|(prefix, route)| {
            if prefix == "/" {
                return Some(Match {
                    route: *route,
                    rest_start: 0,
                });
            }
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(Match {
                route: *route,
                rest_start: prefix.len(),
            })
        })
    }
}

/// The path the upstream receives: the upstream's base path followed by
/// what came after the public prefix, plus the original query verbatim.
pub fn upstream_target(base_path: &str, rest: &str, query: Option<&[u8]>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(base_path.len() + rest.len() + 1 + query.map_or(0, |q| q.len() + 1));
    out.extend_from_slice(base_path.as_bytes());
    out.extend_from_slice(rest.as_bytes());
    if out.is_empty() {
        out.push(b'/');
    }
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Router {
        Router::new([
            "/rest-server",
            "/kubernetes",
            "/kubernetes-dashboard",
            "/webhdfs",
            "/webhdfs/api",
            "/webhdfs/webhdfs",
            "/",
        ])
    }

    fn route_and_rest(r: &Router, p: &'static str) -> (usize, &'static str) {
        let m = r.find(p).unwrap();
        (m.route, &p[m.rest_start..])
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let r = table();
        assert_eq!(
            route_and_rest(&r, "/rest-server/api/v1/jobs"),
            (0, "/api/v1/jobs")
        );
        assert_eq!(
            route_and_rest(&r, "/kubernetes/api/v1/nodes"),
            (1, "/api/v1/nodes")
        );
        assert_eq!(route_and_rest(&r, "/kubernetes-dashboard/"), (2, "/"));
        assert_eq!(route_and_rest(&r, "/kubernetes-dashboard"), (2, ""));
        assert_eq!(
            route_and_rest(&r, "/kubernetesx/api"),
            (6, "/kubernetesx/api")
        );
        assert_eq!(route_and_rest(&r, "/webhdfs/api/v1/"), (4, "/v1/"));
        assert_eq!(
            route_and_rest(&r, "/webhdfs/webhdfs/v1/tmp"),
            (5, "/v1/tmp")
        );
        assert_eq!(route_and_rest(&r, "/webhdfs/apix"), (3, "/apix"));
        assert_eq!(route_and_rest(&r, "/"), (6, "/"));
    }

    #[test]
    fn no_root_route_means_no_match() {
        let r = Router::new(["/grafana"]);
        assert_eq!(r.find("/other"), None);
        assert_eq!(r.find("/grafanas"), None);
    }

    #[test]
    fn upstream_targets() {
        assert_eq!(
            upstream_target("", "/api/v1/jobs", Some(b"x=1")),
            b"/api/v1/jobs?x=1"
        );
        assert_eq!(
            upstream_target("/prometheus", "/api/v1/query", Some(b"query=up")),
            b"/prometheus/api/v1/query?query=up"
        );
        assert_eq!(upstream_target("", "", None), b"/");
        assert_eq!(upstream_target("/base", "", Some(b"")), b"/base?");
    }
}
