//! Authentication at the HTTP edge: the caller a request authenticates as, from its bearer
//! token (verified by [`Authenticator`]) or its verified client certificate (mutual TLS), with
//! what the request states of itself (a purpose of use, an emergency). 401 without either.

use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::auth::{
    Authenticator, BREAK_GLASS_HEADER, Caller, PURPOSE_HEADER, PURPOSES, Role, Scope,
};
use crate::error::ApiError;

/// The caller of this request.
pub fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
    let auth = req
        .app_data::<web::Data<Arc<Authenticator>>>()
        .ok_or_else(|| ApiError::internal("authenticator not configured"))?;
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        // A hospital system's verified client certificate (mutual TLS) stands for a token.
        if let Some(cert) = req.conn_data::<crate::tls::ClientCertificate>() {
            return with_request_headers(req, certificate_caller(cert));
        }
        return Err(ApiError::Unauthorized(
            "an Authorization: Bearer token (or a client certificate) is required".to_owned(),
        ));
    };
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".to_owned()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".to_owned())
        })?;
    with_request_headers(req, auth.verify(token.trim())?)
}

/// The caller with what this request states: an emergency, a purpose of use.
fn with_request_headers(req: &HttpRequest, mut caller: Caller) -> Result<Caller, ApiError> {
    if let Some(v) = req.headers().get(PURPOSE_HEADER) {
        let code = v.to_str().unwrap_or_default().trim();
        if !matches!(caller.role, Role::His | Role::Doctor) {
            return Err(ApiError::Forbidden(
                "a purpose of use (X-Purpose-Of-Use) is stated by hospital systems and doctors"
                    .to_owned(),
            ));
        }
        if !PURPOSES.iter().any(|(c, _)| *c == code) {
            return Err(ApiError::bad_request(format!(
                "X-Purpose-Of-Use must be one of {} (emergencies: X-Break-Glass-Reason)",
                PURPOSES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        caller.purpose = Some(code.to_owned());
    }
    if let Some(v) = req.headers().get(BREAK_GLASS_HEADER) {
        // UTF-8 as sent, or percent-encoded (header values are ASCII for many clients).
        let raw = std::str::from_utf8(v.as_bytes()).unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let reason = decoded.trim();
        if caller.role != Role::Doctor {
            return Err(ApiError::Forbidden(
                "emergency access (X-Break-Glass-Reason) is for doctors".to_owned(),
            ));
        }
        if reason.is_empty() || reason.len() > 500 {
            return Err(ApiError::bad_request(
                "X-Break-Glass-Reason must state the emergency (1 to 500 bytes)",
            ));
        }
        caller.break_glass = Some(reason.to_owned());
    }
    Ok(caller)
}

/// The caller a verified client certificate authenticates: the hospital system of the
/// institution its subject CN names.
fn certificate_caller(cert: &crate::tls::ClientCertificate) -> Caller {
    Caller {
        sub: format!("certificate:{}", cert.common_name),
        role: Role::His,
        org: Some(format!("Organization/{}", cert.common_name)),
        fhir_user: None,
        area: None,
        scopes: Scope::parse("system/*.cruds").into_iter().collect(),
        break_glass: None,
        purpose: None,
    }
}
