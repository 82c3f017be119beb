//! HTTP: routes, the request context, content negotiation, error → OperationOutcome, paging
//! links. No SQL and no business rules here: a handler takes its [`ctx::Ctx`] (built once per
//! request), parses, authorises, calls one service function and renders its result inside
//! [`ctx::Ctx::audited`]. One module per capability: [`record`] (the REST interactions),
//! [`bundle`], [`residents`], [`audit`]; beside them the CapabilityStatement ([`metadata`]) and
//! the operators' endpoints ([`ops`]).

pub mod audit;
pub mod auth;
pub mod bundle;
pub mod ctx;
pub mod error;
pub mod format;
pub mod metadata;
pub mod middleware;
pub mod ops;
pub mod record;
pub mod residents;
pub mod respond;
pub mod scheduling;
pub mod stats;
pub mod workflow;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    /// Where reads hand their audit events.
    pub audit: crate::services::audit::Sink,
    /// What the access door consults: the consent engine of this database, the running
    /// emergency access grants (break-glass) and the open referrals.
    pub doors: Arc<crate::services::access::Doors>,
    /// Where Subscriptions may send notifications.
    pub endpoints: Arc<crate::services::notify::Endpoints>,
    /// Tells the other server processes of changes (Redis, when configured).
    pub bus: Option<crate::services::bus::Bus>,
    pub metrics: Arc<Metrics>,
    /// Slots this process saw full moments ago (booking's admission, see
    /// `services::scheduling::admission`).
    pub full_slots: Arc<crate::services::scheduling::admission::FullSlots>,
}

impl AppState {
    /// Tell the other server processes of a change (nothing without Redis).
    pub fn publish(&self, change: crate::services::bus::Change) {
        if let Some(b) = &self.bus {
            b.publish(change);
        }
    }
}

/// Register every route of the application.
pub fn configure(cfg: &mut web::ServiceConfig, auth: Arc<Authenticator>, max_body: usize) {
    cfg.app_data(web::Data::new(auth))
        .app_data(web::PayloadConfig::new(max_body))
        .configure(ops::configure)
        .service(
            web::scope("/fhir")
                .configure(metadata::configure)
                .service(
                    web::resource(["", "/"])
                        .name("system")
                        .post(bundle::system_post)
                        .get(record::search::system),
                )
                .configure(residents::configure)
                .configure(scheduling::configure)
                .configure(workflow::configure)
                .configure(stats::configure)
                .configure(audit::configure)
                .configure(record::configure)
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                out.push((p.display().to_string(), text));
            }
        }
    }

    /// The layer rule, held by a test: a handler reaches stored resources only through a
    /// service (which applies the caller's access), never through the store's tables,
    /// queries or transactions. The `Store` handle itself is passed on to services.
    #[test]
    fn api_files_reach_records_only_through_services() {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api"),
            &mut files,
        );
        assert!(files.len() > 10, "the api sources were not found");
        let forbidden = [
            "store::record",
            "store::residents",
            "store::access",
            "store::audit",
            "store::schema",
            "store::Tx",
            "diesel",
            ".read(|",
            ".write(|",
        ];
        for (path, text) in &files {
            // A file's own tests may name what they look for.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for f in forbidden {
                assert!(!code.contains(f), "{path} uses {f}");
            }
        }
    }
}
