//! The OpenAPI 3.0 document of the REST API, generated from the route table and the protos' descriptors
//! (never written by hand, so it cannot drift from what the server answers).

use serde_json::{json, Map, Value};

use super::routes::{Answer, ROUTES};
use super::schema::Schemas;

pub fn document(schemas: &Schemas) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in ROUTES {
        let path_params: Vec<&str> = route.path_fields.iter().map(|(param, _)| *param).collect();
        let bound_fields: Vec<&str> = route
            .path_fields
            .iter()
            .map(|(_, field)| field.split('.').next().unwrap_or(field))
            .collect();
        let mut parameters: Vec<Value> = path_params
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if route.method == "GET" {
            for (name, schema, repeated) in schemas.query_fields(route.request) {
                let field = name.split('.').next().unwrap_or(&name).to_string();
                if bound_fields.contains(&field.as_str()) {
                    continue;
                }
                let mut parameter = json!({"name": name, "in": "query", "required": false, "schema": schema});
                if repeated {
                    parameter["explode"] = json!(true);
                }
                parameters.push(parameter);
            }
        }
        let response_ref = json!({"$ref": format!("#/components/schemas/{}", route.response)});
        let success = match route.answer {
            Answer::Json => {
                json!({"description": route.response, "content": {"application/json": {"schema": response_ref}}})
            }
            Answer::EventStream => json!({
                "description": format!("Server-sent events; each `data` is a {} as JSON", route.response),
                "content": {"text/event-stream": {"schema": {"type": "string"}}}
            }),
            Answer::Bytes => json!({
                "description": "The bytes, streamed",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
            }),
        };
        let mut operation = json!({
            "operationId": operation_id(route),
            "summary": route.summary,
            "tags": [tag(route.path)],
            "parameters": parameters,
            "responses": {
                "200": success,
                "default": {
                    "description": "An error: its HTTP status comes from the code (INVALID_ARGUMENT 400, NOT_FOUND 404, ALREADY_EXISTS and FAILED_PRECONDITION 409, UNAUTHENTICATED 401, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            }
        });
        if route.rpc == "GetAuthInfo" {
            // How to log in is answered without credentials.
            operation["security"] = json!([]);
        }
        if route.method != "GET" {
            operation["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", route.request)}}}
            });
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    let mut components = schemas.component_schemas();
    components.insert(
        "Error".to_string(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": ["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL"]},
                "message": {"type": "string"}
            }
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Aloft admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The AdminService gRPC API as JSON: the same messages (proto3 JSON mapping with the protos' field names; 64-bit integers as strings, enums by name), the same validation and the same error messages."
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An OIDC access token of the configured issuer, or an API key (aloft apikey create); not needed when authentication is off"
            }}
        }
    })
}

/// Unique per route: the RPC's name, with `Version` for the routes that name one.
fn operation_id(route: &super::routes::Route) -> String {
    if route.path.ends_with("/versions/{version}") {
        format!("{}Version", route.rpc)
    } else {
        route.rpc.to_string()
    }
}

/// The noun a route is about, to group operations.
fn tag(path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|s| !s.starts_with('{'))
        .collect();
    let noun = match segments.as_slice() {
        ["projects", "domains", noun, ..] => noun,
        [noun, ..] => noun,
        [] => "api",
    };
    noun.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_every_reference_resolves() {
        let schemas = Schemas::load().unwrap();
        let document = document(&schemas);
        let text = serde_json::to_string(&document).unwrap();
        let components = document["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(components.contains_key(name), "dangling $ref {name}");
        }
        let mut ids = std::collections::BTreeSet::new();
        for (_, methods) in document["paths"].as_object().unwrap() {
            for (_, operation) in methods.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_string();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
            }
        }
        assert_eq!(
            tag("/api/v1/projects/{project}/domains/{domain}/executions/{name}"),
            "executions"
        );
    }
}
