//! The renderer (platform.md §3): Kubernetes objects from AsyncActor specs, with no I/O.
//!
//! [`render`] takes a [`Mesh`] (actors, transport, namespace, options) and returns every
//! object in a fixed order: per actor a ServiceAccount, a TriggerAuthentication (when the
//! transport's KEDA scaler needs credentials), a ScaledObject and a Deployment; the crew
//! actors (`x-sink`, `x-sump`, `x-pause`, `x-resume`); the gateway; the runtime ConfigMap
//! and the queues the operator provisions. `troupe render` writes them for GitOps and the
//! operator applies the same objects, so both read one function.
//!
//! Core kinds are k8s-openapi types; KEDA's kinds are the typed structs of [`keda`].

mod actor;
pub mod keda;
mod labels;
mod model;
mod output;
mod platform;
mod scaled;

pub use labels::{child_labels, Component, MANAGED_BY};
pub use model::*;
pub use output::{Object, Rendered};
pub use platform::queues;

/// Why a mesh could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An object did not turn into JSON (a bug in the types, not in user input).
    #[error("cannot serialize {kind} '{name}': {source}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An object did not turn into YAML (a bug in the types, not in user input).
    #[error("cannot write {file} as YAML: {source}")]
    Yaml {
        /// File being written.
        file: String,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// An actor's name collides with a crew actor or the gateway.
    #[error("actor '{0}' uses a reserved name (x-sink, x-sump, x-pause, x-resume, troupe-gateway): rename it")]
    ReservedName(String),
    /// An actor's `compositionRef` names another transport than the cluster's.
    #[error("actor '{actor}' asks for transport '{wanted}' (compositionRef asyncactor-{wanted}) but the mesh renders for '{cluster}': remove compositionRef or render with --transport for {wanted}")]
    TransportMismatch {
        /// The actor.
        actor: String,
        /// Transport its `compositionRef` names.
        wanted: String,
        /// The cluster transport.
        cluster: &'static str,
    },
    /// The namespace is not a DNS label.
    #[error("namespace '{0}' is not a Kubernetes namespace name: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit")]
    Namespace(String),
    /// Two actors share a name.
    #[error("actor '{0}' is defined twice: actor names must be unique in a namespace")]
    Duplicate(String),
}

/// Renders every object of the mesh, in the order [`Rendered`] documents.
pub fn render(mesh: &Mesh) -> Result<Rendered, RenderError> {
    if !is_dns_label(&mesh.namespace) {
        return Err(RenderError::Namespace(mesh.namespace.clone()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut objects = Vec::new();
    for a in &mesh.actors {
        let name = a.spec.actor.as_str();
        if model::CREW.contains(&name) || name == platform::GATEWAY {
            return Err(RenderError::ReservedName(name.to_owned()));
        }
        let wanted = a.spec.composition_ref.as_ref().and_then(|c| c.transport());
        if let Some(wanted) = wanted.filter(|w| *w != mesh.transport.kind()) {
            return Err(RenderError::TransportMismatch {
                actor: name.to_owned(),
                wanted: wanted.to_owned(),
                cluster: mesh.transport.kind(),
            });
        }
        if !seen.insert(name) {
            return Err(RenderError::Duplicate(name.to_owned()));
        }
        objects.extend(render_actor(mesh, a)?);
    }
    if mesh.options.crew {
        for crew in model::CREW {
            objects.extend(platform::render_crew(mesh, crew)?);
        }
    }
    if mesh.options.gateway {
        objects.extend(platform::render_gateway(mesh)?);
    }
    if let Some(py) = &mesh.options.runtime_py {
        objects.push(platform::runtime_config_map(mesh, py)?);
    }
    objects.push(platform::queue_config_map(mesh)?);
    Ok(Rendered::new(objects))
}

/// The objects of one user actor (ServiceAccount, TriggerAuthentication, ScaledObject,
/// Deployment, its own runtime ConfigMap): what the operator applies per AsyncActor.
pub fn render_actor(mesh: &Mesh, actor: &ActorInput) -> Result<Vec<Object>, RenderError> {
    actor::render_actor(mesh, actor)
}

/// Inputs the unit tests of several modules build.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use crate::{Mesh, Options, Transport};
    use troupe_resource::AsyncActorSpec;

    /// A mesh in namespace `ns` with default options and no actors.
    pub fn mesh(transport: Transport) -> Mesh {
        Mesh {
            namespace: "ns".into(),
            transport,
            actors: vec![],
            options: Options::default(),
        }
    }

    /// An actor spec from inline YAML.
    pub fn spec(yaml: &str) -> AsyncActorSpec {
        serde_yaml::from_str(yaml).unwrap()
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_must_be_dns_labels() {
        for ok in ["default", "prod-1", "a"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "Prod", "a_b", "-a", "a-", "a.b", long.as_str()] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
