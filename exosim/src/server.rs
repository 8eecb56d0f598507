//! The HTTP side: one handler that checks, counts, delays, faults, validates and routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Sim;
use super::faults::{self, Action, Fault, Latency};
use super::world::{Effect, World, now_ms};
use crate::openapi;
use baton::cloud::exoscale::signing;
use baton::sync::lock;

mod elastic_ips;
mod hooks;
mod instances;
mod ssh_keys;
mod templates;
use hooks::Hook;
use templates::Import;

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": text.into()}))).into_response()
}

/// A request the spec does not allow: 400 with every problem, and recorded among the
/// violations `/_sim/state` lists.
fn off_spec(sim: &Sim, what: String, problems: Vec<String>) -> Response {
    let text = format!("{what}: {}", problems.join("; "));
    lock(&sim.world).violations.push(text.clone());
    message(StatusCode::BAD_REQUEST, text)
}

/// A route of the spec: its path template, and the values of its parameters.
struct Route {
    template: &'static str,
    param: String,
}

/// Operations that answer without a signature.
const PUBLIC_OPERATIONS: [&str; 1] = ["list-zones"];

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `/instance/` names no instance: it is no route, not get-instance with an empty id.
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (template, param) = match segments.as_slice() {
        ["zone"] => ("/zone", ""),
        ["instance"] => ("/instance", ""),
        ["instance", id] => ("/instance/{id}", *id),
        ["operation", id] => ("/operation/{id}", *id),
        ["ssh-key"] => ("/ssh-key", ""),
        ["ssh-key", name] => ("/ssh-key/{name}", *name),
        ["elastic-ip"] => ("/elastic-ip", ""),
        ["elastic-ip", rest] => match rest.split_once(':') {
            Some((id, "attach")) => ("/elastic-ip/{id}:attach", id),
            Some((id, "detach")) => ("/elastic-ip/{id}:detach", id),
            Some(_) => return None,
            None => ("/elastic-ip/{id}", *rest),
        },
        ["template"] => ("/template", ""),
        ["template", id] => ("/template/{id}", *id),
        ["instance-type"] => ("/instance-type", ""),
        ["security-group"] => ("/security-group", ""),
        _ => return None,
    };
    Some(Route {
        template,
        param: param.to_string(),
    })
}

async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "request body over 1 MiB");
    };
    let path = parts.uri.path().to_string();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if let Some(rest) = path.strip_prefix("/_sim/") {
        return sim_api(&sim, &parts.method, rest, &bytes);
    }
    let Some(api_path) = path.strip_prefix("/v2") else {
        return message(
            StatusCode::NOT_FOUND,
            format!("no such path {path}: the API lives under /v2"),
        );
    };
    let Some(route) = route(api_path) else {
        return message(StatusCode::NOT_FOUND, format!("no such path {path}"));
    };
    let method = parts.method.as_str().to_ascii_lowercase();
    let Some(op_id) = openapi::operation_id(route.template, &method) else {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} {path} is not in the API", parts.method),
        );
    };
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The spec declares no security per operation; Exoscale serves the zone list to
    // anyone, and the official SDK sends it unsigned. A signature that is sent is checked.
    let public = PUBLIC_OPERATIONS.contains(&op_id) && auth.is_empty();
    if !public
        && let Err(why) = sim.check_signature(auth, parts.method.as_str(), &path, &query, &bytes)
    {
        *lock(&sim.world)
            .calls
            .entry("refused-unsigned".to_string())
            .or_insert(0) += 1;
        return message(StatusCode::FORBIDDEN, why);
    }
    if let Err(problems) = openapi::check_parameters(route.template, &method, &route.param, &query)
    {
        return off_spec(
            &sim,
            format!("{op_id}: parameters do not match the spec"),
            problems,
        );
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();

    let nth = {
        let mut w = lock(&sim.world);
        let n = w.calls.entry(op_id.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let delay: Duration = lock(&sim.latency)
        .iter()
        .filter(|l| faults::matches(&l.op, op_id))
        .map(|l| l.delay)
        .sum();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = lock(&sim.faults)
        .iter()
        .find(|f| faults::matches(&f.op, op_id) && f.nth == nth)
        .map(|f| f.action.clone());
    if let Some(Action::Status(code)) = fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = message(
            status,
            format!("exosim: injected fault on call {nth} of {op_id}"),
        );
        if code == 429 || code == 503 {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        return resp;
    }

    let req_schema = openapi::request_schema(route.template, &method).and_then(openapi::compiled);
    let resp_schema = openapi::response_schema(route.template, &method).and_then(openapi::compiled);
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    format!("request body is not JSON: {e}"),
                );
            }
        }
    };
    if let Some(schema) = req_schema
        && let Err(errors) = schema.check(&body)
    {
        return off_spec(
            &sim,
            format!("{op_id}: request body does not match the spec"),
            errors,
        );
    }

    let fail = fault == Some(Action::Fail);
    let (status, value, hooks) = sim.dispatch(op_id, &route, &query, &body, fail, &host);
    sim.persist();
    for task in hooks {
        match task {
            Task::Hook(hook) => tokio::spawn(hook.run(sim.clone())),
            Task::Import(import) => tokio::spawn(import.run(sim.clone())),
        };
    }
    if status == StatusCode::OK
        && let Some(schema) = resp_schema
        && let Err(errors) = schema.check(&value)
    {
        let text = format!(
            "{op_id}: answer does not match the spec: {}",
            errors.join("; ")
        );
        lock(&sim.world).violations.push(text);
    }
    if fault == Some(Action::Drop) {
        // The work is done; the client never learns of it.
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("exosim: injected connection drop"))
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from_stream(broken))
            .unwrap_or_else(|_| {
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot build the dropped answer",
                )
            });
    }
    (status, axum::Json(value)).into_response()
}

/// `/_sim/…`: the simulator's own controls, outside the API and unsigned.
fn sim_api(sim: &Sim, method: &Method, path: &str, body: &[u8]) -> Response {
    match (method.as_str(), path) {
        ("GET", "state") => {
            let mut w = lock(&sim.world);
            w.settle(now_ms());
            let mut v = w.dump();
            v["faults"] = json!(*lock(&sim.faults));
            axum::Json(v).into_response()
        }
        ("POST", "config") => {
            let v: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return message(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}"));
                }
            };
            let strings = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let parsed_faults: Result<Vec<Fault>, String> =
                strings("faults").iter().map(|s| s.parse()).collect();
            let parsed_latency: Result<Vec<Latency>, String> =
                strings("latency").iter().map(|s| s.parse()).collect();
            let (new_faults, new_latency) = match (parsed_faults, parsed_latency) {
                (Ok(f), Ok(l)) => (f, l),
                (Err(e), _) | (_, Err(e)) => return message(StatusCode::BAD_REQUEST, e),
            };
            if v["clear"].as_bool() == Some(true) {
                lock(&sim.faults).clear();
                lock(&sim.latency).clear();
                // Counting starts again, so `OP:1:…` means the next call.
                lock(&sim.world).calls.clear();
            }
            lock(&sim.faults).extend(new_faults);
            lock(&sim.latency).extend(new_latency);
            if let Some(d) = v["operation-delay"].as_str() {
                match humantime::parse_duration(d) {
                    Ok(d) => *lock(&sim.operation_delay) = d,
                    Err(e) => {
                        return message(StatusCode::BAD_REQUEST, format!("operation-delay: {e}"));
                    }
                }
            }
            message(StatusCode::OK, "ok")
        }
        _ => message(
            StatusCode::NOT_FOUND,
            "exosim controls: GET /_sim/state, POST /_sim/config",
        ),
    }
}

/// An operation as `dispatch` hands it to the file of its kind.
struct Call<'a> {
    /// The spec's operation id.
    op: &'a str,
    /// The path's id, if the operation has one.
    id: &'a str,
    /// A query parameter's value.
    query: &'a dyn Fn(&str) -> Option<String>,
    body: &'a Value,
    /// The fault injected into this operation.
    fail: bool,
}

/// Work an answer leaves to do once the world lock is released.
enum Task {
    Hook(Box<Hook>),
    Import(Import),
}

type Answer = (StatusCode, Value, Vec<Task>);

fn ok(v: Value) -> Answer {
    (StatusCode::OK, v, Vec::new())
}

fn not_found(what: String) -> Answer {
    (
        StatusCode::NOT_FOUND,
        json!({"message": format!("{what} not found")}),
        Vec::new(),
    )
}

/// The items whose field equals each filter that was given (`None` filters nothing).
fn filtered(items: &[Value], filters: &[(&str, Option<String>)]) -> Vec<Value> {
    items
        .iter()
        .filter(|item| {
            filters.iter().all(|(field, want)| {
                want.as_deref()
                    .is_none_or(|w| item[*field].as_str() == Some(w))
            })
        })
        .cloned()
        .collect()
}

fn error(status: StatusCode, text: String) -> Answer {
    (status, json!({"message": text}), Vec::new())
}

/// What a kind's file answers for an operation `dispatch` did not route to it: never, as
/// both name the same operations.
fn unreachable_op(op_id: &str) -> Answer {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("exosim routed {op_id} to the wrong kind"),
    )
}

/// How far ahead a signature may expire: an hour, six times what Exoscale's SDKs use.
const MAX_SIGNATURE_AHEAD_SECS: u64 = 3600;

impl Sim {
    fn check_signature(
        &self,
        header: &str,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<(), String> {
        let parsed = signing::parse(header)
            .ok_or("missing or malformed Authorization header (want EXO2-HMAC-SHA256)")?;
        if parsed.credential != self.options.key {
            return Err("invalid API key".into());
        }
        let now = now_ms() / 1000;
        if parsed.expires < now {
            return Err("request signature expired".into());
        }
        // Exoscale's own signers sign for 10 minutes; a signature good for years is a
        // replayable credential, refused as the real API would.
        if parsed.expires > now + MAX_SIGNATURE_AHEAD_SECS {
            return Err(format!(
                "request signature expires too far ahead (more than {MAX_SIGNATURE_AHEAD_SECS} s)"
            ));
        }
        // Signed in the order the header lists the names (not necessarily sorted). A
        // parameter with a value must be listed, or its value went unsigned; one with
        // only empty values may be left out, as the official SDK's signer does.
        let names: Vec<&str> = parsed
            .signed_query_args
            .iter()
            .map(String::as_str)
            .collect();
        if let Some((k, _)) = query
            .iter()
            .find(|(k, v)| !v.is_empty() && !names.contains(&k.as_str()))
        {
            return Err(format!(
                "query parameter {k:?} is not listed in signed-query-args"
            ));
        }
        let values = signing::signed_values(&names, query);
        let valid = signing::verify(
            &self.options.secret,
            method,
            path,
            &values,
            body,
            parsed.expires,
            &parsed.signature,
        );
        if !valid {
            return Err("invalid request signature".into());
        }
        Ok(())
    }

    pub(super) fn persist(&self) {
        if let Some(path) = &self.options.state_file {
            let text = {
                let w = lock(&self.world);
                serde_json::to_vec_pretty(&*w)
            };
            // The world holds every instance's user-data, and with it their private keys:
            // owner only, as baton keeps it.
            if let Ok(text) = text
                && let Err(e) = baton::fsutil::write_atomic(path, &text, baton::fsutil::PRIVATE)
            {
                tracing::error!("exosim: cannot save state: {e}");
            }
        }
    }

    fn operation(
        &self,
        w: &mut World,
        command: &str,
        reference: &str,
        link: Option<String>,
        effect: Effect,
        fail: bool,
    ) -> String {
        let ready = now_ms() + lock(&self.operation_delay).as_millis() as u64;
        let id = w.new_operation(
            command,
            reference,
            link,
            ready,
            if fail { Effect::None } else { effect },
        );
        if fail && let Some(op) = w.operations.get_mut(&id) {
            op.fail_with = Some(("fault".into(), "exosim: injected operation failure".into()));
        }
        id
    }

    fn dispatch(
        &self,
        op_id: &str,
        route: &Route,
        query: &[(String, String)],
        body: &Value,
        fail: bool,
        host: &str,
    ) -> Answer {
        let mut w = lock(&self.world);
        w.settle(now_ms());
        let id = route.param.as_str();
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let call = Call {
            op: op_id,
            id,
            query: &q,
            body,
            fail,
        };
        match op_id {
            // The address this answer was asked at: a client that follows the endpoint
            // (as SDKs do for a zone) must reach exosim again.
            "list-zones" => ok(
                json!({"zones": [{"name": w.zone, "api-endpoint": format!("http://{host}/v2"), "sos-endpoint": format!("http://{host}")}]}),
            ),
            "list-templates" => ok(json!({"templates": filtered(
                &w.catalog.templates,
                &[("visibility", q("visibility")), ("family", q("family"))],
            )})),
            "list-instance-types" => ok(json!({"instance-types": w.catalog.instance_types})),
            // The world's groups are the account's own ("private"); it has no public ones.
            "list-security-groups" => ok(json!({"security-groups":
                if q("visibility").as_deref() == Some("public") {
                    Vec::new()
                } else {
                    w.catalog.security_groups.clone()
                }
            })),
            "get-operation" => match w.operation_json(id) {
                Some(v) => ok(v),
                None => not_found(format!("operation {id}")),
            },
            "list-instances" | "get-instance" | "create-instance" | "delete-instance" => {
                self.instances(&mut w, &call)
            }
            "list-ssh-keys" | "get-ssh-key" | "register-ssh-key" | "delete-ssh-key" => {
                self.ssh_keys(&mut w, &call)
            }
            "list-elastic-ips"
            | "get-elastic-ip"
            | "attach-instance-to-elastic-ip"
            | "detach-instance-from-elastic-ip" => self.elastic_ips(&mut w, &call),
            "get-template" | "register-template" | "delete-template" => {
                self.templates(&mut w, &call)
            }
            other => error(
                StatusCode::NOT_IMPLEMENTED,
                format!("exosim does not simulate {other}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route exosim serves has its schemas compiled, so no check is silently skipped.
    #[test]
    fn every_served_route_has_compiled_schemas() {
        let routes = [
            ("/zone", "get"),
            ("/instance", "get"),
            ("/instance", "post"),
            ("/instance/{id}", "get"),
            ("/instance/{id}", "delete"),
            ("/operation/{id}", "get"),
            ("/ssh-key", "get"),
            ("/ssh-key", "post"),
            ("/ssh-key/{name}", "get"),
            ("/ssh-key/{name}", "delete"),
            ("/elastic-ip", "get"),
            ("/elastic-ip/{id}", "get"),
            ("/elastic-ip/{id}:attach", "put"),
            ("/elastic-ip/{id}:detach", "put"),
            ("/template", "get"),
            ("/template", "post"),
            ("/template/{id}", "get"),
            ("/template/{id}", "delete"),
            ("/instance-type", "get"),
            ("/security-group", "get"),
        ];
        for (template, method) in routes {
            assert!(
                openapi::operation_id(template, method).is_some(),
                "{method} {template} is not in the spec"
            );
            let req = openapi::request_schema(template, method).and_then(openapi::compiled);
            let resp = openapi::response_schema(template, method).and_then(openapi::compiled);
            assert_eq!(
                req.is_some(),
                openapi::request_schema(template, method).is_some(),
                "{method} {template} request"
            );
            assert!(
                resp.is_some(),
                "{method} {template} has no compiled answer schema"
            );
        }
        assert_eq!(
            route("/elastic-ip/abc:attach").map(|r| (r.template, r.param)),
            Some(("/elastic-ip/{id}:attach", "abc".to_string()))
        );
        assert!(route("/elastic-ip/abc:explode").is_none());
    }
}
