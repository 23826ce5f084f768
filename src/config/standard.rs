//! The standard routes: names, prefixes and variables of the original.

/// One of the services the original Pylon knew by name. Their prefixes and
/// environment variables are part of Pylon's interface, so they are code.
pub struct StandardRoute {
    pub name: &'static str,
    pub prefix: &'static str,
    pub env: &'static str,
    /// Appended to the environment variable's value (the service root) to
    /// form this route's upstream: the WebHDFS API lives under `/webhdfs`.
    pub env_path: &'static str,
    pub add_slash: bool,
    /// The WebHDFS REST API: its 307s to datanodes are sent back through `/a/`.
    pub webhdfs_api: bool,
}

pub const STANDARD_ROUTES: &[StandardRoute] = &[
    StandardRoute {
        name: "rest-server",
        prefix: "/rest-server",
        env: "REST_SERVER_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: false,
    },
    StandardRoute {
        name: "kubernetes",
        prefix: "/kubernetes",
        env: "K8S_API_SERVER_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: false,
    },
    StandardRoute {
        name: "webhdfs-api",
        prefix: "/webhdfs/api",
        env: "WEBHDFS_URI",
        env_path: "/webhdfs",
        webhdfs_api: true,
        add_slash: false,
    },
    StandardRoute {
        // pyhdfs and HdfsCLI hard-code `/webhdfs/v1` under the namenode URL.
        name: "webhdfs-alias",
        prefix: "/webhdfs/webhdfs",
        env: "WEBHDFS_URI",
        env_path: "/webhdfs",
        webhdfs_api: true,
        add_slash: false,
    },
    StandardRoute {
        name: "webhdfs",
        prefix: "/webhdfs",
        env: "WEBHDFS_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: true,
    },
    StandardRoute {
        name: "prometheus",
        prefix: "/prometheus",
        env: "PROMETHEUS_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: false,
    },
    StandardRoute {
        name: "kubernetes-dashboard",
        prefix: "/kubernetes-dashboard",
        env: "K8S_DASHBOARD_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: true,
    },
    StandardRoute {
        name: "yarn",
        prefix: "/yarn",
        env: "YARN_WEB_PORTAL_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: true,
    },
    StandardRoute {
        name: "grafana",
        prefix: "/grafana",
        env: "GRAFANA_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: true,
    },
    StandardRoute {
        name: "portal",
        prefix: "/",
        env: "PAI_WEB_PORTAL_URI",
        env_path: "",
        webhdfs_api: false,
        add_slash: false,
    },
];
