//! A server killed (SIGKILL) while it writes a large transaction bundle: after a restart on the
//! same database the bundle is either wholly there or wholly absent, the database opens, and
//! pushing the bundle again completes it exactly once. And a database that drops every
//! connection of a running server (a restart, terminated backends), or refuses connections
//! for a while: the server carries on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The PostgreSQL test database (when `HUIMIN_TEST_POSTGRES_URL` is set), dropped at the end.
struct PgDatabase(String, String);

impl Drop for PgDatabase {
    fn drop(&mut self) {
        crate::helpers::drop_pg_database(&self.0, &self.1);
    }
}

/// How the killed server reaches its database: (`HUIMIN_DATABASE_URL` or none, data dir).
fn database(tag: &str) -> (Option<String>, Option<PgDatabase>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    match std::env::var("HUIMIN_TEST_POSTGRES_URL") {
        Ok(server) => {
            let server = server.trim_end_matches('/').to_owned();
            let name = format!("huimin_test_crash_{tag}_{}", std::process::id());
            crate::helpers::create_pg_database(&server, &name);
            let url = format!("{server}/{name}?sslmode=disable&gssencmode=disable");
            (Some(url), Some(PgDatabase(server, name)), dir)
        }
        Err(_) => (None, None, dir),
    }
}

fn command(url: &Option<String>, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_huimin"));
    c.current_dir(dir).env("HUIMIN_DATA_DIR", dir.join("data"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUIMIN_") && !k.starts_with("HUIMIN_TEST_") {
            c.env_remove(k);
        }
    }
    if let Some(u) = url {
        c.env("HUIMIN_DATABASE_URL", u);
    }
    c.env("HUIMIN_LOG_LEVEL", "error");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Create a Patient with this MRN through the API; its id.
fn create_patient(port: u16, token: &str, mrn: &str) -> String {
    let patient = json!({"resourceType": "Patient", "active": true,
        "identifier": [{"system": "urn:crash:mrn", "value": mrn}]});
    let (status, body) = exchange(
        port,
        "POST",
        "/fhir/Patient",
        token,
        patient.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One HTTP/1.1 exchange; the status and body, or `None` when the connection broke.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn start(url: &Option<String>, dir: &std::path::Path, port: u16) -> Child {
    let child = command(url, dir)
        .arg("serve")
        .env("HUIMIN_LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exchange(port, "GET", "/healthz", "", b"").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// How many Observations of the bundle are stored.
fn stored(port: u16, token: &str) -> u64 {
    let (status, body) = exchange(
        port,
        "GET",
        "/fhir/Observation?identifier=urn:crash:obs%7C&_summary=count",
        token,
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["total"].as_u64().unwrap()
}

#[test]
fn a_server_killed_mid_transaction_leaves_all_or_nothing() {
    const N: u64 = 6000;
    let (url, _pg, dir) = database("bundle");
    let token = token_of(&url, dir.path(), "his", "Organization/crash");
    let mut entries = vec![json!({
        "fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "active": true,
            "identifier": [{"system": "urn:crash:mrn", "value": "1"}]},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:crash:mrn|1"}})];
    for i in 0..N {
        entries.push(json!({
            "resource": {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": "urn:uuid:p"},
                "identifier": [{"system": "urn:crash:obs", "value": i.to_string()}],
                "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            "request": {"method": "PUT", "url": format!("Observation?identifier=urn:crash:obs|{i}")}}));
    }
    let bundle = serde_json::to_vec(
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )
    .unwrap();

    // Time one push to know when a second one is in the middle of its transaction.
    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let started = Instant::now();
    let (status, body) = exchange(port, "POST", "/fhir", &token, &bundle).unwrap();
    assert_eq!(status, 200, "{body}");
    let took = started.elapsed();
    assert_eq!(stored(port, &token), N);

    // The same identifiers under a new system: a second bundle of N new resources.
    let second = String::from_utf8(bundle.clone())
        .unwrap()
        .replace("urn:crash:obs", "urn:crash:obs2")
        .into_bytes();
    let sender = {
        let (token, second) = (token.clone(), second.clone());
        std::thread::spawn(move || exchange(port, "POST", "/fhir", &token, &second))
    };
    std::thread::sleep(took.mul_f64(0.6));
    server.kill().unwrap();
    server.wait().unwrap();
    let answered = sender.join().unwrap();

    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let count2 = |port| {
        let (status, body) = exchange(
            port,
            "GET",
            "/fhir/Observation?identifier=urn:crash:obs2%7C&_summary=count",
            &token,
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["total"]
            .as_u64()
            .unwrap()
    };
    let after_crash = count2(port);
    eprintln!(
        "killed {:?} into a {took:?} push: {after_crash} of {N} stored, answer {:?}",
        took.mul_f64(0.6),
        answered.as_ref().map(|(s, _)| s)
    );
    assert!(
        after_crash == 0 || after_crash == N,
        "{after_crash} of {N} entries survived the kill (answered: {answered:?})"
    );
    // The first bundle is untouched, and the second one completes once when pushed again.
    assert_eq!(stored(port, &token), N);
    let (status, body) = exchange(port, "POST", "/fhir", &token, &second).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(count2(port), N);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Print a token of `role` for the server's data directory.
fn token_of(url: &Option<String>, dir: &std::path::Path, role: &str, org: &str) -> String {
    let out = command(url, dir)
        .args([
            "token",
            "--role",
            role,
            "--org",
            org,
            "--scope",
            "system/*.cruds",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn reads_answered_before_a_kill_are_in_the_audit_trail_once_each() {
    let (url, _pg, dir) = database("reads");
    let his = token_of(&url, dir.path(), "his", "Organization/crash");
    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let id = create_patient(port, &his, "read-1");
    // Four clients read at once; the server is killed the moment the last answer arrives, so
    // the newest records are still in the node's audit log, not yet copied.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (his, id) = (his.clone(), id.clone());
            std::thread::spawn(move || {
                (0..50)
                    .filter(|_| {
                        exchange(port, "GET", &format!("/fhir/Patient/{id}"), &his, b"")
                            .is_some_and(|(s, _)| s == 200)
                    })
                    .count()
            })
        })
        .collect();
    let answered: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(answered, 200);

    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let admin = token_of(&url, dir.path(), "admin", "Organization/crash");
    let (status, body) =
        exchange(port, "GET", "/fhir/AuditEvent?_count=1000", &admin, b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let bundle: Value = serde_json::from_str(&body).unwrap();
    let me = format!("Patient/{id}");
    let reads = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let r = &e["resource"];
            r["subtype"][0]["code"] == "read"
                && r["entity"]
                    .as_array()
                    .is_some_and(|x| x.iter().any(|w| w["what"]["reference"] == me.as_str()))
        })
        .count();
    assert_eq!(reads, answered, "every answered read audited, none twice");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// PostgreSQL drops every connection of the running server (as a restart of the database, or
/// an administrator terminating its backends, would): reads and writes carry on over fresh
/// connections. A request that ran on a dropped connection gets 503 with an OperationOutcome,
/// never 500, and nothing written before or after is lost.
#[actix_rt::test]
async fn a_server_whose_database_connections_are_dropped_reconnects() {
    let app = crate::helpers::spawn_app().await;
    let Some((server, name)) = app.pg_database() else {
        return; // SQLite: no connection to lose.
    };
    let p = app.create(&crate::helpers::patient("LOST-1")).await;
    let path = format!("/fhir/Patient/{}", p["id"].as_str().unwrap());
    // Several pooled connections in use, and every writer's.
    let reads: Vec<_> = (0..6).map(|_| app.get(&path)).collect();
    for r in futures_util::future::join_all(reads).await {
        assert_eq!(r.status, 200);
    }
    crate::helpers::terminate_connections(server, name);

    // Each request gets its answer or a 503; within a few, every one succeeds again.
    let mut statuses = Vec::new();
    let mut created = Vec::new();
    for n in 0..12 {
        let r = app.get(&path).await;
        let c = app
            .post_json(
                "/fhir/Patient",
                &crate::helpers::patient(&format!("LOST-2-{n}")),
            )
            .await;
        if c.status == 201 {
            created.push(c.json()["id"].as_str().unwrap().to_owned());
        }
        for (status, body) in [(r.status.as_u16(), r.json()), (c.status.as_u16(), c.json())] {
            assert!(
                status == 200 || status == 201 || status == 503,
                "after the connections were dropped: {status} {body}"
            );
            if status == 503 {
                assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
            }
            statuses.push(status);
        }
    }
    assert!(
        statuses[statuses.len() - 8..].iter().all(|s| *s != 503),
        "the server did not recover: {statuses:?}"
    );
    for id in created {
        assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status, 200);
    }
}

/// PostgreSQL refuses the server's connections for a while (down, or closed to connections):
/// writes answer 503 with an OperationOutcome, and once it accepts connections again, writes
/// succeed again without a restart of the server.
#[actix_rt::test]
async fn a_server_whose_database_is_unreachable_refuses_writes_then_recovers() {
    let app = crate::helpers::spawn_app().await;
    let Some((server, name)) = app.pg_database() else {
        return; // SQLite: no server to lose.
    };
    app.create(&crate::helpers::patient("DOWN-1")).await;
    crate::helpers::pg_admin(
        server,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    crate::helpers::terminate_connections(server, name);
    for n in 0..3 {
        let r = app
            .post_json(
                "/fhir/Patient",
                &crate::helpers::patient(&format!("DOWN-2-{n}")),
            )
            .await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
    crate::helpers::pg_admin(
        server,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    let started = std::time::Instant::now();
    let created = loop {
        let r = app
            .post_json("/fhir/Patient", &crate::helpers::patient("DOWN-3"))
            .await;
        if r.status == 201 {
            break r.json();
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "writes did not recover"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let path = format!("/fhir/Patient/{}", created["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.status, 200);
}

/// A write that PostgreSQL aborts in a deadlock with another session runs again by itself:
/// the client gets its answer (not a 500), and the write is there exactly once. The other
/// session holds one Patient's row, the server's bundle takes the other Patient's and waits
/// for the first; the other session then asks for the second, closing the cycle. The other
/// session waits longer before looking for deadlocks, so PostgreSQL aborts the server's
/// statement. Run as a transaction (a write of its own) and as a batch (in a group).
#[actix_rt::test]
async fn a_write_aborted_in_a_deadlock_runs_again() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let app = crate::helpers::spawn_app().await;
    // SQLite has one writer: its writes never meet.
    let Some(url) = app.pg_url() else {
        return;
    };
    for kind in ["transaction", "batch"] {
        let mut ids = Vec::new();
        for mrn in ["DL-A", "DL-B"] {
            let p = app
                .create_as(
                    &app.token,
                    &crate::helpers::patient(&format!("{mrn}-{kind}")),
                )
                .await;
            ids.push(p["id"].as_str().unwrap().to_owned());
        }
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let other = {
            let (url, a, b) = (url.clone(), a.clone(), b.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = PgConnection::establish(&url).map_err(|e| e.to_string())?;
                let lock = |c: &mut PgConnection, id: &str| {
                    diesel::sql_query(format!(
                        "SELECT 1 FROM resources WHERE res_type = 'Patient' AND res_id = '{id}' FOR UPDATE"
                    ))
                    .execute(c)
                    .map_err(|e| e.to_string())
                };
                diesel::sql_query("SET deadlock_timeout = '30s'")
                    .execute(&mut c)
                    .map_err(|e| e.to_string())?;
                diesel::sql_query("BEGIN")
                    .execute(&mut c)
                    .map_err(|e| e.to_string())?;
                lock(&mut c, &b)?;
                locked_tx.send(()).map_err(|e| e.to_string())?;
                // The server's bundle has taken A by now and waits for B.
                std::thread::sleep(Duration::from_millis(400));
                lock(&mut c, &a)?;
                diesel::sql_query("COMMIT")
                    .execute(&mut c)
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
        };
        while locked_rx.try_recv().is_err() {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        let put = |id: &str, mrn: &str| {
            let mut p = crate::helpers::patient(mrn);
            p["id"] = json!(id);
            p["gender"] = json!("male");
            json!({"resource": p, "request": {"method": "PUT", "url": format!("Patient/{id}")}})
        };
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [
            put(&a, &format!("DL-A-{kind}")), put(&b, &format!("DL-B-{kind}"))
        ]});
        let started = Instant::now();
        let r = app.post_json("/fhir", &bundle).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text());
        for e in r.json()["entry"].as_array().unwrap() {
            assert_eq!(e["response"]["status"], "200 OK", "{kind}: {e}");
        }
        other.join().unwrap().unwrap();
        // The server waited for a deadlock to be found (deadlock_timeout, 1 s) before it ran
        // its bundle again: the cycle did form.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{kind}: no deadlock formed"
        );
        for id in [&a, &b] {
            let p = app.get(&format!("/fhir/Patient/{id}")).await.json();
            assert_eq!(
                (p["gender"].clone(), p["meta"]["versionId"].clone()),
                (json!("male"), json!("2")),
                "{kind}: {p}"
            );
        }
    }
}

#[test]
fn a_notification_written_before_a_kill_is_delivered_after_the_restart() {
    let (url, _pg, dir) = database("notify");
    let his = token_of(&url, dir.path(), "his", "Organization/crash");
    // The endpoint is down while the change is written and the server killed.
    let hook = free_port();
    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let subscription = json!({"resourceType": "Subscription", "status": "requested",
        "reason": "new patients", "criteria": "Patient?identifier=urn:crash:mrn|N-1",
        "channel": {"type": "rest-hook", "endpoint": format!("http://127.0.0.1:{hook}/hook"),
                    "payload": "application/fhir+json"}});
    let (status, body) = exchange(
        port,
        "POST",
        "/fhir/Subscription",
        &his,
        subscription.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let pid = create_patient(port, &his, "N-1");
    std::thread::sleep(Duration::from_millis(1500));
    server.kill().unwrap();
    server.wait().unwrap();

    let endpoint = crate::helpers::Endpoint::start(hook);
    let port = free_port();
    let mut server = start(&url, dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while endpoint.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = endpoint.received();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(!got.is_empty(), "nothing was delivered after the restart");
    let bundle: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(bundle["entry"][0]["resource"]["id"], pid.as_str());
}
