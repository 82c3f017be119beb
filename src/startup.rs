//! Building and running the server from a [`Settings`] value, so that tests choose the port
//! and database.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::services::audit::log::{AuditLog, Durability};
use crate::store::{self, Store};

/// A bound, migrated, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    audit: crate::services::audit::Sink,
    store: Store,
}

/// The resident index's match thresholds the settings name.
pub fn thresholds(settings: &Settings) -> store::Thresholds {
    store::Thresholds {
        upper: settings.resident_match_upper,
        lower: settings.resident_match_lower,
    }
}

impl Application {
    /// Migrate the database, bind the listener and build the server.
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = settings.database()?;
        let applied = store::migrate(&db)?;
        if !applied.is_empty() {
            tracing::info!(
                count = applied.len(),
                backend = db.backend_name(),
                "database migrated"
            );
        }
        let store = Store::open(
            &db,
            settings.db_pool_size,
            settings.protection()?,
            thresholds(&settings),
        )?;
        store.start_maintenance();
        if let Some(n) = crate::services::stats::backfill(&store)
            .map_err(|e| anyhow::anyhow!("summing the statistics: {e}"))?
        {
            tracing::info!(residents = n, "statistics summed from the stored facts");
        }
        let consent = Arc::new(crate::services::access::consent::Engine::with_recheck(
            if settings.consent_default == crate::config::ConsentDefault::OptIn {
                crate::services::access::consent::Default::OptIn
            } else {
                crate::services::access::consent::Default::OptOut
            },
            store.context().clone(),
            std::time::Duration::from_millis(settings.consent_recheck_ms),
        ));
        let grants = Arc::new(crate::services::access::break_glass::Grants::new(
            settings.break_glass_minutes,
        ));
        let bus = match &settings.redis_url {
            Some(url) => Some(crate::services::bus::Bus::start(
                url,
                crate::services::bus::channel_of(&store)
                    .map_err(|e| anyhow::anyhow!("reading the database's identity: {e}"))?,
                consent.clone(),
                grants.clone(),
            )?),
            None => None,
        };
        // `os` on both backends unless `disk` is asked for (the project's decision: a read's
        // record is in the operating system before the answer, on disk within the sync
        // interval; `disk` costs every read a sync, see the README).
        let durability = match settings.audit_sync {
            crate::config::AuditSync::Disk => Durability::Disk,
            crate::config::AuditSync::Os => Durability::Os,
        };
        let audit = crate::services::audit::Sink::new(AuditLog::open(
            &settings.data_dir.join("audit-log"),
            store.clone(),
            durability,
        )?);
        crate::services::audit::start_sealer(
            store.clone(),
            std::time::Duration::from_millis(settings.audit_seal_interval_ms),
            settings.audit_retention_days,
        );
        crate::services::scheduling::start_expiry(store.clone(), std::time::Duration::from_secs(1));
        crate::services::workflow::start_sweep(
            store.clone(),
            std::time::Duration::from_millis(settings.referral_sweep_ms),
        );
        let auth = Arc::new(Authenticator::from_settings(&settings)?);
        if settings.auth_mode == crate::config::AuthMode::Dev {
            tracing::warn!(
                "DEVELOPMENT MODE: tokens are signed with a generated HS256 secret in the data \
                 directory; run `huimin token --help` to print one. Use auth_mode=jwt in production."
            );
        }
        let tls = crate::tls::acceptor(&settings)?;
        let listener = listen(&settings.listen)
            .with_context(|| format!("binding {} (HUIMIN_LISTEN)", settings.listen))?;
        let port = listener.local_addr()?.port();
        let workers = settings.workers;
        let endpoints = settings.endpoints();
        let max_body = settings.max_body_bytes;
        let doors = Arc::new(crate::services::access::Doors {
            consent,
            grants,
            referrals: Arc::new(crate::services::workflow::access::Referrals::new(
                settings.referral_access_days,
                store.context().clone(),
            )),
        });
        crate::services::notify::deliver::start(
            store.clone(),
            doors.clone(),
            audit.clone(),
            notify_base(&settings, port),
        );
        let state = web::Data::new(AppState {
            settings,
            store: store.clone(),
            audit: audit.clone(),
            doors,
            endpoints: Arc::new(endpoints),
            bus,
            metrics: Arc::new(Metrics::new()),
            full_slots: Arc::new(crate::services::scheduling::admission::FullSlots::new()),
        });
        tracing::info!(
            address = %listener.local_addr()?,
            backend = db.backend_name(),
            https = tls.is_some(),
            "huimin listening"
        );
        let server = HttpServer::new(move || {
            let auth = auth.clone();
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(api::middleware::observe))
                .configure(|cfg| api::configure(cfg, auth, max_body))
        })
        .on_connect(crate::tls::on_connect);
        let mut server = match tls {
            Some(acceptor) => server.listen_openssl(listener, acceptor)?,
            None => server.listen(listener)?,
        };
        if workers > 0 {
            server = server.workers(workers);
        }
        server = server.worker_max_blocking_threads(BLOCKING_THREADS);
        Ok(Application {
            port,
            server: server.run(),
            audit,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The application's store: closing it ([`Store::close`]) stops its background threads
    /// (an embedding that drops the application without stopping the server, as tests do).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Serve until stopped, then copy the audit log's last records into the database and stop
    /// the background threads.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.audit.drain();
        self.store.close();
        served
    }
}

/// The FHIR base URL notifications name: `base_url` when set, else this server's address.
fn notify_base(settings: &Settings, port: u16) -> String {
    match &settings.base_url {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if settings.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            let host = settings
                .listen
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h);
            format!("{scheme}://{host}:{port}/fhir")
        }
    }
}

/// Threads per worker for database work (`web::block`). Actix's default (512 divided among
/// the cores) lets a rush of requests start hundreds of threads, each faulting in a stack and
/// an allocator heap: in a release rush of 5,000 bookings the kernel spent 42 % of the
/// server's time zeroing their pages. The database takes a few connections' work at a time
/// (`db_pool_size`), and the writer groups whatever waits, so 32 per worker lose nothing.
const BLOCKING_THREADS: usize = 32;

/// Connections the kernel completes before the server accepts them (capped by
/// `net.core.somaxconn`): a release rush opens thousands at once.
const BACKLOG: i32 = 4096;

/// Listen on `address` (`host:port`) with [`BACKLOG`].
fn listen(address: &str) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        match socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(BACKLOG))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}
