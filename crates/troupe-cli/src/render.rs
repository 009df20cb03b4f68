//! `troupe render`: Kubernetes manifests from the actor model. Only `--crd` exists so far;
//! rendering a mesh's Deployments, ScaledObjects and the rest is issue 10's renderer.

/// Prints the AsyncActor CRD (`--crd`); without it, says what is missing and exits 2.
pub fn run(crd: bool) -> u8 {
    if !crd {
        eprintln!(
            "troupe render: not implemented yet: only --crd (prints the AsyncActor CustomResourceDefinition); rendering a mesh's Deployments and ScaledObjects comes later"
        );
        return 2;
    }
    match troupe_resource::crd_yaml() {
        Ok(yaml) => {
            crate::stdout_line(yaml.trim_end());
            0
        }
        Err(e) => {
            eprintln!("troupe render: {e}");
            1
        }
    }
}
