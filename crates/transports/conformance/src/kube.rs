//! A real Kubernetes API server for tests (kube-apiserver over etcd, no kubelet or
//! controllers: tests see API objects only). [`kubeconfig`] gives the path of a
//! kubeconfig whose user may do anything:
//!
//! - `TROUPE_TEST_KUBECONFIG` set (scripts/test.sh starts one server for the whole run):
//!   that file;
//! - otherwise `scripts/services/kube.sh` starts one for this test process, once, on
//!   first use (its first run builds the servers from their Go modules, which takes
//!   minutes; later runs reuse the cached binaries). A watchdog stops it when the
//!   process exits.
//!
//! When no server can run here (no Go toolchain, say) [`kubeconfig`] says why and
//! returns `None`, so the test passes; with `TROUPE_REQUIRE_KUBE=1` (CI) that panics.
//!
//! Tests share the server: each should work in a namespace of its own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::server::{Server, Service, Watchdog};

/// `scripts/services/kube.sh` (prints the kubeconfig's path).
pub const KUBE: Service = Service {
    script: "kube",
    what: "kube-apiserver",
    require_var: Some(REQUIRE_VAR),
    installed: Some((
        "command -v go && command -v openssl && command -v curl",
        "install Go (https://go.dev/dl), openssl and curl",
    )),
    watchdog: Watchdog::OwnerArg,
};

/// The variable naming a kubeconfig of a server already running.
pub const KUBECONFIG_VAR: &str = "TROUPE_TEST_KUBECONFIG";

/// The variable that, set to `1`, makes a missing API server a failure.
pub const REQUIRE_VAR: &str = "TROUPE_REQUIRE_KUBE";

/// Where the kubeconfig comes from; the server (if started here) lives as long as it.
enum KubeApi {
    Given(PathBuf),
    Started(Server),
}

impl KubeApi {
    fn kubeconfig(&self) -> &Path {
        match self {
            KubeApi::Given(path) => path,
            KubeApi::Started(server) => Path::new(&server.url),
        }
    }
}

/// The kubeconfig of this test process's API server, started on first use; `None`
/// (after saying why) when none can run here and `TROUPE_REQUIRE_KUBE` is not `1`.
pub fn kubeconfig() -> Option<&'static Path> {
    static API: OnceLock<Option<KubeApi>> = OnceLock::new();
    API.get_or_init(find_or_start)
        .as_ref()
        .map(KubeApi::kubeconfig)
}

fn find_or_start() -> Option<KubeApi> {
    if let Some(path) = std::env::var_os(KUBECONFIG_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{KUBECONFIG_VAR}={} is not a file; unset it to let the tests start their own API server",
            path.display()
        );
        return Some(KubeApi::Given(path));
    }
    Server::start(&KUBE, &[]).map(KubeApi::Started)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubeconfig names a server that answers its client certificate: /readyz is
    /// `ok` (curl, which the script needs anyway, with the cert files beside it).
    #[test]
    fn kubeconfig_reaches_a_ready_api_server() {
        let Some(path) = kubeconfig() else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap_or_else(|| panic!("no server in {}", path.display()))
            .to_owned();
        assert!(server.starts_with("https://127.0.0.1:"), "{server}");
        assert!(text.contains("client-certificate-data: "), "{text}");
        let dir = path.parent().unwrap();
        if !dir.join("admin.key").is_file() {
            // Not one of kube.sh's: its cert files are elsewhere, so the shape of its
            // kubeconfig is what is checked.
            return;
        }
        let out = std::process::Command::new("curl")
            .arg("-fsS")
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join("admin.crt"))
            .arg("--key")
            .arg(dir.join("admin.key"))
            .arg(format!("{server}/readyz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{out:?}");
    }
}
