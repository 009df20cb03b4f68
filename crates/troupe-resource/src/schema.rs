//! Hand-made schema parts, where k8s-openapi's full schema would make the CRD too large to
//! apply client-side (a whole `Container` or `Volume` is tens of kilobytes) and the API server
//! validates the rendered Deployment anyway.

use schemars::{json_schema, Schema, SchemaGenerator};

/// A list of objects kept as written (`volumes`): each needs a `name`.
pub fn preserved_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

/// A list of user containers (`initContainers`, `sidecars`): kept as written, but each needs a
/// `name` outside the `asya-` prefix the rendered containers use. The bounds keep the CEL
/// rule's estimated cost within the API server's budget.
pub fn user_containers(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 63}},
            "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-validations": [{
                "rule": "!self.name.startsWith('asya-')",
                "message": "container names starting with asya- are reserved for the containers Troupe renders (asya-runtime, asya-sidecar, asya-state-proxy-*): rename this container"
            }]
        }
    })
}
