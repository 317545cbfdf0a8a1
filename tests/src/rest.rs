//! The REST/JSON API as a script calls it: a client driven only by the OpenAPI document (operation ids and
//! the parameters it declares), and `Twins`, which holds each REST answer against what the gRPC twin
//! answered for the same request and records which routes were checked for success and for an error.

use std::collections::BTreeMap;

use serde_json::Value;

/// A client generated at run time from the OpenAPI document: it knows no URL, only operation ids, and
/// fills path and query parameters as the document declares them.
pub struct OpenApiClient {
    base: String,
    pub document: Value,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer` when set.
    token: Option<String>,
}

impl OpenApiClient {
    pub async fn load(base: &str) -> OpenApiClient {
        let http = reqwest::Client::new();
        let document: Value = http
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .expect("the OpenAPI document is served")
            .json()
            .await
            .expect("the OpenAPI document is JSON");
        OpenApiClient {
            base: base.to_string(),
            document,
            http,
            token: None,
        }
    }

    /// The same client, calling with `token` (or with no credential).
    pub fn as_caller(&self, token: Option<&str>) -> OpenApiClient {
        OpenApiClient {
            base: self.base.clone(),
            document: self.document.clone(),
            http: self.http.clone(),
            token: token.map(str::to_string),
        }
    }

    /// Every operation id the document declares.
    pub fn operation_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for methods in self.paths().values() {
            for operation in methods.as_object().into_iter().flat_map(|m| m.values()) {
                if let Some(id) = operation["operationId"].as_str() {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    fn paths(&self) -> &serde_json::Map<String, Value> {
        self.document["paths"]
            .as_object()
            .expect("the OpenAPI document has paths")
    }

    /// The method, path template and declared parameters (name, place) of `operation_id`.
    pub fn operation(&self, operation_id: &str) -> (String, String, Vec<(String, String)>) {
        for (path, methods) in self.paths() {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                if operation["operationId"] == operation_id {
                    let parameters = operation["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap_or_default().to_string(),
                                p["in"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect();
                    return (method.clone(), path.clone(), parameters);
                }
            }
        }
        panic!("the OpenAPI document has no operation {operation_id}");
    }

    /// Calls `operation_id` with `params` (path and query, as declared) and `body`: (status, JSON answer,
    /// or the text as a JSON string when it is not JSON).
    pub async fn call(
        &self,
        operation_id: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self.call_text(operation_id, params, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn call_text(
        &self,
        operation_id: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, String) {
        let (method, mut path, declared) = self.operation(operation_id);
        let mut query = Vec::new();
        for (name, value) in params {
            // A name in both the path and the query (DownloadData's `name`) fills the path first.
            let placeholder = format!("{{{name}}}");
            let place = declared
                .iter()
                .filter(|(_, place)| place != "path" || path.contains(&placeholder))
                .find(|(declared, _)| {
                    declared == name
                        || declared
                            .strip_suffix(".{key}")
                            .is_some_and(|map| name.starts_with(&format!("{map}.")))
                })
                .map(|(_, place)| place.as_str());
            match place {
                Some("path") => path = path.replace(&placeholder, value),
                Some("query") => query.push((name.to_string(), value.to_string())),
                _ => panic!("{operation_id} declares no parameter {name}"),
            }
        }
        self.send(&method, &path, &query, body).await
    }

    /// A request by method and path, as a client that does not read the document sends it.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut request = match method.to_ascii_lowercase().as_str() {
            "get" => self.http.get(url),
            "post" => self.http.post(url),
            "put" => self.http.put(url),
            other => panic!("unexpected method {other}"),
        }
        .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("admin answers HTTP");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

/// A prost message as the REST API writes it (the same serde mapping).
pub fn grpc_json<T: serde::Serialize>(message: &T) -> Value {
    serde_json::to_value(message).expect("a wire message serializes")
}

/// The name an error answer of the REST API carries for a gRPC code.
fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        other => panic!("no Aloft error answers {other:?}"),
    }
}

/// The HTTP status the issue names for each code (written out here, not taken from admin's table).
fn http_status(code: tonic::Code) -> u16 {
    match code {
        tonic::Code::InvalidArgument => 400,
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition => 409,
        tonic::Code::ResourceExhausted => 429,
        tonic::Code::Unavailable => 503,
        other => panic!("no Aloft error answers {other:?}"),
    }
}

#[derive(Default, Clone, Copy)]
struct Checked {
    success: bool,
    error: bool,
}

/// REST answers held against their gRPC twins, and which routes were checked how.
pub struct Twins {
    pub rest: OpenApiClient,
    checked: BTreeMap<String, Checked>,
}

impl Twins {
    pub fn new(rest: OpenApiClient) -> Twins {
        Twins {
            rest,
            checked: BTreeMap::new(),
        }
    }

    /// REST `operation` answers as gRPC did: on success the same JSON, on error the same code and
    /// message with the code's HTTP status. Returns the REST answer.
    pub async fn same(
        &mut self,
        operation: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
        grpc: Result<Value, tonic::Status>,
    ) -> Value {
        self.same_after(operation, params, body, grpc, |v| v).await
    }

    /// `same`, comparing both answers after `normalize` (which hides what differs by nature between two
    /// calls: a generated id, a timestamp, the name each call chose).
    pub async fn same_after(
        &mut self,
        operation: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
        grpc: Result<Value, tonic::Status>,
        normalize: impl Fn(Value) -> Value,
    ) -> Value {
        let (status, answer) = self.rest.call(operation, params, body).await;
        self.hold(operation, status, answer.clone(), grpc, normalize);
        answer
    }

    /// REST `operation` called with no credential refuses as the gRPC twin refused an anonymous caller.
    pub async fn same_refusal_of_anonymous(
        &mut self,
        operation: &str,
        params: &[(&str, &str)],
        grpc: tonic::Status,
    ) {
        let (status, answer) = self.rest.as_caller(None).call(operation, params, None).await;
        self.hold(operation, status, answer, Err(grpc), |v| v);
    }

    /// A streamed route (`GetTaskLogs`, `DownloadData`): the body is the stream's bytes.
    pub async fn same_bytes(
        &mut self,
        operation: &str,
        params: &[(&str, &str)],
        grpc: Result<Vec<u8>, tonic::Status>,
    ) -> String {
        let (status, text) = self.rest.call_text(operation, params, None).await;
        match grpc {
            Ok(bytes) => {
                assert_eq!(status, 200, "{operation}: {text}");
                assert_eq!(
                    text.as_bytes(),
                    &bytes[..],
                    "{operation}: REST and gRPC stream the same bytes"
                );
                self.mark(operation, true);
            }
            Err(grpc) => {
                let answer = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
                self.hold(operation, status, answer, Err(grpc), |v| v);
            }
        }
        text
    }

    /// The server-sent events route: each event's data is the message the gRPC stream sent.
    pub async fn same_events(
        &mut self,
        operation: &str,
        params: &[(&str, &str)],
        grpc: Result<Vec<Value>, tonic::Status>,
    ) {
        let (status, text) = self.rest.call_text(operation, params, None).await;
        match grpc {
            Ok(events) => {
                assert_eq!(status, 200, "{operation}: {text}");
                let mut sent = Vec::new();
                let mut kind = "";
                for line in text.lines() {
                    if let Some(event) = line.strip_prefix("event: ") {
                        kind = if event == "history" { "history" } else { "other" };
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        if kind == "history" {
                            sent.push(serde_json::from_str::<Value>(data).expect("an event's data is JSON"));
                        }
                    }
                }
                assert_eq!(sent, events, "{operation}: REST sends the events gRPC streams");
                assert!(
                    text.trim_end().ends_with("event: end\ndata: {}"),
                    "{operation}: the stream says it ended: {text}"
                );
                self.mark(operation, true);
            }
            Err(grpc) => {
                let answer = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
                self.hold(operation, status, answer, Err(grpc), |v| v);
            }
        }
    }

    fn hold(
        &mut self,
        operation: &str,
        status: u16,
        answer: Value,
        grpc: Result<Value, tonic::Status>,
        normalize: impl Fn(Value) -> Value,
    ) {
        match grpc {
            Ok(expected) => {
                assert_eq!(status, 200, "{operation} over REST: {answer}");
                assert_eq!(
                    normalize(answer),
                    normalize(expected),
                    "{operation}: REST answers what gRPC answered"
                );
                self.mark(operation, true);
            }
            Err(grpc) => {
                assert_eq!(
                    status,
                    http_status(grpc.code()),
                    "{operation}: gRPC said {:?} {:?}, REST {answer}",
                    grpc.code(),
                    grpc.message()
                );
                assert_eq!(answer["code"], code_name(grpc.code()), "{operation}: {answer}");
                assert_eq!(
                    answer["message"],
                    grpc.message(),
                    "{operation}: REST refuses with gRPC's message"
                );
                self.mark(operation, false);
            }
        }
    }

    fn mark(&mut self, operation: &str, success: bool) {
        let checked = self.checked.entry(operation.to_string()).or_default();
        if success {
            checked.success = true;
        } else {
            checked.error = true;
        }
    }

    /// Every operation of the document was checked for success and for an error, except the errors
    /// `no_error` lists (operation, why it has none).
    pub fn assert_every_route_twinned(&self, no_error: &[(&str, &str)]) {
        let mut missing = Vec::new();
        for operation in self.rest.operation_ids() {
            let checked = self.checked.get(&operation).copied().unwrap_or_default();
            if !checked.success {
                missing.push(format!("{operation} (success)"));
            }
            if !checked.error && !no_error.iter().any(|(op, _)| *op == operation) {
                missing.push(format!("{operation} (error)"));
            }
        }
        assert!(
            missing.is_empty(),
            "routes never held against their gRPC twin: {}",
            missing.join(", ")
        );
    }
}

/// `value` with every string equal to `from` (or containing it) rewritten to say `to`: two calls that
/// differ only in the name each gave compare equal.
pub fn renamed(value: Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace(from, to)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| renamed(v, from, to)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace(from, to), renamed(v, from, to)))
                .collect(),
        ),
        other => other,
    }
}

/// `value` with the fields named in `keys` (at any depth) blanked.
pub fn masked(value: Value, keys: &[&str]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(|v| masked(v, keys)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if keys.contains(&k.as_str()) {
                        (k, Value::Null)
                    } else {
                        (k, masked(v, keys))
                    }
                })
                .collect(),
        ),
        other => other,
    }
}
