//! Exoscale's OpenAPI description (`exoscale/public-api.json`) as JSON-schema validators.
//!
//! exosim checks request bodies with them, and the conformance tests check both
//! directions, so the client and the simulator cannot drift into agreeing with each other
//! and not with Exoscale. OpenAPI 3.0 schemas are JSON Schema draft 4 in spirit (boolean
//! `exclusiveMinimum`), so they are compiled as draft 4 with formats checked.

use std::sync::OnceLock;

use serde_json::{Value, json};

pub const SPEC_JSON: &str = include_str!("../../exoscale/public-api.json");

pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    // Invariant: the file is embedded at build time and the tests parse it.
    SPEC.get_or_init(|| serde_json::from_str(SPEC_JSON).expect("embedded OpenAPI spec is JSON"))
}

/// A compiled schema for one body.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl Schema {
    /// Compiles `schema` (which may `$ref` into `#/components/schemas`).
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let root = json!({ "allOf": [schema], "components": spec()["components"] });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            // OpenAPI's `uuid` is no draft-4 format; without this, ids would go unchecked.
            .with_format("uuid", |s: &str| uuid::Uuid::parse_str(s).is_ok())
            .build(&root)
            .map_err(|e| e.to_string())?;
        Ok(Schema { validator })
    }

    /// `Ok` or every violation, each with where it is in the document.
    pub fn check(&self, instance: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(instance)
            .map(|e| {
                let at = e.instance_path.to_string();
                format!(
                    "{}: {e}",
                    if at.is_empty() {
                        "body".to_string()
                    } else {
                        at
                    }
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The operation object at `path` (a template such as `/instance/{id}`) and `method`.
pub fn operation(path: &str, method: &str) -> Option<&'static Value> {
    spec()["paths"].get(path)?.get(method.to_ascii_lowercase())
}

pub fn operation_id(path: &str, method: &str) -> Option<&'static str> {
    operation(path, method)?["operationId"].as_str()
}

/// The JSON schema of the request body, if the operation takes one.
pub fn request_schema(path: &str, method: &str) -> Option<&'static Value> {
    operation(path, method)?.pointer("/requestBody/content/application~1json/schema")
}

/// The JSON schema of the 200 answer.
pub fn response_schema(path: &str, method: &str) -> Option<&'static Value> {
    operation(path, method)?.pointer("/responses/200/content/application~1json/schema")
}

/// Checks an operation's parameters as the spec declares them: the path parameter's value
/// (a uuid where the spec says `format: uuid`), and every query parameter, which must be
/// declared for the operation and match its schema (enums, formats). Query values are
/// text; one that fails as a string is tried again as the JSON number or boolean it may
/// spell, for the few parameters of those types.
pub fn check_parameters(
    path: &'static str,
    method: &str,
    path_value: &str,
    query: &[(String, String)],
) -> Result<(), Vec<String>> {
    let Some(op) = operation(path, method) else {
        return Ok(());
    };
    let params = op["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let check = |param: &'static Value, value: &str| -> Option<String> {
        let schema = compiled(&param["schema"])?;
        let as_text = schema.check(&Value::String(value.to_string()));
        let fits = as_text.is_ok()
            || serde_json::from_str::<Value>(value)
                .is_ok_and(|v| !v.is_string() && schema.check(&v).is_ok());
        (!fits).then(|| {
            format!(
                "parameter {} ({value:?}): {}",
                param["name"].as_str().unwrap_or("?"),
                as_text.err().unwrap_or_default().join("; ")
            )
        })
    };
    let mut problems = Vec::new();
    if let Some(param) = params.iter().find(|p| p["in"] == "path") {
        problems.extend(check(param, path_value));
    }
    for (name, value) in query {
        match params
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == name.as_str())
        {
            Some(param) => problems.extend(check(param, value)),
            None => problems.push(format!(
                "query parameter {name:?} is not one the operation takes"
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `schema` (a part of the embedded spec) compiled, once for the process's life: every
/// schema lives in [`spec`], so its address names it. `None` when it does not compile.
pub fn compiled(schema: &'static Value) -> Option<&'static Schema> {
    type Cache = std::collections::BTreeMap<usize, Option<&'static Schema>>;
    static CACHE: OnceLock<std::sync::Mutex<Cache>> = OnceLock::new();
    let mut cache = baton::sync::lock(CACHE.get_or_init(Default::default));
    *cache
        .entry(std::ptr::from_ref(schema) as usize)
        .or_insert_with(|| {
            Schema::compile(schema)
                .ok()
                .map(|s| &*Box::leak(Box::new(s)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_against_referenced_component_schemas() {
        let op = Schema::compile(response_schema("/operation/{id}", "GET").unwrap()).unwrap();
        let good = json!({"id": "5e2b8d6c-6b9e-4a55-a3c4-8a5a5b8b6e01", "state": "pending",
                          "reference": {"id": "0d3a1c2e-1111-4222-8333-944455556666", "command": "create-instance"}});
        assert_eq!(op.check(&good), Ok(()));
        let bad = json!({"id": "not-a-uuid", "state": "maybe"});
        let errors = op.check(&bad).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");

        let create = Schema::compile(request_schema("/instance", "POST").unwrap()).unwrap();
        let errors = create
            .check(&json!({"name": "x", "disk-size": 5}))
            .unwrap_err();
        let text = errors.join("\n");
        assert!(
            text.contains("instance-type") && text.contains("template"),
            "{text}"
        );
        assert!(text.contains("/disk-size"), "{text}");
        assert_eq!(
            operation_id("/elastic-ip/{id}:attach", "put"),
            Some("attach-instance-to-elastic-ip")
        );
    }

    #[test]
    fn parameters_are_checked_against_the_spec() {
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let uuid = "5e2b8d6c-6b9e-4a55-a3c4-8a5a5b8b6e01";
        assert_eq!(check_parameters("/instance/{id}", "get", uuid, &[]), Ok(()));
        assert!(check_parameters("/instance/{id}", "get", "not-a-uuid", &[]).is_err());
        assert_eq!(
            check_parameters("/instance", "get", "", &q("manager-type", "instance-pool")),
            Ok(())
        );
        let bad = check_parameters("/instance", "get", "", &q("manager-type", "pool")).unwrap_err();
        assert!(bad[0].contains("manager-type"), "{bad:?}");
        assert!(check_parameters("/template", "get", "", &q("visibility", "secret")).is_err());
        assert!(check_parameters("/template", "get", "", &q("colour", "blue")).is_err());
        assert!(check_parameters("/instance", "get", "", &q("manager-id", "x")).is_err());
    }
}
