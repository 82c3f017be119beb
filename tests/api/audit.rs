//! The audit trail: every interaction leaves an AuditEvent before it is answered, a failed
//! write leaves only its failure, residents list who accessed their record, and the SM3 chain
//! names modified, deleted and truncated records.

use diesel::connection::SimpleConnection;
use huimin::auth::Role;
use huimin::services::audit;
use huimin::store::Store;
use serde_json::{Value, json};

use crate::helpers::{TestApp, entries_of, id_number, patient, spawn_app, spawn_app_with};

/// Every audit record, oldest first, as an administrator reads them.
async fn audit_events(app: &TestApp) -> Vec<Value> {
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let first = app.get_as(&admin, "/fhir/AuditEvent?_count=1000").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let mut events: Vec<Value> = first.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    events.reverse();
    events
}

fn subtype(e: &Value) -> &str {
    e["subtype"][0]["code"].as_str().unwrap()
}

fn refers_to(e: &Value, reference: &str) -> bool {
    e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["what"]["reference"] == reference)
}

/// The golden resident of an institution Patient.
async fn golden_of(app: &TestApp, id: &str) -> String {
    let p = app.get(&format!("/fhir/Patient/{id}")).await.json();
    p["link"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l["other"]["reference"].as_str())
        .unwrap()
        .trim_start_matches("Patient/")
        .to_owned()
}

/// Seal every committed record (on PostgreSQL the sealer waits for transactions still running
/// anywhere on the server, other tests' too).
fn seal_all(store: &Store) {
    let waiting = audit::seal_committed(store, std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(waiting, 0, "records stay unsealed");
}

fn verify(store: &Store, expect: Option<(i64, &str)>) -> audit::Report {
    let keys = store.protection().clone();
    store.read(|c| audit::verify(c, &keys, expect)).unwrap()
}

fn sql(store: &Store, statement: &str) -> Result<(), String> {
    let statement = statement.to_owned();
    store
        .read(move |c| {
            c.batch_execute(&statement)
                .map_err(huimin::error::ApiError::from)
        })
        .map_err(|e| e.to_string())
}

fn is_postgres(app: &TestApp) -> bool {
    app.settings.database_url.is_some()
}

/// The server's sealer out of the way: the tests seal when they choose.
async fn spawn_unsealed() -> TestApp {
    spawn_app_with(|s| s.audit_seal_interval_ms = 3_600_000).await
}

#[actix_rt::test]
async fn every_interaction_leaves_an_audit_event_naming_who_what_and_whose() {
    let app = spawn_app().await;
    let p = app.create(&patient("AUD-1")).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let golden = golden_of(&app, &id).await;
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/1"))
            .await
            .status,
        200
    );
    let found = app
        .get("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13|AUD-1")
        .await;
    assert_eq!(found.status, 200);
    let mut changed = p.clone();
    changed["gender"] = json!("male");
    assert_eq!(
        app.put_json(&format!("/fhir/Patient/{id}"), &changed)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/$everything"))
            .await
            .status,
        200
    );
    assert_eq!(app.delete(&format!("/fhir/Patient/{id}")).await.status, 204);
    assert_eq!(app.get("/fhir/Patient/does-not-exist").await.status, 404);

    let events = audit_events(&app).await;
    let kinds: Vec<&str> = events.iter().map(subtype).collect();
    for k in [
        "create",
        "read",
        "vread",
        "search-type",
        "update",
        "history-instance",
        "$everything",
        "delete",
    ] {
        assert!(kinds.contains(&k), "no {k} event among {kinds:?}");
    }
    let me = format!("Patient/{id}");
    let whose = format!("Patient/{golden}");
    for e in events
        .iter()
        .filter(|e| subtype(e) != "read" || refers_to(e, &me))
    {
        if e["outcome"] != "0" {
            continue;
        }
        assert_eq!(
            e["agent"][0]["who"]["identifier"]["value"], "test-client",
            "{e}"
        );
        assert_eq!(
            e["agent"][1]["who"]["reference"], "Organization/test",
            "{e}"
        );
        assert_eq!(e["agent"][0]["network"]["address"], "127.0.0.1", "{e}");
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT", "{e}");
        assert!(refers_to(e, &whose), "event without the resident: {e}");
        assert!(refers_to(e, &me), "event without the resource: {e}");
    }
    let create = events.iter().find(|e| subtype(e) == "create").unwrap();
    assert_eq!(create["action"], "C");
    // The failed read is recorded with its outcome and no resident.
    let failed = events
        .iter()
        .find(|e| subtype(e) == "read" && e["outcome"] == "4")
        .expect("the 404 read is audited");
    assert!(
        failed.to_string().contains("Patient/does-not-exist"),
        "{failed}"
    );
    assert!(!failed.to_string().contains(&whose));
}

#[actix_rt::test]
async fn a_failed_transaction_leaves_its_failure_and_no_write_events() {
    let app = spawn_app().await;
    let bundle = |status: &str| {
        json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:7d0e2a58-0000-4000-8000-000000000001",
                 "resource": patient("AUD-TX"),
                 "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Observation", "status": status,
                              "code": {"text": "体温"},
                              "subject": {"reference": "urn:uuid:7d0e2a58-0000-4000-8000-000000000001"}},
                 "request": {"method": "POST", "url": "Observation"}}
            ]
        })
    };
    let bad = app.post_json("/fhir", &bundle("not-a-status")).await;
    assert!(bad.status.is_client_error(), "{}", bad.text());
    let events = audit_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(subtype(&events[0]), "transaction");
    assert_eq!(events[0]["outcome"], "4");

    let good = app.post_json("/fhir", &bundle("final")).await;
    assert_eq!(good.status, 200, "{}", good.text());
    let events = audit_events(&app).await;
    let written: Vec<&Value> = events
        .iter()
        .filter(|e| subtype(e) == "transaction" && e["outcome"] == "0")
        .collect();
    // One event for the resident (the Patient, its golden record and the Observation).
    assert_eq!(written.len(), 1, "{events:?}");
    let loc = good.json()["entry"][1]["response"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let obs = loc.split("/_history").next().unwrap();
    assert!(refers_to(written[0], obs), "{}", written[0]);
}

#[actix_rt::test]
async fn a_resident_lists_who_accessed_their_record_and_nothing_else() {
    let app = spawn_app().await;
    let mut mine = patient("AUD-R1");
    mine["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "urn:oid:2.16.156.10011.1.2", "value": id_number("110101", "19800101", 2)}));
    let mine = app.create(&mine).await["id"].as_str().unwrap().to_owned();
    let mut other = patient("AUD-R2");
    other["name"] = json!([{"family": "另", "given": ["乙"]}]);
    other["birthDate"] = json!("1990-05-05");
    let other = app.create(&other).await["id"].as_str().unwrap().to_owned();

    let doctor = app.token_as(
        "dr-wang",
        Role::Doctor,
        "user/*.rs",
        Some("Practitioner/wang"),
    );
    assert_eq!(
        app.get_as(&doctor, &format!("/fhir/Patient/{mine}"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get_as(&doctor, &format!("/fhir/Patient/{other}"))
            .await
            .status,
        200
    );

    let me = format!("Patient/{mine}");
    let resident = app.token_as("resident-1", Role::Resident, "patient/*.rs", Some(&me));
    let listed = app.get_as(&resident, "/fhir/AuditEvent").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let events: Vec<Value> = entries_of(&[listed.json()])
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert!(
        events.iter().any(|e| subtype(e) == "read"
            && e["agent"][0]["who"]["identifier"]["value"] == "dr-wang"
            && e["agent"][0]["who"]["reference"] == "Practitioner/wang"
            && refers_to(e, &me)),
        "the doctor's read is listed: {events:?}"
    );
    let theirs = format!("Patient/{other}");
    assert!(
        events.iter().all(|e| !refers_to(e, &theirs)),
        "another resident's accesses leak: {events:?}"
    );
    let same = app
        .get_as(&resident, &format!("/fhir/AuditEvent?patient={me}"))
        .await;
    assert_eq!(same.status, 200);
    // The same records, and one more: reading the trail is audited too, and concerns them.
    let again: Vec<Value> = entries_of(&[same.json()])
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert_eq!(again.len(), events.len() + 1);
    assert!(
        again.iter().any(|e| subtype(e) == "search-type"
            && e["agent"][0]["who"]["identifier"]["value"] == "resident-1"),
        "{again:?}"
    );
    app.get_as(&resident, &format!("/fhir/AuditEvent?patient={theirs}"))
        .await
        .outcome(403);
    // An event about the other resident cannot be read by id either.
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let all = app
        .get_as(&admin, "/fhir/AuditEvent?_count=1000")
        .await
        .json();
    let foreign = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| refers_to(&e["resource"], &theirs))
        .unwrap()["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get_as(&resident, &format!("/fhir/AuditEvent/{foreign}"))
        .await
        .outcome(404);
    assert_eq!(
        app.get_as(&admin, &format!("/fhir/AuditEvent/{foreign}"))
            .await
            .json()["id"],
        foreign.as_str()
    );
    // The administrator's reading of the trail is listed for the resident it concerned.
    let mine_now: Vec<Value> =
        entries_of(&[app.get_as(&resident, "/fhir/AuditEvent").await.json()])
            .into_iter()
            .map(|e| e["resource"].clone())
            .collect();
    assert!(
        mine_now.iter().any(|e| subtype(e) == "search-type"
            && e["agent"][0]["role"][0]["coding"][0]["code"] == "admin"),
        "{mine_now:?}"
    );
    // Doctors and HIS systems do not read the trail; nobody writes it.
    app.get_as(&doctor, "/fhir/AuditEvent").await.outcome(403);
    app.get("/fhir/AuditEvent").await.outcome(403);
    let posted = app
        .post_json("/fhir/AuditEvent", &json!({"resourceType": "AuditEvent"}))
        .await;
    posted.outcome(405);
    app.delete(&format!("/fhir/AuditEvent/{foreign}"))
        .await
        .outcome(405);
}

/// On PostgreSQL a transaction that began writing first may commit its record after a younger
/// transaction's: the sealer waits for it instead of passing it, and every record ends up sealed
/// once in a chain that verifies.
#[actix_rt::test]
async fn a_record_committed_late_by_an_older_transaction_is_sealed_in_its_place() {
    let app = spawn_unsealed().await;
    let Some(url) = app.database_url() else {
        return; // SQLite has one writer at a time: commits cannot interleave.
    };
    use diesel::Connection as _;
    let mut older = diesel::pg::PgConnection::establish(&url).unwrap();
    older
        .batch_execute(&format!(
            "BEGIN; INSERT INTO audit_events (recorded, resident, flagged, content) \
             VALUES ({}, NULL, false, '{{\"resourceType\":\"AuditEvent\"}}')",
            huimin::clock::now_millis()
        ))
        .unwrap();
    app.create(&patient("AUD-LATE")).await;
    let store = app.store();
    while audit::seal_pending(&store).unwrap().0 > 0 {}
    let waiting = store
        .read(|c| {
            huimin::store::audit::unsealed_before(c, i64::MAX)
                .map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    assert!(
        !waiting.is_empty(),
        "the younger transaction's records were sealed while an older one was still running"
    );
    older.batch_execute("COMMIT").unwrap();
    seal_all(&store);
    let r = verify(&store, None);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let stored: i64 = store
        .read(|c| {
            use diesel::prelude::*;
            huimin::store::schema::audit_events::table
                .count()
                .get_result(c.conn())
                .map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    assert_eq!(r.checked, stored as u64, "{r:?}");
}

#[actix_rt::test]
async fn the_chain_names_modified_deleted_and_truncated_records() {
    let app = spawn_unsealed().await;
    for i in 0..8 {
        app.create(&patient(&format!("AUD-C{i}"))).await;
    }
    let store = app.store();
    seal_all(&store);
    let clean = verify(&store, None);
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.checked, 8);
    let (head_seq, head_hash) = clean.head.clone().unwrap();
    assert_eq!(head_seq, 8);
    // The database itself refuses to change or delete a record or a seal.
    let at = |seq: i64| format!("(SELECT event_id FROM audit_seals WHERE chain_seq = {seq})");
    assert!(
        sql(
            &store,
            &format!(
                "UPDATE audit_events SET content = content || ' ' WHERE id = {}",
                at(2)
            )
        )
        .is_err()
    );
    assert!(
        sql(
            &store,
            &format!("DELETE FROM audit_events WHERE id = {}", at(3))
        )
        .is_err()
    );
    assert!(
        sql(
            &store,
            "UPDATE audit_seals SET hash = 'x' WHERE chain_seq = 3"
        )
        .is_err()
    );
    assert!(sql(&store, "DELETE FROM audit_seals WHERE chain_seq = 3").is_err());

    // Someone with the rights to drop the guards edits, deletes, reorders and truncates.
    drop_guards(&app, &store);
    sql(
        &store,
        &format!(
            "UPDATE audit_events SET content = replace(content, 'create', 'read') WHERE id = {}",
            at(2)
        ),
    )
    .unwrap();
    let r = verify(&store, None);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].contains("position 2"), "{:?}", r.problems);
    sql(
        &store,
        &format!("DELETE FROM audit_events WHERE id = {}", at(4)),
    )
    .unwrap();
    let r = verify(&store, None);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("position 4") && p.contains("missing")),
        "{:?}",
        r.problems
    );
    // Two records swapped (their positions exchanged).
    for statement in [
        "UPDATE audit_seals SET chain_seq = -1 WHERE chain_seq = 6",
        "UPDATE audit_seals SET chain_seq = 6 WHERE chain_seq = 7",
        "UPDATE audit_seals SET chain_seq = 7 WHERE chain_seq = -1",
    ] {
        sql(&store, statement).unwrap();
    }
    let r = verify(&store, None);
    assert!(
        r.problems.iter().any(|p| p.contains("position 6")),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems.iter().any(|p| p.contains("position 7")),
        "{:?}",
        r.problems
    );
    // The newest record and its seal deleted: only the head kept outside the database shows it.
    sql(
        &store,
        &format!("DELETE FROM audit_events WHERE id = {}", at(head_seq)),
    )
    .unwrap();
    sql(
        &store,
        &format!("DELETE FROM audit_seals WHERE chain_seq = {head_seq}"),
    )
    .unwrap();
    let r = verify(&store, Some((head_seq, &head_hash)));
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains(&format!("ends at position {}", head_seq - 1))),
        "{:?}",
        r.problems
    );
    // A record the sealer's position was moved past before it was sealed is named too.
    app.create(&patient("AUD-C9")).await;
    sql(
        &store,
        "UPDATE audit_chain SET sealed_txid = (SELECT MAX(txid) FROM audit_events), \
         sealed_id = (SELECT MAX(id) FROM audit_events)",
    )
    .unwrap();
    let r = verify(&store, None);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("neither sealed nor waiting")),
        "{:?}",
        r.problems
    );
}

/// What someone with the owner's rights can do: switch off the append-only triggers.
fn drop_guards(app: &TestApp, store: &Store) {
    if is_postgres(app) {
        sql(
            store,
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only; \
                    ALTER TABLE audit_seals DISABLE TRIGGER audit_seals_append_only",
        )
        .unwrap();
    } else {
        sql(
            store,
            "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_retention; \
                    DROP TRIGGER audit_seals_no_update; DROP TRIGGER audit_seals_with_record",
        )
        .unwrap();
    }
}

#[actix_rt::test]
async fn retention_purges_the_oldest_records_and_the_rest_still_verifies() {
    let app = spawn_unsealed().await;
    let store = app.store();
    let old = huimin::clock::now_millis() - 200 * 86_400_000;
    let rows: Vec<huimin::store::audit::NewEvent> = (0..3)
        .map(|i| huimin::store::audit::NewEvent {
            recorded: old + i,
            resident: None,
            flagged: false,
            content: format!("{{\"resourceType\":\"AuditEvent\",\"n\":{i}}}"),
        })
        .collect();
    store
        .write(move |c| {
            huimin::store::audit::append(c, &rows).map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    app.create(&patient("AUD-P1")).await;
    seal_all(&store);
    assert!(verify(&store, None).problems.is_empty());
    let cutoff = huimin::clock::now_millis() - 184 * 86_400_000;
    let purged = store
        .write(move |c| {
            huimin::store::audit::purge_before(c, cutoff).map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    assert_eq!(purged, 3, "{:?}", verify(&store, None));
    let r = verify(&store, None);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.start.0, 4);
    assert_eq!(r.checked, 1);
    // Younger records cannot be purged, by the server or by hand.
    let now = huimin::clock::now_millis();
    assert!(
        store
            .write(move |c| huimin::store::audit::purge_before(c, now)
                .map_err(huimin::error::ApiError::from))
            .is_err()
    );
    assert_eq!(verify(&store, None).checked, 1);
}

#[actix_rt::test]
async fn huimin_audit_verify_reports_an_intact_chain_and_names_a_tampered_record() {
    let app = spawn_unsealed().await;
    for i in 0..3 {
        app.create(&patient(&format!("AUD-V{i}"))).await;
    }
    let run = |args: &[&str]| app.cli(&[&["audit", "verify"], args].concat());
    let out = run(&["--seal"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("checked 3 record(s)"), "{text}");
    assert!(text.contains("the audit chain is intact"), "{text}");
    let head = text
        .split("head: ")
        .nth(1)
        .and_then(|h| h.lines().next())
        .unwrap()
        .to_owned();

    let store = app.store();
    drop_guards(&app, &store);
    sql(
        &store,
        "UPDATE audit_events SET resident = 'someone-else' \
         WHERE id = (SELECT event_id FROM audit_seals WHERE chain_seq = 2)",
    )
    .unwrap();
    let out = run(&["--expect", &head]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PROBLEM: the record at position 2"), "{text}");
}

#[actix_rt::test]
async fn a_refused_authentication_is_audited_without_a_patient() {
    let app = spawn_app().await;
    let refused = app
        .send(
            "GET",
            "/fhir/Patient",
            &[("Authorization", "Bearer not-a-token")],
            None,
        )
        .await;
    refused.outcome(401);
    let events = audit_events(&app).await;
    let login = events
        .iter()
        .find(|e| e["type"]["code"] == "110114")
        .unwrap_or_else(|| panic!("no authentication event in {events:?}"));
    assert_eq!(login["outcome"], "4");
    assert_eq!(login["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(login["entity"][0]["description"], "/fhir/Patient");
    assert!(!login.to_string().contains("not-a-token"), "{login}");
}

/// The audit log file a process left behind when it was killed: two whole records, a third cut
/// short mid-write, and the zeros of a preallocated file after them.
fn left_behind(dir: &std::path::Path) -> std::path::PathBuf {
    let log = dir.join("audit-log");
    std::fs::create_dir_all(&log).unwrap();
    let record = |n: u32| {
        let content = json!({
            "resourceType": "AuditEvent",
            "subtype": [{"code": "read"}],
            "entity": [{"what": {"reference": format!("Patient/left-behind-{n}")}}],
        });
        format!("1764000000000\t0\t\t{content}\n")
    };
    let path = log.join("0123456789abcdef0123456789abcdef.000001.log");
    let cut = record(3);
    let mut bytes = format!("{}{}{}", record(1), record(2), &cut[..cut.len() / 2]).into_bytes();
    bytes.resize(bytes.len() + 64 * 1024, 0);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[actix_rt::test]
async fn a_stopped_servers_audit_log_is_copied_by_the_next_one() {
    let mut file = None;
    let app = spawn_app_with(|s| file = Some(left_behind(&s.data_dir))).await;
    let file = file.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the file was not adopted"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = audit_events(&app).await;
    let left: Vec<&Value> = events
        .iter()
        .filter(|e| e.to_string().contains("left-behind"))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(refers_to(left[0], "Patient/left-behind-1"));
    assert!(refers_to(left[1], "Patient/left-behind-2"));
    // And the copied records are chained like any other.
    let store = app.store();
    seal_all(&store);
    let report = verify(&store, None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[actix_rt::test]
async fn reads_are_audited_once_each_however_they_are_copied() {
    use huimin::config::AuditSync;
    for sync in [AuditSync::Os, AuditSync::Disk] {
        let app = spawn_app_with(|s| s.audit_sync = sync).await;
        let p = app.create(&patient("AUD-LOG")).await;
        let id = p["id"].as_str().unwrap().to_owned();
        // Bursts of concurrent reads, each answered only once its record is in the node's log.
        let path = format!("/fhir/Patient/{id}");
        let reads = (0..60).map(|_| app.get(&path));
        for r in futures_util::future::join_all(reads).await {
            assert_eq!(r.status, 200);
        }
        let me = format!("Patient/{id}");
        let events = audit_events(&app).await;
        let read = events
            .iter()
            .filter(|e| subtype(e) == "read" && refers_to(e, &me))
            .count();
        assert_eq!(read, 60, "audit_sync={sync:?}");
        let log = app.settings.data_dir.join("audit-log");
        let files: Vec<_> = std::fs::read_dir(&log).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one log file per process");
    }
}

#[actix_web::test]
async fn no_identifier_reaches_the_audit_trail_in_clear_however_it_is_searched() {
    let app = spawn_app().await;
    let number = id_number("110105", "19491231", 3);
    let id_card = "urn:oid:2.16.156.10011.1.3";
    let mut p = patient("AUD-ID");
    p["identifier"] = json!([{"system": id_card, "value": number}]);
    p["gender"] = json!("male");
    app.create(&p).await;
    let gets = [
        format!("/fhir/Patient?identifier:not={id_card}|{number}"),
        format!(
            "/fhir/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NI|{number}"
        ),
        format!("/fhir/Patient?identifier:text={number}"),
        format!("/fhir/Observation?subject:identifier={id_card}|{number}"),
        format!("/fhir/Observation?patient.identifier={id_card}|{number}"),
        format!("/fhir/Patient?_content={number}"),
        format!("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13|{number}"),
        format!("/fhir/Organization?_has:Patient:organization:identifier={number}"),
        format!("/fhir/Patient/$ihe-pix?sourceIdentifier={id_card}|{number}"),
    ];
    for g in &gets {
        let r = app.get(g).await;
        assert!(r.status.as_u16() < 500, "{g}: {}", r.text());
    }
    let form = format!("identifier={id_card}%7C{number}");
    let r = app
        .send(
            "POST",
            "/fhir/Patient/_search",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(form.as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = audit_events(&app).await;
    assert!(events.len() >= gets.len(), "{}", events.len());
    for e in &events {
        assert!(!e.to_string().contains(&number), "{e}");
    }
}

/// The chain is keyed (HMAC-SM3 under the keyring): someone who can write the database but
/// does not hold the keyring edits a record and seals the chain again from it with the public
/// algorithm, and verification still names the rewrite.
#[actix_rt::test]
async fn a_rewrite_sealed_again_without_the_keyring_is_detected() {
    let app = spawn_unsealed().await;
    for i in 0..5 {
        app.create(&patient(&format!("AUD-K{i}"))).await;
    }
    let store = app.store();
    seal_all(&store);
    assert!(verify(&store, None).problems.is_empty());
    let links = store
        .read(|c| {
            huimin::store::audit::chain_from(c, 1, 100).map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    assert!(
        links.iter().all(|l| l.hash.starts_with("k:")),
        "seals are keyed"
    );
    drop_guards(&app, &store);
    // Rewrite record 3 and re-seal positions 3.. as an attacker can: unkeyed, or under a key
    // id of the keyring with a key of their own making (they cannot compute the real one).
    let at3 = &links[2];
    let forged_content = at3
        .event
        .as_ref()
        .unwrap()
        .content
        .replace("create", "read");
    sql(
        &store,
        &format!(
            "UPDATE audit_events SET content = '{}' WHERE id = {}",
            forged_content.replace('\'', "''"),
            at3.event_id
        ),
    )
    .unwrap();
    let relinked = store
        .read(|c| {
            huimin::store::audit::chain_from(c, 1, 100).map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    let mut prev = relinked[1].hash.clone();
    for l in &relinked[2..] {
        let forged = audit::chain_hash(&prev, l.seq, l.event.as_ref().unwrap(), None).unwrap();
        sql(
            &store,
            &format!(
                "UPDATE audit_seals SET hash = '{forged}' WHERE chain_seq = {}",
                l.seq
            ),
        )
        .unwrap();
        prev = forged;
    }
    let r = verify(&store, None);
    assert!(!r.problems.is_empty(), "the rewrite went unseen");
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("position 3") && p.contains("keyring")),
        "{:?}",
        r.problems
    );
}
