//! Labels and metadata of rendered objects (platform.md §2 "Labels").

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "troupe";
/// Label naming the actor of an object.
pub const ACTOR_LABEL: &str = "asya.sh/actor";

/// What a rendered object belongs to (`app.kubernetes.io/component`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A user actor.
    Actor,
    /// A crew actor (x-sink, ...).
    Crew,
    /// The gateway.
    Gateway,
    /// Mesh-wide objects (runtime ConfigMap, queue list).
    Mesh,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Actor => "actor",
            Component::Crew => "crew",
            Component::Gateway => "gateway",
            Component::Mesh => "mesh",
        }
    }
}

/// Labels of every child of `name`: the user's (minus reserved prefixes), then the
/// recommended `app.kubernetes.io/*` set and, for actors, `asya.sh/actor`.
pub fn child_labels(
    name: &str,
    component: Component,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = user
        .iter()
        .filter(|(k, _)| !k.starts_with("crossplane.io/") && !k.starts_with("app.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/component", component.as_str()),
        ("app.kubernetes.io/part-of", "asya"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ] {
        labels.insert(k.to_owned(), v.to_owned());
    }
    if matches!(component, Component::Actor | Component::Crew) {
        labels.insert(ACTOR_LABEL.to_owned(), name.to_owned());
    }
    labels
}

/// Pod selector of an actor's Deployment (immutable once applied, so minimal).
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_owned(), name.to_owned())])
}

/// `metadata` of a child.
pub fn meta(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn user_labels_propagate_except_reserved_prefixes() {
        let user = BTreeMap::from([
            ("asya.sh/flow".to_owned(), "research".to_owned()),
            ("team".to_owned(), "ml".to_owned()),
            ("crossplane.io/claim-name".to_owned(), "x".to_owned()),
            ("app.kubernetes.io/name".to_owned(), "spoofed".to_owned()),
        ]);
        let l = child_labels("summarize", Component::Actor, &user);
        assert_eq!(l["asya.sh/flow"], "research");
        assert_eq!(l["team"], "ml");
        assert!(!l.contains_key("crossplane.io/claim-name"));
        assert_eq!(l["app.kubernetes.io/name"], "summarize");
        assert_eq!(l["app.kubernetes.io/component"], "actor");
        assert_eq!(l["app.kubernetes.io/part-of"], "asya");
        assert_eq!(l["app.kubernetes.io/managed-by"], "troupe");
        assert_eq!(l[ACTOR_LABEL], "summarize");
    }

    #[test]
    fn the_gateway_is_no_actor() {
        let l = child_labels("troupe-gateway", Component::Gateway, &BTreeMap::new());
        assert!(!l.contains_key(ACTOR_LABEL));
        assert_eq!(l["app.kubernetes.io/component"], "gateway");
    }
}
