//! Transactions and batches: all-or-nothing, processing order, reference rewriting,
//! conditional references, per-entry outcomes, idempotent re-push, concurrency, size.

use serde_json::{Value, json};

use crate::helpers::{FHIR_JSON, GOLDEN, NOT_GOLDEN, TestApp, patient, spawn_app, spawn_app_with};

/// Medical record numbers (not checked like ID numbers).
const SYS: &str = "urn:oid:2.16.156.10011.1.13";

async fn post_bundle(app: &TestApp, bundle: &Value) -> crate::helpers::Reply {
    app.post_json("/fhir", bundle).await
}

fn tx(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let t = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": t}})
}

async fn count(app: &TestApp, query: &str) -> u64 {
    let r = app.get(&format!("/fhir/{query}&_summary=count")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json()["total"].as_u64().unwrap()
}

/// The OperationOutcome issue names `Bundle.entry[i]` first.
fn names_entry(issue: &Value, i: usize) {
    let text = issue["diagnostics"].as_str().unwrap_or_default();
    assert!(text.starts_with(&format!("Bundle.entry[{i}]")), "{issue}");
}

fn location_id(entry: &Value) -> String {
    let loc = entry["response"]["location"].as_str().unwrap();
    loc.split('/').nth(1).unwrap().to_owned()
}

#[actix_web::test]
async fn a_transaction_rewrites_references_and_answers_in_request_order() {
    let app = spawn_app().await;
    let bundle = tx(vec![
        post(
            "urn:uuid:0c3f1b8e-0000-4000-8000-000000000003",
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"text": "体温"},
                   "subject": {"reference": "urn:uuid:0c3f1b8e-0000-4000-8000-000000000001"},
                   "encounter": {"reference": "urn:uuid:0c3f1b8e-0000-4000-8000-000000000002"}}),
        ),
        post(
            "urn:uuid:0c3f1b8e-0000-4000-8000-000000000001",
            patient("110105194912310025"),
        ),
        post(
            "urn:uuid:0c3f1b8e-0000-4000-8000-000000000002",
            json!({"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "subject": {"reference": "urn:uuid:0c3f1b8e-0000-4000-8000-000000000001"}}),
        ),
    ]);
    // Clients post transactions to the base with or without a trailing slash.
    let r = app.post_json("/fhir/", &bundle).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["type"], "transaction-response");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created", "{e}");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert!(e["response"]["lastModified"].is_string());
    }
    assert!(
        entries[0]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with("Observation/")
    );
    let (obs, pat, enc) = (
        location_id(&entries[0]),
        location_id(&entries[1]),
        location_id(&entries[2]),
    );
    let o = app.get(&format!("/fhir/Observation/{obs}")).await.json();
    assert_eq!(o["subject"]["reference"], format!("Patient/{pat}"));
    assert_eq!(o["encounter"]["reference"], format!("Encounter/{enc}"));
    let e = app.get(&format!("/fhir/Encounter/{enc}")).await.json();
    assert_eq!(e["subject"]["reference"], format!("Patient/{pat}"));
    // The index holds the rewritten references.
    assert_eq!(
        count(&app, &format!("Observation?subject=Patient/{pat}")).await,
        1
    );
    // Prefer: return=representation puts each resource in the response.
    let r = app
        .send(
            "POST",
            "/fhir",
            &[
                ("Content-Type", FHIR_JSON),
                ("Prefer", "return=representation"),
            ],
            Some(
                tx(vec![post("urn:uuid:a", patient("110105194912310033"))])
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    let b = r.json();
    assert_eq!(b["entry"][0]["resource"]["resourceType"], "Patient");
    assert!(b["entry"][0]["resource"]["id"].is_string());
}

#[actix_web::test]
async fn a_failing_entry_rolls_back_everything_and_is_named() {
    let app = spawn_app().await;
    let existing = app.create(&patient("110105194912310041")).await;
    let id = existing["id"].as_str().unwrap();
    let bundle = tx(vec![
        post("urn:uuid:1", patient("110105194912310050")),
        json!({"resource": {"resourceType": "Patient", "id": id, "gender": "male"},
               "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\""}}),
    ]);
    let issue = post_bundle(&app, &bundle).await.outcome(412);
    names_entry(&issue, 1);
    assert_eq!(
        count(
            &app,
            &format!("Patient?identifier={SYS}|110105194912310050")
        )
        .await,
        0
    );
    let unchanged = app.get(&format!("/fhir/Patient/{id}")).await.json();
    assert_eq!(unchanged["meta"]["versionId"], "1");

    // An invalid resource: 400 naming the element inside the bundle, nothing written.
    let bundle = tx(vec![
        post("urn:uuid:1", patient("110105194912310068")),
        post(
            "urn:uuid:2",
            json!({"resourceType": "Patient", "name": [{"famly": "x"}]}),
        ),
    ]);
    let issue = post_bundle(&app, &bundle).await.outcome(400);
    let expr = issue["expression"][0].as_str().unwrap();
    assert!(
        expr.contains("entry[1]") && expr.contains("famly"),
        "{issue}"
    );
    assert_eq!(
        count(
            &app,
            &format!("Patient?identifier={SYS}|110105194912310068")
        )
        .await,
        0
    );

    // A type mismatch between the URL and the resource, and unknown methods.
    let bad = tx(vec![json!({"resource": patient("1"),
                             "request": {"method": "POST", "url": "Observation"}})]);
    let issue = post_bundle(&app, &bad).await.outcome(400);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[0]")
    );
    let bad = tx(vec![
        json!({"request": {"method": "HEAD", "url": format!("Patient/{id}")}}),
    ]);
    post_bundle(&app, &bad).await.outcome(400);
    // Only transactions and batches are accepted at the base.
    let r = post_bundle(
        &app,
        &json!({"resourceType": "Bundle", "type": "collection"}),
    )
    .await;
    assert_eq!(r.outcome(400)["expression"][0], "Bundle.type");
    let r = post_bundle(&app, &patient("1")).await;
    r.outcome(400);
}

#[actix_web::test]
async fn entries_are_processed_delete_post_put_get() {
    let app = spawn_app().await;
    let old = app.create(&patient("110105194912310076")).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let keep = app.create(&patient("110105194912310084")).await;
    let keep_id = keep["id"].as_str().unwrap().to_owned();
    // Listed GET, PUT, POST, DELETE: the read sees the update, the conditional create does
    // not match the resource deleted in the same transaction.
    let cond = format!("identifier={SYS}|110105194912310076");
    let bundle = tx(vec![
        json!({"request": {"method": "GET", "url": format!("Patient/{keep_id}")}}),
        json!({"resource": {"resourceType": "Patient", "id": keep_id, "gender": "male",
                            "identifier": [{"system": SYS, "value": "110105194912310084"}]},
               "request": {"method": "PUT", "url": format!("Patient/{keep_id}")}}),
        json!({"fullUrl": "urn:uuid:new", "resource": patient("110105194912310076"),
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}}),
        json!({"request": {"method": "DELETE", "url": format!("Patient/{old_id}")}}),
        // A search after the writes sees what the transaction wrote (and not the deleted one).
        json!({"request": {"method": "GET", "url": format!("Patient?{cond}")}}),
    ]);
    let r = post_bundle(&app, &bundle).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    let e = b["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "200 OK");
    assert_eq!(e[0]["resource"]["gender"], "male");
    assert_eq!(e[0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(e[1]["response"]["status"], "200 OK");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    assert_ne!(location_id(&e[2]), old_id);
    assert_eq!(e[3]["response"]["status"], "204 No Content");
    assert_eq!(e[4]["resource"]["total"], 1);
    assert_eq!(
        e[4]["resource"]["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap(),
        location_id(&e[2])
    );
    app.get(&format!("/fhir/Patient/{old_id}"))
        .await
        .outcome(410);
}

#[actix_web::test]
async fn conditional_references_resolve_in_the_database_and_in_the_bundle() {
    let app = spawn_app().await;
    let p = app.create(&patient("110105194912310092")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let obs = |subject: &str| {
        json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                            "subject": {"reference": subject}},
               "request": {"method": "POST", "url": "Observation"}})
    };
    let by_id = format!("Patient?identifier={SYS}|110105194912310092");
    let r = post_bundle(&app, &tx(vec![obs(&by_id)])).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let oid = location_id(&r.json()["entry"][0]);
    let o = app.get(&format!("/fhir/Observation/{oid}")).await.json();
    assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));

    // Nothing matches: 412, nothing written.
    let none = format!("Patient?identifier={SYS}|000000000000000000");
    let issue = post_bundle(&app, &tx(vec![obs(&none)])).await.outcome(412);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("matches no")
    );
    // Two match: 412.
    app.create(&patient("110105194912310092")).await;
    let issue = post_bundle(&app, &tx(vec![obs(&by_id)])).await.outcome(412);
    assert_eq!(issue["code"], "multiple-matches");
    assert_eq!(count(&app, "Observation?status=final").await, 1);

    // A resident created by a conditional create in the same bundle.
    let cond = format!("identifier={SYS}|110105194912310106");
    let bundle = tx(vec![
        obs(&format!("Patient?{cond}")),
        json!({"fullUrl": "urn:uuid:p", "resource": patient("110105194912310106"),
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}}),
    ]);
    let r = post_bundle(&app, &bundle).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    let (oid, pid) = (location_id(&b["entry"][0]), location_id(&b["entry"][1]));
    let o = app.get(&format!("/fhir/Observation/{oid}")).await.json();
    assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));
}

/// One HIS push: a resident (conditional create on the ID number), an encounter and a result
/// (conditional updates on the hospital's own identifiers).
fn his_push(n: u32) -> Value {
    let id_number = format!("1101051949{n:08}");
    let cond = format!("identifier={SYS}|{id_number}");
    let enc_id = format!("urn:uuid:enc-{n}");
    tx(vec![
        json!({"fullUrl": format!("urn:uuid:pat-{n}"), "resource": patient(&id_number),
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}}),
        json!({"fullUrl": enc_id,
               "resource": {"resourceType": "Encounter", "status": "finished",
                            "identifier": [{"system": "urn:his:enc", "value": format!("E{n}")}],
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                            "subject": {"reference": format!("urn:uuid:pat-{n}")}},
               "request": {"method": "PUT", "url": format!("Encounter?identifier=urn:his:enc|E{n}")}}),
        json!({"resource": {"resourceType": "Observation", "status": "final",
                            "identifier": [{"system": "urn:his:obs", "value": format!("O{n}")}],
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
                            "subject": {"reference": format!("urn:uuid:pat-{n}")},
                            "encounter": {"reference": enc_id},
                            "valueQuantity": {"value": 36.6, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}},
               "request": {"method": "PUT", "url": format!("Observation?identifier=urn:his:obs|O{n}")}}),
    ])
}

#[actix_web::test]
async fn re_pushing_the_same_bundle_is_idempotent() {
    let app = spawn_app().await;
    let first = post_bundle(&app, &his_push(1)).await;
    assert_eq!(first.status.as_u16(), 200, "{}", first.text());
    let first = first.json();
    let statuses = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        statuses(&first),
        ["201 Created", "201 Created", "201 Created"]
    );
    let second = post_bundle(&app, &his_push(1)).await.json();
    assert_eq!(statuses(&second), ["200 OK", "200 OK", "200 OK"]);
    for i in 0..3 {
        assert_eq!(
            location_id(&first["entry"][i]),
            location_id(&second["entry"][i])
        );
    }
    let female = format!("Patient?gender=female&{NOT_GOLDEN}");
    assert_eq!(count(&app, &female).await, 1);
    assert_eq!(count(&app, &format!("Patient?{GOLDEN}")).await, 1);
    assert_eq!(count(&app, "Encounter?status=finished").await, 1);
    assert_eq!(count(&app, "Observation?status=final").await, 1);
}

#[actix_web::test]
async fn concurrent_pushes_of_the_same_resident_create_one_patient() {
    let app = spawn_app().await;
    let body = his_push(7).to_string();
    let replies = futures_util::future::join_all((0..16).map(|_| {
        app.send(
            "POST",
            "/fhir",
            &[("Content-Type", FHIR_JSON)],
            Some(body.as_bytes()),
        )
    }))
    .await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    assert_eq!(
        count(
            &app,
            &format!("Patient?identifier={SYS}|110105194900000007")
        )
        .await,
        1
    );
    assert_eq!(count(&app, "Encounter?identifier=urn:his:enc|E7").await, 1);
    assert_eq!(
        count(&app, "Observation?identifier=urn:his:obs|O7").await,
        1
    );
}

#[actix_web::test]
async fn a_batch_answers_each_entry_on_its_own() {
    let app = spawn_app().await;
    let p = app.create(&patient("110105194912310114")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let patch = serde_json::to_vec(&json!([{"op": "replace", "path": "/gender", "value": "male"}]))
        .unwrap();
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD.encode(patch);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("110105194912310122"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "other"},
         "request": {"method": "PUT", "url": format!("Patient/{pid}"), "ifMatch": "W/\"9\""}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
         "request": {"method": "PATCH", "url": format!("Patient/{pid}")}},
        {"request": {"method": "GET", "url": format!("Patient?identifier={SYS}|110105194912310114")}},
        {"request": {"method": "HEAD", "url": "Patient"}},
    ]});
    let r = post_bundle(&app, &batch).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["type"], "batch-response");
    let e = b["entry"].as_array().unwrap();
    let status: Vec<&str> = e
        .iter()
        .map(|x| x["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        [
            "201 Created",
            "404 Not Found",
            "412 Precondition Failed",
            "200 OK",
            "200 OK",
            "400 Bad Request"
        ]
    );
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(e[4]["resource"]["type"], "searchset");
    assert_eq!(e[4]["resource"]["total"], 1);
    // The good entries were kept; the patch applied after the failed update.
    let created = location_id(&e[0]);
    app.get(&format!("/fhir/Patient/{created}")).await;
    let now = app.get(&format!("/fhir/Patient/{pid}")).await.json();
    assert_eq!(now["gender"], "male");
    assert_eq!(now["meta"]["versionId"], "2");
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn transactions_in_xml() {
    let app = spawn_app().await;
    let xml = r#"<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
      <entry><fullUrl value="urn:uuid:p1"/><resource><Patient><gender value="female"/></Patient></resource>
        <request><method value="POST"/><url value="Patient"/></request></entry>
      <entry><resource><Observation><status value="final"/><code><text value="x"/></code>
        <subject><reference value="urn:uuid:p1"/></subject></Observation></resource>
        <request><method value="POST"/><url value="Observation"/></request></entry>
    </Bundle>"#;
    let r = app
        .send(
            "POST",
            "/fhir",
            &[
                ("Content-Type", "application/fhir+xml"),
                ("Accept", "application/fhir+xml"),
            ],
            Some(xml.as_bytes()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("transaction-response") && text.contains("201 Created"),
        "{text}"
    );
    assert_eq!(
        count(&app, "Observation?subject:Patient.gender=female").await,
        1
    );
}

#[actix_web::test]
async fn ten_thousand_entries_in_one_transaction() {
    let app = spawn_app_with(|s| s.max_body_bytes = 64 * 1024 * 1024).await;
    let mut entries = Vec::new();
    for n in 0..2_500u32 {
        let p = format!("urn:uuid:00000000-0000-4000-8000-{n:012}");
        entries.push(post(&p, patient(&format!("X{n}"))));
        for k in 0..3 {
            entries.push(post(
                &format!("urn:uuid:00000000-0000-4000-9000-{:012}", n * 3 + k),
                json!({"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                       "subject": {"reference": p},
                       "valueQuantity": {"value": 60 + k, "unit": "/min"}}),
            ));
        }
    }
    let bundle = tx(entries);
    let r = post_bundle(&app, &bundle).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 10_000);
    assert_eq!(count(&app, "Observation?code=8867-4").await, 7_500);
    assert_eq!(
        count(&app, "Observation?subject:Patient.identifier=X42").await,
        3
    );
    // The body limit is a setting: over it, 413 and nothing written.
    let small = spawn_app_with(|s| s.max_body_bytes = 1024 * 1024).await;
    let r = post_bundle(&small, &bundle).await;
    assert_eq!(r.status.as_u16(), 413);
}

/// Push a generated city: the registry first, then every institution's bundles.
async fn push_city(app: &TestApp, dir: &std::path::Path) -> usize {
    let mut files = vec![dir.join("registry.json")];
    let mut inst: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    inst.sort();
    for d in inst {
        let mut bundles: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        bundles.sort();
        files.extend(bundles);
    }
    for f in &files {
        let body = std::fs::read(f).unwrap();
        // Each institution's system pushes its own bundles (the registry: the default token).
        let org = f.parent().unwrap().file_name().unwrap().to_string_lossy();
        let auth = if f.ends_with("registry.json") {
            format!("Bearer {}", app.token)
        } else {
            format!("Bearer {}", app.his_of(&org))
        };
        let r = app
            .send(
                "POST",
                "/fhir",
                &[
                    ("Content-Type", FHIR_JSON),
                    ("Authorization", auth.as_str()),
                ],
                Some(&body),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}: {}", f.display(), r.text());
    }
    files.len()
}

#[actix_web::test]
async fn the_synthetic_city_loads_and_re_pushes_idempotently() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let summary = huimin::fixtures::generate(40, 5, dir.path()).unwrap();
    push_city(&app, dir.path()).await;
    let observations = summary.by_type["Observation"] as u64;
    assert_eq!(count(&app, "Observation?status=final").await, observations);
    assert_eq!(
        count(&app, "Encounter?status=finished").await,
        summary.by_type["Encounter"] as u64
    );
    // One Patient per (institution, resident) pair: institutions know residents separately
    // until the resident index links them.
    assert_eq!(
        count(&app, "Patient?active:missing=true").await,
        summary.by_type["Patient"] as u64
    );
    // Institutions and their categories are searchable.
    assert!(
        count(
            &app,
            "Organization?type=urn:huimin:institution-category|B100"
        )
        .await
            > 0
    );
    // Pushing everything again changes nothing.
    push_city(&app, dir.path()).await;
    assert_eq!(count(&app, "Observation?status=final").await, observations);
    assert_eq!(
        count(&app, "Patient?active:missing=true").await,
        summary.by_type["Patient"] as u64
    );
}

#[test]
fn the_committed_sample_city_is_what_the_generator_writes() {
    // fixtures/city is `huimin fixtures generate --residents 20 --seed 1 --out fixtures/city`.
    let dir = tempfile::tempdir().unwrap();
    huimin::fixtures::generate(20, 1, dir.path()).unwrap();
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/city");
    for name in [
        "registry.json",
        "manifest.json",
        "truth.tsv",
        "org-2/bundle-00001.json",
        "org-0/slots.json",
        "org-3/slots.json",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            std::fs::read(committed.join(name)).unwrap(),
            "{name} differs: regenerate fixtures/city"
        );
    }
}

#[actix_web::test]
async fn two_servers_on_one_postgres_database_create_one_resident() {
    // Two independent servers (their own pools and writers) on the same PostgreSQL database,
    // as two processes would be: the match key in the database keeps the resident single.
    if std::env::var_os("HUIMIN_TEST_POSTGRES_URL").is_none() {
        return;
    }
    let a = spawn_app().await;
    let shared = a.settings.database_url.clone();
    // Servers of one database share its keyring.
    let keyring = a.settings.keyring_path();
    let b = spawn_app_with(|s| {
        s.database_url = shared;
        s.keyring_file = Some(keyring);
    })
    .await;
    let body = his_push(9).to_string();
    let replies = futures_util::future::join_all((0..32).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.send(
            "POST",
            "/fhir",
            &[("Content-Type", FHIR_JSON)],
            Some(body.as_bytes()),
        )
    }))
    .await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    for app in [&a, &b] {
        assert_eq!(
            count(app, &format!("Patient?identifier={SYS}|110105194900000009")).await,
            1
        );
        assert_eq!(count(app, "Observation?identifier=urn:his:obs|O9").await, 1);
    }
}

#[actix_web::test]
async fn one_transaction_with_the_same_conditional_create_twice_makes_one_resource() {
    let app = spawn_app().await;
    let cond = format!("identifier={SYS}|110105194912310130");
    let entry = |n: u32| {
        json!({"fullUrl": format!("urn:uuid:dup-{n}"), "resource": patient("110105194912310130"),
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}})
    };
    let obs = json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                  "subject": {"reference": "urn:uuid:dup-2"}},
                     "request": {"method": "POST", "url": "Observation"}});
    let r = post_bundle(&app, &tx(vec![entry(1), entry(2), obs])).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(b["entry"][1]["response"]["status"], "200 OK");
    let pid = location_id(&b["entry"][0]);
    assert_eq!(location_id(&b["entry"][1]), pid);
    assert_eq!(count(&app, &format!("Patient?{cond}")).await, 1);
    let oid = location_id(&b["entry"][2]);
    let o = app.get(&format!("/fhir/Observation/{oid}")).await.json();
    assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));
}

#[actix_web::test]
async fn a_conditional_update_in_a_bundle_checks_the_body_id_like_the_rest_api() {
    let app = spawn_app().await;
    let p = app.create(&patient("110105194912310149")).await;
    let cond = format!("Patient?identifier={SYS}|110105194912310149");
    let mut body = patient("110105194912310149");
    body["id"] = json!("someone-else");
    let entry = json!({"resource": body, "request": {"method": "PUT", "url": cond}});
    let issue = post_bundle(&app, &tx(vec![entry])).await.outcome(400);
    names_entry(&issue, 0);
    // The same request through the REST API.
    let mut body = patient("110105194912310149");
    body["id"] = json!("someone-else");
    app.put_json(&format!("/fhir/{cond}"), &body)
        .await
        .outcome(400);
    let unchanged = app
        .get(&format!("/fhir/Patient/{}", p["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(unchanged["meta"]["versionId"], "1");
}

#[actix_web::test]
async fn a_transaction_may_not_write_one_resource_twice() {
    let app = spawn_app().await;
    let cond = format!("Patient?identifier={SYS}|110105194912310157");
    let put = |family: &str| {
        let mut body = patient("110105194912310157");
        body["name"] = json!([{"family": family}]);
        json!({"resource": body, "request": {"method": "PUT", "url": cond}})
    };
    let issue = post_bundle(&app, &tx(vec![put("Li"), put("Wang")]))
        .await
        .outcome(400);
    names_entry(&issue, 1);
    assert_eq!(count(&app, &cond).await, 0);
    let p = json!({"resourceType": "Patient", "id": "twice", "active": true});
    let by_id = json!({"resource": p, "request": {"method": "PUT", "url": "Patient/twice"}});
    post_bundle(&app, &tx(vec![by_id.clone(), by_id]))
        .await
        .outcome(400);
    app.get("/fhir/Patient/twice").await.outcome(404);
}

/// Conditional entries are settled in bulk (one lookup per type and identifier system): a
/// bundle whose entries partly match existing resources, partly are new, and partly match
/// several resources gets exactly the answers single requests would get.
#[actix_web::test]
async fn bulk_settled_entries_match_create_and_refuse_like_single_requests() {
    let app = spawn_app().await;
    let sys = "urn:test:enc";
    let enc = |n: u32| {
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "identifier": [{"system": sys, "value": format!("E{n}")}]})
    };
    let first = app.create(&enc(1)).await;
    // Two resources share E9: conditional entries on it are ambiguous.
    app.create(&enc(9)).await;
    app.create(&enc(9)).await;
    let put = |n: u32| json!({"resource": enc(n), "request": {"method": "PUT", "url": format!("Encounter?identifier={sys}|E{n}")}});
    let create = |n: u32| {
        json!({"resource": enc(n), "request": {"method": "POST", "url": "Encounter",
               "ifNoneExist": format!("identifier={sys}|E{n}")}})
    };
    let r = post_bundle(&app, &tx(vec![put(1), put(2), create(1), create(3)])).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(location_id(&b["entry"][0]), first["id"].as_str().unwrap());
    assert_eq!(b["entry"][1]["response"]["status"], "201 Created");
    assert_eq!(b["entry"][2]["response"]["status"], "200 OK");
    assert_eq!(location_id(&b["entry"][2]), first["id"].as_str().unwrap());
    assert_eq!(b["entry"][3]["response"]["status"], "201 Created");
    for n in [1, 2, 3] {
        assert_eq!(
            count(&app, &format!("Encounter?identifier={sys}|E{n}")).await,
            1
        );
    }
    // Ambiguous criteria: 412 naming the entry, and nothing of the bundle is written.
    let issue = post_bundle(&app, &tx(vec![put(4), create(9)]))
        .await
        .outcome(412);
    names_entry(&issue, 1);
    assert_eq!(
        count(&app, &format!("Encounter?identifier={sys}|E4")).await,
        0
    );
}

#[actix_rt::test]
async fn an_invalid_resource_fails_its_batch_entry_alone_and_refuses_a_transaction() {
    let app = spawn_app().await;
    let entries = || {
        vec![
            json!({"resource": patient("BATCH-OK"), "request": {"method": "POST", "url": "Patient"}}),
            json!({"resource": {"resourceType": "Observation", "status": "final",
                                "code": {"text": "体温"}, "colour": "blue"},
                   "request": {"method": "POST", "url": "Observation"}}),
        ]
    };
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries()});
    let r = post_bundle(&app, &batch).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(
        answer["entry"][0]["response"]["status"], "201 Created",
        "{answer}"
    );
    let failed = &answer["entry"][1]["response"];
    assert!(
        failed["status"].as_str().unwrap().starts_with("400"),
        "{answer}"
    );
    assert!(failed["outcome"].to_string().contains("colour"), "{answer}");
    assert_eq!(count(&app, "Observation?status=final").await, 0);
    // All or nothing: the transaction is refused whole, naming the element.
    let r = post_bundle(&app, &tx(entries())).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("colour"), "{}", r.text());
    assert_eq!(
        count(&app, &format!("Patient?identifier=BATCH-OK&{NOT_GOLDEN}")).await,
        1
    );
    app.assert_stat_cells_exact();
}
