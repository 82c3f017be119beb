//! HTTP: routes, content negotiation, authentication extraction, error → OperationOutcome,
//! paging links. No SQL and no business rules here: handlers parse, authorise, call one service
//! function and render its result.

pub mod bundle;
pub mod format;
pub mod metadata;
pub mod middleware;
pub mod ops;
pub mod resident;
pub mod rest;

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
    pub metrics: Arc<Metrics>,
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
                        .get(rest::search_system),
                )
                .configure(resident::configure)
                .configure(rest::configure)
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// Run a database call off the async workers, except point reads on the embedded SQLite
/// database: those take microseconds, never wait on a network, and a thread-pool hop would
/// cost more than the read itself.
pub async fn run_db<T, F>(store: &Store, point_read: bool, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
{
    if point_read && store.is_embedded() {
        f(store)
    } else {
        let store = store.clone();
        web::block(move || f(&store)).await?
    }
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
