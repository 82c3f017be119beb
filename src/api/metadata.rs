//! `GET /fhir/metadata` (the CapabilityStatement, generated from what the server does) and
//! `GET /fhir/.well-known/smart-configuration`. Both are public.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::ctx::base_url;
use super::format;
use crate::error::ApiError;
use crate::fhir::bundle::{obj, s};
use crate::fhir::json::Json;
use crate::fhir::search;
use crate::fhir::search_params::REGISTRY;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metadata").name("metadata").get(metadata))
        .service(
            web::resource("/.well-known/smart-configuration")
                .name("smart-configuration")
                .get(smart_configuration),
        );
}

fn arr(items: impl IntoIterator<Item = Json>) -> Json {
    Json::Array(items.into_iter().collect())
}

/// When this version of the capability statement was defined.
const RELEASE_DATE: &str = "2026-11-23";

const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

fn search_params(t: &str) -> Json {
    let params = REGISTRY
        .for_type(t)
        .into_iter()
        .filter(|p| search::is_supported(p))
        .map(|p| {
            let mut m = vec![
                ("name", s(&p.code)),
                ("definition", s(&p.url)),
                ("type", s(p.kind.as_str())),
            ];
            if let Some(e) = &p.expression {
                m.push(("documentation", s(format!("FHIRPath: {e}"))));
            }
            obj(m)
        });
    arr(params)
}

/// The operations on a resource type: (type, name, definition).
const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "Patient",
        "everything",
        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    ),
    (
        "Patient",
        "summary",
        "http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
    ),
    (
        "Patient",
        "match",
        "http://hl7.org/fhir/OperationDefinition/Patient-match",
    ),
    (
        "Patient",
        "ihe-pix",
        "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
    ),
    (
        "Patient",
        "merge",
        "urn:huimin:OperationDefinition:Patient-merge",
    ),
    (
        "Patient",
        "unmerge",
        "urn:huimin:OperationDefinition:Patient-unmerge",
    ),
    (
        "Patient",
        "resident-reviews",
        "urn:huimin:OperationDefinition:Patient-resident-reviews",
    ),
    (
        "Appointment",
        "find",
        "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-find",
    ),
    (
        "Appointment",
        "hold",
        "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-hold",
    ),
    (
        "Appointment",
        "book",
        "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-book",
    ),
];

fn operations(t: &str) -> Option<Json> {
    let ops: Vec<Json> = OPERATIONS
        .iter()
        .filter(|(ty, ..)| *ty == t)
        .map(|(_, name, definition)| obj(vec![("name", s(*name)), ("definition", s(*definition))]))
        .collect();
    (!ops.is_empty()).then(|| arr(ops))
}

/// The CapabilityStatement for this server.
pub fn capability_statement(base: &str, backend: &str) -> Json {
    let resources = huimin_model::RESOURCE_TYPES.iter().map(|t| {
        let mut members = vec![
            ("type", s(*t)),
            (
                "profile",
                s(format!("http://hl7.org/fhir/StructureDefinition/{t}")),
            ),
            (
                "interaction",
                arr(TYPE_INTERACTIONS.iter().map(|i| obj(vec![("code", s(*i))]))),
            ),
            ("versioning", s("versioned-update")),
            ("readHistory", Json::Bool(true)),
            ("updateCreate", Json::Bool(true)),
            ("conditionalCreate", Json::Bool(true)),
            ("conditionalRead", s("not-supported")),
            ("conditionalUpdate", Json::Bool(true)),
            ("conditionalDelete", s("single")),
            ("searchParam", search_params(t)),
        ];
        if let Some(ops) = operations(t) {
            members.push(("operation", ops));
        }
        obj(members)
    });
    let security = obj(vec![
        ("cors", Json::Bool(false)),
        (
            "service",
            arr([obj(vec![(
                "coding",
                arr([obj(vec![
                    (
                        "system",
                        s("http://terminology.hl7.org/CodeSystem/restful-security-service"),
                    ),
                    ("code", s("SMART-on-FHIR")),
                ])]),
            )])]),
        ),
        (
            "description",
            s(
                "Bearer JWT required on every request except metadata and smart-configuration. \
               SMART v2 scopes (patient|user|system)/(Type|*).cruds are enforced per interaction \
               and resource type; claims role, org and fhirUser identify the caller.",
            ),
        ),
    ]);
    obj(vec![
        ("resourceType", s("CapabilityStatement")),
        ("status", s("active")),
        ("date", s(RELEASE_DATE)),
        ("publisher", s("Huimin")),
        ("kind", s("instance")),
        (
            "software",
            obj(vec![
                ("name", s("Huimin")),
                ("version", s(env!("CARGO_PKG_VERSION"))),
            ]),
        ),
        (
            "implementation",
            obj(vec![
                (
                    "description",
                    s(format!(
                        "Huimin regional health information exchange ({backend})"
                    )),
                ),
                ("url", s(base)),
            ]),
        ),
        ("fhirVersion", s("4.3.0")),
        (
            "format",
            arr([
                "json",
                "xml",
                "application/fhir+json",
                "application/fhir+xml",
            ]
            .map(s)),
        ),
        ("patchFormat", arr([s("application/json-patch+json")])),
        (
            "rest",
            arr([obj(vec![
                ("mode", s("server")),
                ("security", security),
                ("resource", Json::Array(resources.collect())),
                (
                    "interaction",
                    arr([obj(vec![("code", s("history-system"))])]),
                ),
            ])]),
        ),
    ])
}

async fn metadata(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let neg = format::negotiate(&req)?;
    let cs = capability_statement(&base_url(&req, &state), state.store.backend_name());
    Ok(format::respond(neg, StatusCode::OK).body(format::encode(neg, &cs)?))
}

async fn smart_configuration(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let cfg = obj(vec![
        ("issuer", s(state.settings.issuer())),
        ("fhir_base", s(base_url(&req, &state))),
        (
            "token_endpoint_auth_methods_supported",
            arr([s("private_key_jwt")]),
        ),
        ("grant_types_supported", arr([s("client_credentials")])),
        (
            "scopes_supported",
            arr([
                "system/*.cruds",
                "user/*.cruds",
                "patient/*.rs",
                "openid",
                "fhirUser",
            ]
            .map(s)),
        ),
        (
            "capabilities",
            arr(["permission-v2", "client-confidential-asymmetric"].map(s)),
        ),
        ("code_challenge_methods_supported", arr([s("S256")])),
    ]);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(cfg.to_bytes())
}
