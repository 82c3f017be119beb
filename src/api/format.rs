//! Content negotiation: `_format`, `Accept`, `Content-Type` and `_pretty`; reading request
//! bodies as JSON or XML; rendering responses from stored JSON.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::fhir::outcome::Issue;
use crate::fhir::{validate, xml};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// The representation a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub pretty: bool,
}

fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Map a MIME type (or `_format` shorthand) to a format.
fn format_of(mime: &str) -> Option<Format> {
    let m = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match m.as_str() {
        "application/fhir+json"
        | "application/json"
        | "json"
        | "application/json+fhir"
        | "text/json" => Some(Format::Json),
        "application/fhir+xml"
        | "application/xml"
        | "text/xml"
        | "xml"
        | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// Decide the response format: `_format` wins over `Accept`; JSON when nothing says otherwise.
pub fn negotiate(req: &HttpRequest) -> Result<Negotiated, ApiError> {
    let pretty = query_param(req, "_pretty").is_some_and(|v| v == "true");
    if let Some(f) = query_param(req, "_format") {
        let format = format_of(&f).ok_or_else(|| {
            ApiError::NotAcceptable(format!("_format '{f}' is not supported (json, xml)"))
        })?;
        return Ok(Negotiated { format, pretty });
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut wildcard = accept.trim().is_empty();
    let mut best: Option<(f32, Format)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let mime = pieces.next().unwrap_or("").trim();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        if let Some(f) = format_of(mime) {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, f));
            }
        } else if mime == "*/*" || mime == "application/*" || mime == "text/*" {
            wildcard = true;
        }
    }
    match best {
        Some((_, format)) => Ok(Negotiated { format, pretty }),
        None if wildcard => Ok(Negotiated {
            format: Format::Json,
            pretty,
        }),
        // Browsers and tools that name only other types still get JSON rather than an error.
        None => Ok(Negotiated {
            format: Format::Json,
            pretty,
        }),
    }
}

/// Read a resource from a request body (JSON or XML by Content-Type) and validate it.
pub fn read_resource(
    req: &HttpRequest,
    body: &[u8],
    expected_type: Option<&str>,
) -> Result<Json, ApiError> {
    let format = body_format(req, body)?;
    parse_resource(format, body, expected_type)
}

/// The format of a request body: from `Content-Type`, else by its first character.
pub fn body_format(req: &HttpRequest, body: &[u8]) -> Result<Format, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = match ct {
        Some(c) => format_of(c).ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "Content-Type '{c}' is not supported; use application/fhir+json or application/fhir+xml"
            ))
        })?,
        None => sniff(body),
    };
    Ok(format)
}

/// Parse and validate a resource body of a known format (no request needed, so it can run on
/// the blocking pool).
pub fn parse_resource(
    format: Format,
    body: &[u8],
    expected_type: Option<&str>,
) -> Result<Json, ApiError> {
    match format {
        Format::Json => validate::resource(body, expected_type).map_err(ApiError::Invalid),
        Format::Xml => {
            let tree = xml::xml_to_json(body).map_err(|e| {
                ApiError::Invalid(vec![Issue::error("structure", e.message).at(e.path)])
            })?;
            validate::tree(&tree, expected_type).map_err(ApiError::Invalid)?;
            Ok(tree)
        }
    }
}

/// A body parsed into a tree without validating it as a resource (the caller validates parts).
pub fn parse_tree(format: Format, body: &[u8]) -> Result<Json, ApiError> {
    match format {
        Format::Json => Json::parse(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"))),
        Format::Xml => xml::xml_to_json(body)
            .map_err(|e| ApiError::Invalid(vec![Issue::error("structure", e.message).at(e.path)])),
    }
}

fn sniff(body: &[u8]) -> Format {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Format::Xml,
        _ => Format::Json,
    }
}

/// Body bytes of a JSON document in the negotiated representation.
pub fn encode(neg: Negotiated, doc: &Json) -> Result<Vec<u8>, ApiError> {
    match neg.format {
        Format::Json if neg.pretty => Ok(doc.to_pretty()),
        Format::Json => Ok(doc.to_bytes()),
        Format::Xml => xml::json_to_xml(doc, neg.pretty).map_err(|e| ApiError::internal(e.message)),
    }
}

/// Body bytes for a stored resource: the stored JSON itself unless XML or pretty is asked for.
pub fn encode_stored(neg: Negotiated, stored: String) -> Result<Vec<u8>, ApiError> {
    if neg.format == Format::Json && !neg.pretty {
        return Ok(stored.into_bytes());
    }
    let tree = Json::parse(stored.as_bytes()).map_err(ApiError::internal)?;
    encode(neg, &tree)
}

pub fn content_type(neg: Negotiated) -> &'static str {
    match neg.format {
        Format::Json => FHIR_JSON,
        Format::Xml => FHIR_XML,
    }
}

/// A response with the negotiated content type.
pub fn respond(neg: Negotiated, status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(neg)),
    ));
    b
}
