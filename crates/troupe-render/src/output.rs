//! Rendered objects, their order and their files (one YAML file per object plus a
//! `kustomization.yaml`, or one multi-document stream).

use serde::Serialize;

use crate::RenderError;

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `kind`.
    pub kind: &'static str,
    /// `metadata.name`.
    pub name: String,
    /// The whole object as JSON (typed on the way in).
    pub value: serde_json::Value,
}

impl Object {
    /// Serializes a typed object.
    pub fn new(
        kind: &'static str,
        name: &str,
        object: &impl Serialize,
    ) -> Result<Object, RenderError> {
        let value = serde_json::to_value(object).map_err(|source| RenderError::Serialize {
            kind,
            name: name.to_owned(),
            source,
        })?;
        Ok(Object {
            kind,
            name: name.to_owned(),
            value,
        })
    }

    /// File name: `<kind>-<name>.yaml`, lower case (names are DNS labels, so unique).
    pub fn file_name(&self) -> String {
        format!("{}-{}.yaml", self.kind.to_ascii_lowercase(), self.name)
    }
}

/// Apply order of kinds: what others refer to comes first.
const KIND_ORDER: [&str; 7] = [
    "ServiceAccount",
    "ConfigMap",
    "TriggerAuthentication",
    "Service",
    "Deployment",
    "ScaledObject",
    "Secret",
];

fn rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Every object of a mesh, sorted by kind (apply order) then name, so the output does not
/// depend on the order of the mesh file beyond its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The objects, in order.
    pub objects: Vec<Object>,
}

impl Rendered {
    /// Sorts `objects` into the rendered order.
    pub fn new(mut objects: Vec<Object>) -> Rendered {
        objects.sort_by(|a, b| (rank(a.kind), &a.name).cmp(&(rank(b.kind), &b.name)));
        Rendered { objects }
    }

    /// Files to write: one per object, then `kustomization.yaml` listing them in order.
    pub fn files(&self) -> Result<Vec<(String, String)>, RenderError> {
        let mut files = Vec::with_capacity(self.objects.len() + 1);
        for o in &self.objects {
            let file = o.file_name();
            let text = to_yaml(&file, &o.value)?;
            files.push((file, text));
        }
        let kustomization = serde_json::json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": self.objects.iter().map(Object::file_name).collect::<Vec<_>>(),
        });
        let file = "kustomization.yaml".to_owned();
        let text = to_yaml(&file, &kustomization)?;
        files.push((file, text));
        Ok(files)
    }

    /// All objects as one multi-document YAML stream.
    pub fn stream(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&to_yaml(&o.file_name(), &o.value)?);
        }
        Ok(out)
    }
}

fn to_yaml(file: &str, value: &serde_json::Value) -> Result<String, RenderError> {
    serde_yaml::to_string(value).map_err(|source| RenderError::Yaml {
        file: file.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn obj(kind: &'static str, name: &str) -> Object {
        Object {
            kind,
            name: name.to_owned(),
            value: serde_json::json!({"kind": kind, "metadata": {"name": name}}),
        }
    }

    #[test]
    fn objects_sort_by_apply_order_then_name() {
        let r = Rendered::new(vec![
            obj("ScaledObject", "a"),
            obj("Deployment", "b"),
            obj("Deployment", "a"),
            obj("ServiceAccount", "z"),
        ]);
        let order: Vec<_> = r.objects.iter().map(Object::file_name).collect();
        assert_eq!(
            order,
            [
                "serviceaccount-z.yaml",
                "deployment-a.yaml",
                "deployment-b.yaml",
                "scaledobject-a.yaml"
            ]
        );
    }

    #[test]
    fn the_kustomization_lists_every_file_in_order() {
        let r = Rendered::new(vec![obj("Deployment", "b"), obj("ServiceAccount", "b")]);
        let files = r.files().unwrap();
        let (name, k) = files.last().unwrap();
        assert_eq!(name, "kustomization.yaml");
        let k: serde_json::Value = serde_yaml::from_str(k).unwrap();
        assert_eq!(
            k["resources"],
            serde_json::json!(["serviceaccount-b.yaml", "deployment-b.yaml"])
        );
        assert_eq!(r.stream().unwrap().matches("---\n").count(), 2);
    }
}
