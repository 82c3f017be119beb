//! Settings: defaults, then an optional TOML file, then `HUIMIN_*` environment variables.
//!
//! The file is `huimin.toml` in the working directory when present, or the path in
//! `HUIMIN_CONFIG`. Keys are the lower-case variable names without the prefix
//! (`HUIMIN_LISTEN` ↔ `listen`). An unknown key, an unknown `HUIMIN_*` variable or a bad value
//! stops start-up with a message that names it; nothing falls back silently.
//! The README lists every setting in one table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (created when missing).
    Sqlite(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parse `sqlite://path`, `sqlite:path` or `postgres://…`. A PostgreSQL URL without a
    /// `connect_timeout` gets one of 5 s: without it libpq waits for the operating system's TCP
    /// timeout (minutes) when the host does not answer, and a writer thread reconnecting would
    /// be held that long.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if url.contains("connect_timeout=") {
                return Ok(DatabaseUrl::Postgres(url.to_owned()));
            }
            let joint = if url.contains('?') { '&' } else { '?' };
            Ok(DatabaseUrl::Postgres(format!(
                "{url}{joint}connect_timeout=5"
            )))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                Err("sqlite URL has no file path".to_owned())
            } else {
                Ok(DatabaseUrl::Sqlite(path.to_owned()))
            }
        } else {
            Err("expected sqlite://<path> or postgres://<user>@<host>/<db>".to_owned())
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// HS256 with a secret generated in the data directory; `huimin token` signs tokens.
    Dev,
    /// RS256/ES256 with the public keys of `auth_keys_file`.
    Jwt,
}

/// When a read's audit record must be durable (see `audit_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSync {
    /// Written to the operating system before the answer (the default; empty means it too).
    #[serde(alias = "")]
    Os,
    /// Synced to disk before the answer.
    Disk,
}

/// The regional default for residents who gave no Consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentDefault {
    /// Shared unless a Consent denies.
    OptOut,
    /// Shared with other institutions only when a Consent permits.
    OptIn,
}

/// Whether HTTPS clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Clients without one need a token.
    Optional,
    Required,
}

/// The least audit retention the law allows (6 months).
pub const MIN_RETENTION_DAYS: u32 = 184;

/// Environment variables with the `HUIMIN_` prefix that are not settings.
const NOT_SETTINGS: &[&str] = &["CONFIG"];
/// Prefix of variables reserved for the test suites.
const TEST_PREFIX: &str = "TEST_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    pub listen: String,
    /// Directory for the SQLite database and development keys.
    pub data_dir: PathBuf,
    /// `sqlite://path` or `postgres://…`; default: SQLite at `<data_dir>/huimin.db`. A secret
    /// (it may hold a password): never printed, never serialized.
    #[serde(default, skip_serializing)]
    pub database_url: Option<SecretString>,
    /// Connections in the database pool.
    pub db_pool_size: u32,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Public base URL of the FHIR endpoint (e.g. `https://hie.example.cn/fhir`); default: from
    /// the request's Host header.
    pub base_url: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `huimin=debug,info`.
    pub log_level: String,
    /// `dev` (HS256 secret generated in `data_dir`) or `jwt` (RS256/ES256 public keys).
    pub auth_mode: AuthMode,
    /// Expected `iss` claim (default `huimin-dev` in dev mode; required in jwt mode).
    pub auth_issuer: Option<String>,
    /// Expected `aud` claim (default `huimin`).
    pub auth_audience: String,
    /// PEM public key or JWKS file with the keys that sign tokens (jwt mode).
    pub auth_keys_file: Option<PathBuf>,
    /// Page size when `_count` is not given.
    pub page_size_default: u32,
    /// Largest `_count` honoured.
    pub page_size_max: u32,
    /// Worker threads of the HTTP server (0 = one per core).
    pub workers: usize,
    /// Resident index: a probabilistic match scoring at least this links automatically.
    pub resident_match_upper: f64,
    /// Resident index: a best match scoring at least this (and below the upper threshold) is
    /// kept for review.
    pub resident_match_lower: f64,
    /// Days audit records are kept (at least 184, 网络安全法 Art. 21).
    pub audit_retention_days: u32,
    /// How often the sealer chains new audit records, in milliseconds.
    pub audit_seal_interval_ms: u64,
    /// How a read's audit record is made durable before the answer leaves, in the node's
    /// audit log: `os` (written to the operating system: survives a crash of the server
    /// process, as a SQLite commit does; the default on both backends), or `disk` (synced to
    /// disk before the answer, as a PostgreSQL commit is). Empty means `os`.
    pub audit_sync: AuditSync,
    /// The regional default for residents who gave no Consent: `opt-out` (shared unless a
    /// Consent denies) or `opt-in` (shared with other institutions only when a Consent permits).
    pub consent_default: ConsentDefault,
    /// Store ID, health card and phone numbers encrypted (SM4) with a blind index (HMAC-SM3).
    pub protect_identifiers: bool,
    /// The keyring of those keys (JSON); default `<data_dir>/keyring.json`, generated there in
    /// dev mode.
    pub keyring_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS (with `tls_key_file`); plain HTTP without.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that sign hospital systems' client certificates (mutual TLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// `optional` (clients without a certificate need a token) or `required`.
    pub tls_client_auth: ClientAuth,
    /// Minutes a doctor's emergency access (break-glass) to the residents it touched lasts.
    pub break_glass_minutes: u32,
    /// Redis (`redis://host:port/`) through which server processes of one database tell each
    /// other of Consent, merge and emergency-grant changes at once; none by default.
    pub redis_url: Option<String>,
    /// How often a process asks the database whether a Consent changed, in milliseconds.
    pub consent_recheck_ms: u64,
    /// Whether the `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` headers of a request
    /// say where it was sent (behind a reverse proxy that sets them); off by default, so that
    /// a client cannot choose the host of the links and locations the server answers with.
    pub trust_forwarded: bool,
    /// How long a request body may take to arrive once its headers did, in milliseconds (a
    /// slow sender is answered 408 instead of holding a connection and a worker's buffer).
    pub body_timeout_ms: u64,
    /// Seconds a `$hold` keeps a place for its Appointment before the place frees itself.
    pub booking_hold_seconds: u32,
    /// Active future bookings (held or booked) a resident may have at once.
    pub booking_max_active: u32,
    /// No-shows within `booking_no_show_window_days` that pause a resident's booking ...
    pub booking_no_show_limit: u32,
    pub booking_no_show_window_days: u32,
    /// ... for this many days after the last of them.
    pub booking_no_show_pause_days: u32,
    /// Days a completed referral or consultation keeps the receiving institution's access to
    /// the resident's record open (for purpose COC).
    pub referral_access_days: u32,
    /// How often (ms) the Tasks not accepted by their deadline are looked for and flagged
    /// overdue.
    pub referral_sweep_ms: u64,
    /// Hosts a Subscription may notify over plain `http`, comma-separated (every other
    /// endpoint is `https`); in development mode loopback is allowed as well.
    pub subscription_http_hosts: String,
    /// Counts of the statistics below this (and above zero) are suppressed (at least 5).
    pub stats_min_cell: u32,
    /// The prevalences the management indicators estimate their patients with, versioned:
    /// `VERSION;hypertension=PERCENT;diabetes=PERCENT` (of adults).
    pub stats_prevalence: String,
    /// Published counts are rounded to a multiple of this (1: not rounded).
    pub stats_rounding: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            // Two connections per core: more only queue inside the database (measured on
            // PostgreSQL: 16 connections on 2 cores doubled the p99 of searches).
            db_pool_size: std::thread::available_parallelism()
                .map_or(8, |n| n.get() * 2)
                .clamp(4, 64) as u32,
            max_body_bytes: 16 * 1024 * 1024,
            base_url: None,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            auth_mode: AuthMode::Dev,
            auth_issuer: None,
            auth_audience: "huimin".to_owned(),
            auth_keys_file: None,
            page_size_default: 50,
            page_size_max: 1000,
            workers: 0,
            resident_match_upper: 14.0,
            resident_match_lower: 8.0,
            audit_retention_days: 184,
            audit_seal_interval_ms: 1000,
            audit_sync: AuditSync::Os,
            consent_default: ConsentDefault::OptOut,
            protect_identifiers: true,
            keyring_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_client_auth: ClientAuth::Optional,
            break_glass_minutes: 60,
            redis_url: None,
            consent_recheck_ms: 1000,
            trust_forwarded: false,
            body_timeout_ms: 30_000,
            booking_hold_seconds: 300,
            booking_max_active: 5,
            booking_no_show_limit: 3,
            booking_no_show_window_days: 90,
            booking_no_show_pause_days: 90,
            referral_access_days: 30,
            referral_sweep_ms: 60_000,
            subscription_http_hosts: String::new(),
            stats_min_cell: 10,
            stats_prevalence: "2026-1;hypertension=18.8;diabetes=8.2".to_owned(),
            stats_rounding: 5,
        }
    }
}

impl Settings {
    /// Where Subscriptions may send notifications: `https` anywhere, plain `http` to the
    /// configured hosts (and loopback in development mode).
    pub fn endpoints(&self) -> crate::services::notify::Endpoints {
        let mut http_hosts: Vec<String> = self
            .subscription_http_hosts
            .split(',')
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        if self.auth_mode == AuthMode::Dev {
            http_hosts.extend(["127.0.0.1", "localhost", "::1"].map(str::to_owned));
        }
        crate::services::notify::Endpoints { http_hosts }
    }
}

/// The development issuer used for tokens printed by `huimin token`.
pub const DEV_ISSUER: &str = "huimin-dev";

impl Settings {
    /// Load from the default file locations and the process environment.
    pub fn load() -> anyhow::Result<Settings> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let file = std::env::var_os("HUIMIN_CONFIG").map(PathBuf::from);
        Settings::load_from(file.as_deref(), &vars)
    }

    /// Load from an explicit file (or `huimin.toml` when present) and a list of variables.
    pub fn load_from(file: Option<&Path>, vars: &[(String, String)]) -> anyhow::Result<Settings> {
        for (k, _) in vars {
            if let Some(rest) = k.strip_prefix("HUIMIN_")
                && !NOT_SETTINGS.contains(&rest)
                && !rest.starts_with(TEST_PREFIX)
                && !KNOWN.contains(&rest.to_ascii_lowercase().as_str())
            {
                bail!("unknown setting {k}: see the settings table in README.md");
            }
        }
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(f) => {
                if !f.exists() {
                    bail!(
                        "configuration file {} (HUIMIN_CONFIG) does not exist",
                        f.display()
                    );
                }
                fig = fig.merge(Toml::file_exact(f));
            }
            None if Path::new("huimin.toml").exists() => {
                fig = fig.merge(Toml::file_exact("huimin.toml"));
            }
            None => {}
        }
        // Variables are merged one by one, typed as figment's Env provider types them.
        let explicit: Vec<(String, String)> = vars
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("HUIMIN_")?.to_ascii_lowercase();
                KNOWN.contains(&rest.as_str()).then_some((rest, v.clone()))
            })
            .collect();
        for (k, v) in explicit {
            let value: figment::value::Value = parse_env_value(&v);
            fig = fig.merge((k, value));
        }
        let settings: Settings = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid setting: {}", describe(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen.parse::<SocketAddr>().with_context(|| {
            format!(
                "invalid setting listen (HUIMIN_LISTEN): '{}' is not address:port",
                self.listen
            )
        })?;
        self.database()?;
        if self.db_pool_size == 0 {
            bail!("invalid setting db_pool_size (HUIMIN_DB_POOL_SIZE): must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            bail!("invalid setting max_body_bytes (HUIMIN_MAX_BODY_BYTES): must be at least 1024");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).with_context(|| {
            format!(
                "invalid setting log_level (HUIMIN_LOG_LEVEL): '{}'",
                self.log_level
            )
        })?;
        if self.auth_mode == AuthMode::Jwt {
            if self.auth_keys_file.is_none() {
                bail!(
                    "invalid setting auth_keys_file (HUIMIN_AUTH_KEYS_FILE): required when auth_mode is jwt"
                );
            }
            if self.auth_issuer.is_none() {
                bail!(
                    "invalid setting auth_issuer (HUIMIN_AUTH_ISSUER): required when auth_mode is jwt"
                );
            }
        }
        if let Some(b) = &self.base_url {
            let u = url::Url::parse(b).with_context(|| {
                format!("invalid setting base_url (HUIMIN_BASE_URL): '{b}' is not a URL")
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("invalid setting base_url (HUIMIN_BASE_URL): '{b}' is not an http(s) URL");
            }
        }
        if !(self.resident_match_lower.is_finite()
            && self.resident_match_upper.is_finite()
            && self.resident_match_lower <= self.resident_match_upper)
        {
            bail!(
                "invalid setting resident_match_lower / resident_match_upper \
                 (HUIMIN_RESIDENT_MATCH_LOWER / _UPPER): need finite lower <= upper"
            );
        }
        if self.audit_retention_days < MIN_RETENTION_DAYS {
            bail!(
                "invalid setting audit_retention_days (HUIMIN_AUDIT_RETENTION_DAYS): {} is less \
                 than the 184 days the law requires",
                self.audit_retention_days
            );
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            bail!(
                "invalid setting tls_client_ca_file (HUIMIN_TLS_CLIENT_CA_FILE): client certificates need HTTPS (tls_cert_file, tls_key_file)"
            );
        }
        if !(1..=1440).contains(&self.break_glass_minutes) {
            bail!(
                "invalid setting break_glass_minutes (HUIMIN_BREAK_GLASS_MINUTES): {} is not 1 to 1440",
                self.break_glass_minutes
            );
        }
        if self.body_timeout_ms == 0 {
            bail!("invalid setting body_timeout_ms (HUIMIN_BODY_TIMEOUT_MS): must be at least 1");
        }
        if self.consent_recheck_ms == 0 {
            bail!(
                "invalid setting consent_recheck_ms (HUIMIN_CONSENT_RECHECK_MS): must be at least 1"
            );
        }
        if let Some(u) = &self.redis_url
            && !(u.starts_with("redis://") || u.starts_with("unix://"))
        {
            bail!("invalid setting redis_url (HUIMIN_REDIS_URL): '{u}' is not a redis:// URL");
        }
        if self.audit_seal_interval_ms == 0 {
            bail!(
                "invalid setting audit_seal_interval_ms (HUIMIN_AUDIT_SEAL_INTERVAL_MS): must be at least 1"
            );
        }
        if self.page_size_default == 0 || self.page_size_max < self.page_size_default {
            bail!("invalid setting page_size_default / page_size_max: need 0 < default <= max");
        }
        if self.referral_sweep_ms == 0 {
            bail!("invalid setting referral_sweep_ms: need at least 1");
        }
        if self.stats_min_cell < 5 {
            bail!("invalid setting stats_min_cell (HUIMIN_STATS_MIN_CELL): must be at least 5");
        }
        if self.stats_rounding == 0 || self.stats_rounding > 10 {
            bail!("invalid setting stats_rounding (HUIMIN_STATS_ROUNDING): need 1 to 10");
        }
        if let Err(e) = crate::services::stats::Prevalence::parse(&self.stats_prevalence) {
            bail!("invalid setting stats_prevalence (HUIMIN_STATS_PREVALENCE): {e}");
        }
        if self.booking_hold_seconds == 0 || self.booking_max_active == 0 {
            bail!("invalid setting booking_hold_seconds / booking_max_active: need at least 1");
        }
        Ok(())
    }

    /// The database to use.
    pub fn database(&self) -> anyhow::Result<DatabaseUrl> {
        match &self.database_url {
            Some(u) => DatabaseUrl::parse(u.expose_secret()).map_err(|e| {
                anyhow::anyhow!("invalid setting database_url (HUIMIN_DATABASE_URL): {e}")
            }),
            None => Ok(DatabaseUrl::Sqlite(
                self.data_dir
                    .join("huimin.db")
                    .to_string_lossy()
                    .into_owned(),
            )),
        }
    }

    /// The keyring file of identifiers at rest.
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.json"))
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        self.auth_issuer.as_deref().unwrap_or(DEV_ISSUER)
    }
}

/// Every setting name (lower case), for recognising variables.
const KNOWN: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "db_pool_size",
    "max_body_bytes",
    "base_url",
    "log_format",
    "log_level",
    "auth_mode",
    "auth_issuer",
    "auth_audience",
    "auth_keys_file",
    "page_size_default",
    "page_size_max",
    "workers",
    "resident_match_upper",
    "resident_match_lower",
    "audit_retention_days",
    "audit_seal_interval_ms",
    "audit_sync",
    "consent_default",
    "protect_identifiers",
    "keyring_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "tls_client_auth",
    "break_glass_minutes",
    "redis_url",
    "consent_recheck_ms",
    "trust_forwarded",
    "body_timeout_ms",
    "booking_hold_seconds",
    "booking_max_active",
    "booking_no_show_limit",
    "booking_no_show_window_days",
    "booking_no_show_pause_days",
    "referral_access_days",
    "referral_sweep_ms",
    "subscription_http_hosts",
    "stats_min_cell",
    "stats_prevalence",
    "stats_rounding",
];

/// Environment values are typed the way figment's `Env` provider types them.
fn parse_env_value(v: &str) -> figment::value::Value {
    v.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(v.to_owned()))
}

fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let var = if key.is_empty() {
        String::new()
    } else {
        format!(" (HUIMIN_{})", key.to_ascii_uppercase())
    };
    format!("{key}{var}: {}", e.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::load_from(
            None,
            &vars(&[("HUIMIN_LISTEN", "0.0.0.0:9000"), ("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert_eq!(
            s.database().unwrap(),
            DatabaseUrl::Sqlite("./data/huimin.db".into())
        );
        let s = Settings::load_from(None, &vars(&[("HUIMIN_DB_POOL_SIZE", "4")])).unwrap();
        assert_eq!(s.db_pool_size, 4);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Settings::load_from(None, &vars(&[("HUIMIN_DB_POOL_SIZE", "many")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_DB_POOL_SIZE"), "{e}");
        let e = Settings::load_from(None, &vars(&[("HUIMIN_LISTN", "x")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_LISTN"), "{e}");
        let e = Settings::load_from(None, &vars(&[("HUIMIN_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_LISTEN"), "{e}");
        let e =
            Settings::load_from(None, &vars(&[("HUIMIN_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_DATABASE_URL"), "{e}");
        let e = Settings::load_from(None, &vars(&[("HUIMIN_AUTH_MODE", "jwt")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_AUTH_KEYS_FILE"), "{e}");
        let e = Settings::load_from(None, &vars(&[("HUIMIN_AUDIT_SYNC", "never")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_AUDIT_SYNC"), "{e}");
        let s = Settings::load_from(None, &vars(&[("HUIMIN_AUDIT_SYNC", "disk")])).unwrap();
        assert_eq!(s.audit_sync, AuditSync::Disk);
    }

    #[test]
    fn the_database_url_is_a_secret_and_choices_are_typed() {
        let s = Settings::load_from(
            None,
            &vars(&[
                ("HUIMIN_DATABASE_URL", "postgres://app:s3cret@db/huimin"),
                ("HUIMIN_CONSENT_DEFAULT", "opt-in"),
                ("HUIMIN_AUDIT_SYNC", ""),
            ]),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(s.consent_default, ConsentDefault::OptIn);
        assert_eq!(s.audit_sync, AuditSync::Os);
        assert!(matches!(s.database().unwrap(), DatabaseUrl::Postgres(_)));
        let e = Settings::load_from(None, &vars(&[("HUIMIN_AUTH_MODE", "none")])).unwrap_err();
        assert!(e.to_string().contains("HUIMIN_AUTH_MODE"), "{e}");
    }

    #[test]
    fn toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("h.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9999\"\npage_size_default = 20\n").unwrap();
        let s = Settings::load_from(Some(&f), &[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9999");
        assert_eq!(s.page_size_default, 20);
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        let e = Settings::load_from(Some(&f), &[]).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn audit_retention_below_the_legal_minimum_is_refused() {
        let e =
            Settings::load_from(None, &vars(&[("HUIMIN_AUDIT_RETENTION_DAYS", "30")])).unwrap_err();
        assert!(e.to_string().contains("184 days"), "{e}");
        let s = Settings::load_from(
            None,
            &vars(&[
                ("HUIMIN_AUDIT_RETENTION_DAYS", "365"),
                ("HUIMIN_AUDIT_SEAL_INTERVAL_MS", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (s.audit_retention_days, s.audit_seal_interval_ms),
            (365, 250)
        );
    }
}
