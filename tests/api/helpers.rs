//! Spawning the real application on port 0 with a fresh database per test, and an HTTP client.
//!
//! SQLite by default (a temporary file). With `HUIMIN_TEST_POSTGRES_URL` set (for example
//! `postgres://postgres@127.0.0.1:5432`), every test creates and later drops its own PostgreSQL
//! database instead; an unreachable server fails the tests rather than skipping them.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use awc::http::header::HeaderMap;
use diesel::{Connection, RunQueryDsl, pg::PgConnection};
use huimin::auth::{Role, TokenRequest, dev_token};
use huimin::config::Settings;
use huimin::startup::Application;
use serde_json::Value;

pub const FHIR_JSON: &str = "application/fhir+json";

pub struct TestApp {
    pub base: String,
    pub settings: Settings,
    /// A token with `system/*.cruds` for an HIS system.
    pub token: String,
    client: awc::Client,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
    /// The running application's store, closed when the test ends.
    app_store: huimin::store::Store,
}

/// What a request answered.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Assert an OperationOutcome with this status and return its first issue.
    pub fn outcome(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let j = self.json();
        assert_eq!(j["resourceType"], "OperationOutcome", "{j}");
        j["issue"][0].clone()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Spawn with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawn after adjusting the settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: dir.path().to_path_buf(),
        db_pool_size: 8,
        workers: 2,
        log_level: "warn".to_owned(),
        ..Settings::default()
    };
    let pg = std::env::var("HUIMIN_TEST_POSTGRES_URL")
        .ok()
        .map(|server| {
            let server = server.trim_end_matches('/').to_owned();
            let name = format!(
                "huimin_test_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            create_pg_database(&server, &name);
            (server, name)
        });
    if let Some((server, name)) = &pg {
        // TLS and GSSAPI are pointless on the local test server, and libpq's OpenSSL and
        // Kerberos state racing the process exit can crash it: the servers of finished tests
        // still hold connections, and a writer that finds its database dropped reconnects
        // (one CI run aborted at exit in `k5_mutex_lock`).
        settings.database_url =
            Some(format!("{server}/{name}?sslmode=disable&gssencmode=disable").into());
    }
    adjust(&mut settings);
    huimin::telemetry::init(huimin::config::LogFormat::Text, &settings.log_level);
    let app = Application::build(settings.clone()).unwrap();
    let port = app.port();
    let app_store = app.store();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish();
    let mut t = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        token: String::new(),
        settings,
        client,
        _dir: dir,
        pg,
        app_store,
    };
    if t.settings.auth_mode == huimin::config::AuthMode::Dev {
        t.token = t.token_for(Role::His, "system/*.cruds");
    }
    t
}

/// Create (or recreate) an empty PostgreSQL database `name` on `server`.
pub fn create_pg_database(server: &str, name: &str) {
    let mut admin = PgConnection::establish(&format!("{server}/postgres")).unwrap_or_else(|e| {
        panic!("HUIMIN_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}")
    });
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
}

/// Run `statement` on `server`'s maintenance database (`postgres`).
pub fn pg_admin(server: &str, statement: &str) {
    let mut admin = PgConnection::establish(&format!("{server}/postgres")).unwrap();
    diesel::sql_query(statement).execute(&mut admin).unwrap();
}

/// Terminate every connection to database `name` (what a restart of PostgreSQL does to them).
pub fn terminate_connections(server: &str, name: &str) {
    pg_admin(
        server,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    );
}

/// Drop a test database (best effort).
pub fn drop_pg_database(server: &str, name: &str) {
    if let Ok(mut admin) = PgConnection::establish(&format!("{server}/postgres")) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The server is left to the test's runtime, which ends with the test; its background
        // threads would go on sending work to the writers, against a dropped database.
        self.app_store.close();
        if let Some((server, name)) = &self.pg {
            drop_pg_database(server, name);
        }
    }
}

impl TestApp {
    /// A development token: subject, role, scopes, institution (`Organization/<org>`) and
    /// `fhirUser` of one's own choosing.
    pub fn token_at(
        &self,
        sub: &str,
        role: Role,
        scope: &str,
        org: Option<&str>,
        fhir_user: Option<&str>,
    ) -> String {
        dev_token(
            &self.settings,
            &TokenRequest {
                sub: sub.to_owned(),
                role,
                scope: scope.to_owned(),
                org: org.map(|o| format!("Organization/{o}")),
                fhir_user: fhir_user.map(str::to_owned),
                // Officials answer for the synthetic city unless a test names an area.
                area: (role == Role::Official).then(|| "510100".to_owned()),
                ttl_secs: 600,
            },
        )
        .unwrap()
    }

    pub fn token_for(&self, role: Role, scope: &str) -> String {
        self.token_at("test-client", role, scope, Some("test"), None)
    }

    /// A token for a user: `sub`, role, scopes and `fhirUser` of one's own choosing.
    pub fn token_as(&self, sub: &str, role: Role, scope: &str, fhir_user: Option<&str>) -> String {
        self.token_at(sub, role, scope, Some("test"), fhir_user)
    }

    /// A hospital system's token for institution `Organization/<org>` (it writes the Patients
    /// that institution manages).
    pub fn his_of(&self, org: &str) -> String {
        self.token_at(
            &format!("his-{org}"),
            Role::His,
            "system/*.cruds",
            Some(org),
            None,
        )
    }

    /// A doctor's token at institution `Organization/<org>` with `scope` (`fhirUser`
    /// Practitioner/p1).
    pub fn doctor_of(&self, org: &str, scope: &str) -> String {
        let sub = format!("dr-{org}");
        self.token_at(
            &sub,
            Role::Doctor,
            scope,
            Some(org),
            Some("Practitioner/p1"),
        )
    }

    /// Create a resource with another token and return its JSON as stored.
    pub async fn create_as(&self, token: &str, body: &Value) -> Value {
        let t = body["resourceType"].as_str().unwrap();
        let auth = format!("Bearer {token}");
        let r = self
            .send(
                "POST",
                &format!("/fhir/{t}"),
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", FHIR_JSON),
                ],
                Some(body.to_string().as_bytes()),
            )
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
        r.json()
    }

    /// Run the `huimin` binary on this test's database and keyring (`args` after the
    /// program name), as an operator would beside the running server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_huimin"));
        for (k, _) in std::env::vars() {
            if k.starts_with("HUIMIN_") {
                c.env_remove(k);
            }
        }
        c.env("HUIMIN_DATA_DIR", &self.settings.data_dir);
        if let Some(url) = self.database_url() {
            c.env("HUIMIN_DATABASE_URL", url);
        }
        c.env("HUIMIN_LOG_LEVEL", "error");
        c.args(args).output().unwrap()
    }

    /// The PostgreSQL server and database this app uses (none on SQLite).
    pub fn pg_database(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// The test's database URL, when it is not the embedded default.
    pub fn database_url(&self) -> Option<String> {
        use secrecy::ExposeSecret as _;
        self.settings
            .database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned())
    }

    /// A second handle on the test's database (what a tool running beside the server sees).
    /// The PostgreSQL database the server uses (`None` on SQLite).
    pub fn pg_url(&self) -> Option<String> {
        self.pg
            .as_ref()
            .map(|(server, name)| format!("{server}/{name}?sslmode=disable&gssencmode=disable"))
    }

    /// The statistics' cells, kept by the writes, are what the stored facts make them.
    pub fn assert_stat_cells_exact(&self) {
        let diffs = self
            .app_store
            .read(|tx| {
                huimin::store::stats::cells::differences(tx.conn())
                    .map_err(huimin::error::ApiError::from)
            })
            .unwrap();
        assert!(diffs.is_empty(), "{diffs:#?}");
    }

    pub fn store(&self) -> huimin::store::Store {
        huimin::store::Store::open(
            &self.settings.database().unwrap(),
            2,
            self.settings.protection().unwrap(),
            huimin::startup::thresholds(&self.settings),
        )
        .unwrap()
    }

    /// GET with another token.
    pub async fn get_as(&self, token: &str, path: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("Authorization", auth.as_str())], None)
            .await
    }

    /// An absolute URL; characters a URI cannot carry as they are (non-ASCII, `|`, `[`, …)
    /// are percent-encoded, as a client library would.
    pub fn url(&self, path: &str) -> String {
        const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'<')
            .add(b'>')
            .add(b'`')
            .add(b'{')
            .add(b'}')
            .add(b'|')
            .add(b'[')
            .add(b']')
            .add(b'^')
            .add(b'\\');
        let encoded = percent_encoding::utf8_percent_encode(path, UNSAFE).to_string();
        if path.starts_with("http") {
            encoded
        } else {
            format!("{}{}", self.base, encoded)
        }
    }

    /// Send a request with the default token; `headers` may override it.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, self.url(path));
        let has_auth = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if !has_auth && !self.token.is_empty() {
            req = req.insert_header(("Authorization", format!("Bearer {}", self.token)));
        }
        for (k, v) in headers {
            if !(k.eq_ignore_ascii_case("authorization") && v.is_empty()) {
                req = req.insert_header((*k, *v));
            }
        }
        let mut resp = match body {
            Some(b) => req.send_body(b.to_vec()).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        let body = resp.body().limit(64 * 1024 * 1024).await.unwrap().to_vec();
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            "POST",
            path,
            &[("Content-Type", FHIR_JSON)],
            Some(body.to_string().as_bytes()),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            "PUT",
            path,
            &[("Content-Type", FHIR_JSON)],
            Some(body.to_string().as_bytes()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None).await
    }

    /// Create a resource and return its JSON as stored.
    pub async fn create(&self, body: &Value) -> Value {
        let t = body["resourceType"].as_str().unwrap();
        let r = self.post_json(&format!("/fhir/{t}"), body).await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
        r.json()
    }
}

/// Every page of a paged Bundle: GET `first`, then follow `next` links (each answer must be
/// 200; at most 1,000 pages).
pub async fn pages(app: &TestApp, first: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = first.to_owned();
    loop {
        let r = app.get(&url).await;
        assert_eq!(r.status.as_u16(), 200, "{url}: {}", r.text());
        let b = r.json();
        let next = b["link"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
            .map(|l| l["url"].as_str().unwrap().to_owned());
        out.push(b);
        match next {
            Some(n) => url = n,
            None => return out,
        }
        assert!(out.len() < 1000, "paging does not end");
    }
}

/// The entries of every page, in order.
pub fn entries_of(bundles: &[Value]) -> Vec<Value> {
    bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A synthetic institution Patient (fixed, not a real person) with a medical record number.
pub fn patient(mrn: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.13", "value": mrn}],
        "name": [{"family": "测试", "given": ["甲"]}],
        "gender": "female",
        "birthDate": "1980-01-01"
    })
}

/// Search parameters that leave out the resident index's golden resident Patients.
pub const NOT_GOLDEN: &str = "_tag:not=urn:huimin:CodeSystem:resident-index|golden";
/// Search parameters that select only golden resident Patients.
pub const GOLDEN: &str = "_tag=urn:huimin:CodeSystem:resident-index|golden";

/// Whether a resource is a golden resident record kept by the resident index.
pub fn is_golden(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["code"] == "golden"))
}

/// A valid synthetic resident ID number (GB 11643): area code, birth date `YYYYMMDD`, a
/// three-digit sequence (odd for men, even for women) and the MOD 11-2 check character.
pub fn id_number(area: &str, birth: &str, seq: u32) -> String {
    let body = format!("{area}{birth}{seq:03}");
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(weights)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// A resident's patient-privacy Consent (scope `patient-privacy`, OPTIN policy) with the given
/// provision.
pub fn privacy_consent(pid: &str, provision: Value) -> Value {
    serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "dateTime": "2026-01-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision
    })
}

/// What a notification endpoint received: the request's headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A notification endpoint (an HTTP/1.1 server on a port of its own): it records what is
/// POSTed and answers 200, or 503 while `failing`.
pub struct Endpoint {
    pub port: u16,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Endpoint {
    /// Listen on `port` (0: any free one).
    pub fn start(port: u16) -> Endpoint {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, f) = (got.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, f) = (g.clone(), f.clone());
                std::thread::spawn(move || serve_endpoint(stream, &g, &f));
            }
        });
        Endpoint { port, got, failing }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait up to `secs` seconds until `n` requests arrived; what arrived.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let got = self.received();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn serve_endpoint(
    stream: std::net::TcpStream,
    got: &std::sync::Mutex<Vec<Received>>,
    failing: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufRead, Read, Write};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = if failing.load(std::sync::atomic::Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            got.lock().unwrap().push(Received { headers, body });
            "200 OK"
        };
        let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
