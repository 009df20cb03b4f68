//! The AsyncActor resource (`asya.sh/v1alpha1`, platform.md §2) as Rust types, with no I/O.
//!
//! One model, three uses: `troupe up` reads the actors of troupe.yaml through
//! [`AsyncActorSpec`], `troupe render --crd` prints [`crd`], and the renderer and operator
//! (issue 10) build Kubernetes objects from it. Like kube-core, this crate only describes:
//! the schema, the CEL rules the API server enforces, and the sidecar's environment names
//! ([`env`]).

mod actor;
pub mod env;
pub mod fields;
mod schema;

pub use actor::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// `apiVersion` of AsyncActor objects.
pub const API_VERSION: &str = "asya.sh/v1alpha1";
/// `kind` of AsyncActor objects.
pub const KIND: &str = "AsyncActor";

/// Why the CRD could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRD did not serialize to YAML (a bug in the types, not in user input).
    #[error("cannot write the AsyncActor CRD as YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
}

/// The AsyncActor CustomResourceDefinition, schema and CEL rules included.
pub fn crd() -> CustomResourceDefinition {
    AsyncActor::crd()
}

/// [`crd`] as one YAML document, as `troupe render --crd` prints it.
pub fn crd_yaml() -> Result<String, Error> {
    serde_yaml::to_string(&crd()).map_err(Error::Yaml)
}
