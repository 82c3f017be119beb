//! One door for every record: a write never reads, confirms or changes what the caller may not
//! see (PATCH, conditional create, update and delete, bundle entries answer as for an absent
//! record), an institution changes only the records it wrote, golden residents change only
//! through the resident index, and the institutions a Consent governs never write it.

use huimin::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, id_number, patient, spawn_app};

const ID_CARD: &str = "urn:oid:2.16.156.10011.1.3";
/// An id no resource has, to compare a hidden record's answer with an absent one's.
const ABSENT: &str = "0190aaaa-0000-7000-8000-000000000000";

/// Resident A of `Organization/home`, with an ID number and an HIV diagnosis written by home,
/// whose Consent denies every other institution: (Patient id, Condition id, ID number).
async fn denied_resident(app: &TestApp) -> (String, String, String) {
    let home = app.his_of("home");
    let number = id_number("510104", "19800101", 2);
    let mut p = patient("DOOR-A");
    p["identifier"] = json!([{"system": ID_CARD, "value": number}]);
    p["managingOrganization"] = json!({"reference": "Organization/home"});
    let pid = id_of(&app.create_as(&home, &p).await);
    let cond = id_of(
        &app.create_as(
            &home,
            &json!({"resourceType": "Condition",
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]},
                    "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await,
    );
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    app.create_as(&admin, &consent(&pid, "deny")).await;
    (pid, cond, number)
}

fn consent(pid: &str, kind: &str) -> Value {
    crate::helpers::privacy_consent(pid, json!({ "type": kind }))
}

/// A 403 whose OperationOutcome says `why`.
fn refused(r: &Reply, why: &str) {
    let issue = r.outcome(403);
    assert!(
        issue["diagnostics"].as_str().unwrap_or("").contains(why),
        "{}",
        r.text()
    );
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    call_typed(app, token, method, path, "application/fhir+json", &[], body).await
}

async fn call_typed(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", content_type),
    ];
    headers.extend_from_slice(extra);
    let text = body.map(Value::to_string);
    app.send(method, path, &headers, text.as_deref().map(str::as_bytes))
        .await
}

/// The version home reads of `t/id`: unchanged by what another institution tried.
async fn version(app: &TestApp, t: &str, id: &str) -> String {
    let r = app
        .get_as(&app.his_of("home"), &format!("/fhir/{t}/{id}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["meta"]["versionId"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn writes_of_a_denied_institution_answer_as_for_an_absent_record() {
    let app = spawn_app().await;
    let (pid, cond, number) = denied_resident(&app).await;
    let away = app.his_of("away");

    // A PATCH, even a no-op `test`, answers exactly as for an absent record.
    let test_op = json!([{"op": "test", "path": "/code/coding/0/code", "value": "B20"}]);
    let patch = |id: String| {
        let (app, away, test_op) = (&app, &away, &test_op);
        async move {
            call_typed(
                app,
                away,
                "PATCH",
                &format!("/fhir/Condition/{id}"),
                "application/json-patch+json",
                &[],
                Some(test_op),
            )
            .await
        }
    };
    let hidden = patch(cond.clone()).await;
    let absent = patch(ABSENT.to_owned()).await;
    hidden.outcome(404);
    assert_eq!(
        hidden.text().replace(&cond, "ID"),
        absent.text().replace(ABSENT, "ID")
    );
    assert!(!hidden.text().contains("B20"), "{}", hidden.text());

    // Updates and deletes by id: 404 and nothing changed; a delete is a no-op as for an absent one.
    let put = json!({"resourceType": "Condition", "id": cond,
                     "code": {"text": "改写"}, "subject": {"reference": format!("Patient/{pid}")}});
    call(
        &app,
        &away,
        "PUT",
        &format!("/fhir/Condition/{cond}"),
        Some(&put),
    )
    .await
    .outcome(404);
    let del = call(
        &app,
        &away,
        "DELETE",
        &format!("/fhir/Condition/{cond}"),
        None,
    )
    .await;
    let del_absent = call(
        &app,
        &away,
        "DELETE",
        &format!("/fhir/Condition/{ABSENT}"),
        None,
    )
    .await;
    assert_eq!(del.status, del_absent.status, "{}", del.text());
    let del = call(
        &app,
        &away,
        "DELETE",
        &format!("/fhir/Condition?_id={cond}"),
        None,
    )
    .await;
    assert_eq!(del.status, del_absent.status, "{}", del.text());
    assert_eq!(version(&app, "Condition", &cond).await, "1");

    // Conditional creates never match the hidden record (by id, or by a code and the
    // resident's ID number): the caller's own record is created, the hidden one stays unseen.
    let new_cond = json!({"resourceType": "Condition", "code": {"text": "随访"},
                          "subject": {"reference": format!("Patient/{pid}")}});
    for criteria in [
        format!("_id={cond}"),
        format!("code=http://hl7.org/fhir/sid/icd-10|B20&patient.identifier={ID_CARD}|{number}"),
    ] {
        let r = call_typed(
            &app,
            &away,
            "POST",
            "/fhir/Condition",
            "application/fhir+json",
            &[
                ("If-None-Exist", criteria.as_str()),
                ("Prefer", "return=representation"),
            ],
            Some(&new_cond),
        )
        .await;
        assert_eq!(r.status, 201, "{criteria}: {}", r.text());
        assert_ne!(r.json()["id"], cond.as_str());
        assert!(!r.text().contains("B20"), "{}", r.text());
    }
    // A conditional update of criteria matching only the hidden record does not touch it.
    let r = call(
        &app,
        &away,
        "PUT",
        &format!("/fhir/Condition?_id={cond}"),
        Some(&new_cond),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(version(&app, "Condition", &cond).await, "1");

    // Bundle entries: the same door, with `return=representation`.
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": new_cond, "request": {"method": "POST", "url": "Condition",
                                           "ifNoneExist": format!("_id={cond}")}},
        {"request": {"method": "PATCH", "url": format!("Condition/{cond}")},
         "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                      "data": base64_of(&test_op)}},
        {"request": {"method": "DELETE", "url": format!("Condition/{cond}")}}]});
    let r = call_typed(
        &app,
        &away,
        "POST",
        "/fhir",
        "application/fhir+json",
        &[("Prefer", "return=representation")],
        Some(&bundle),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("B20"), "{}", r.text());
    let answer = r.json();
    assert_eq!(
        answer["entry"][0]["response"]["status"], "201 Created",
        "{answer}"
    );
    assert!(
        answer["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404"),
        "{answer}"
    );
    assert_eq!(version(&app, "Condition", &cond).await, "1");
}

fn base64_of(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

#[actix_rt::test]
async fn an_institution_changes_only_the_records_it_wrote() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let away = app.his_of("away");
    let mut p = patient("DOOR-B");
    p["managingOrganization"] = json!({"reference": "Organization/home"});
    let pid = id_of(&app.create_as(&home, &p).await);
    let obs_body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
                          "subject": {"reference": format!("Patient/{pid}")}});
    let obs = id_of(&app.create_as(&home, &obs_body).await);

    // Another institution sees the record (no Consent restricts it) but cannot change it,
    // whichever way it tries.
    let mut changed = obs_body.clone();
    changed["id"] = json!(obs);
    changed["status"] = json!("entered-in-error");
    let path = format!("/fhir/Observation/{obs}");
    refused(
        &call(&app, &away, "PUT", &path, Some(&changed)).await,
        "another institution",
    );
    call(
        &app,
        &away,
        "PUT",
        &format!("/fhir/Observation?_id={obs}"),
        Some(&changed),
    )
    .await
    .outcome(403);
    let replace = json!([{"op": "replace", "path": "/status", "value": "entered-in-error"}]);
    call_typed(
        &app,
        &away,
        "PATCH",
        &format!("/fhir/Observation/{obs}"),
        "application/json-patch+json",
        &[],
        Some(&replace),
    )
    .await
    .outcome(403);
    call(
        &app,
        &away,
        "DELETE",
        &format!("/fhir/Observation/{obs}"),
        None,
    )
    .await
    .outcome(403);
    call(
        &app,
        &away,
        "DELETE",
        &format!("/fhir/Observation?_id={obs}"),
        None,
    )
    .await
    .outcome(403);
    // Nor re-point it to a Patient of its own, in a transaction.
    let theirs = id_of(&app.create_as(&away, &patient("DOOR-C")).await);
    let mut moved = changed.clone();
    moved["subject"] = json!({"reference": format!("Patient/{theirs}")});
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": moved, "request": {"method": "PUT", "url": format!("Observation/{obs}")}}]});
    call(&app, &away, "POST", "/fhir", Some(&tx))
        .await
        .outcome(403);
    assert_eq!(version(&app, "Observation", &obs).await, "1");
    let history = app
        .get_as(&home, &format!("/fhir/Observation/{obs}/_history"))
        .await
        .json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 1, "{history}");

    // The institution that wrote it changes it.
    let r = call(
        &app,
        &home,
        "PUT",
        &format!("/fhir/Observation/{obs}"),
        Some(&changed),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(version(&app, "Observation", &obs).await, "2");
}

#[actix_rt::test]
async fn golden_residents_change_only_through_the_resident_index() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let mut p = patient("DOOR-G");
    p["managingOrganization"] = json!({"reference": "Organization/home"});
    let pid = id_of(&app.create_as(&home, &p).await);
    let everything = app
        .get_as(&admin, &format!("/fhir/Patient/{pid}/$everything"))
        .await
        .json();
    let golden = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient" && crate::helpers::is_golden(r))
        .unwrap()
        .clone();
    let gid = id_of(&golden);
    let mut changed = golden.clone();
    changed["gender"] = json!("male");
    for token in [&home, &admin] {
        let path = format!("/fhir/Patient/{gid}");
        refused(
            &call(&app, token, "PUT", &path, Some(&changed)).await,
            "resident index",
        );
        call(&app, token, "DELETE", &format!("/fhir/Patient/{gid}"), None)
            .await
            .outcome(403);
    }
    let now = app
        .get_as(&admin, &format!("/fhir/Patient/{gid}"))
        .await
        .json();
    assert_eq!(now["meta"]["versionId"], golden["meta"]["versionId"]);
}

#[actix_rt::test]
async fn the_institutions_a_consent_governs_never_write_it() {
    let app = spawn_app().await;
    let (pid, cond, _) = denied_resident(&app).await;
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let consents = app
        .get_as(&admin, &format!("/fhir/Consent?patient=Patient/{pid}"))
        .await
        .json();
    let cid = consents["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [app.his_of("away"), app.his_of("home")] {
        // Neither a newer permit nor a withdrawal of the deny.
        call(
            &app,
            &token,
            "POST",
            "/fhir/Consent",
            Some(&consent(&pid, "permit")),
        )
        .await
        .outcome(403);
        let mut withdrawn = consent(&pid, "deny");
        withdrawn["id"] = json!(cid);
        withdrawn["status"] = json!("inactive");
        call(
            &app,
            &token,
            "PUT",
            &format!("/fhir/Consent/{cid}"),
            Some(&withdrawn),
        )
        .await
        .outcome(403);
        call(
            &app,
            &token,
            "DELETE",
            &format!("/fhir/Consent/{cid}"),
            None,
        )
        .await
        .outcome(403);
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": consent(&pid, "permit"), "request": {"method": "POST", "url": "Consent"}}]});
        call(&app, &token, "POST", "/fhir", Some(&tx))
            .await
            .outcome(403);
    }
    // The deny still holds.
    app.get_as(&app.his_of("away"), &format!("/fhir/Condition/{cond}"))
        .await
        .outcome(404);
}

#[actix_rt::test]
async fn registering_a_resident_after_their_deny_opens_nothing() {
    let app = spawn_app().await;
    let (pid, cond, number) = denied_resident(&app).await;
    let away = app.his_of("away");
    // Away registers a Patient with the resident's ID number: it joins the same resident...
    let mut p = patient("DOOR-AWAY");
    p["identifier"] = json!([{"system": ID_CARD, "value": number}]);
    p["managingOrganization"] = json!({"reference": "Organization/away"});
    let theirs = id_of(&app.create_as(&away, &p).await);
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let linked = app
        .get_as(&admin, &format!("/fhir/Patient/{theirs}"))
        .await
        .json();
    let home_patient = app
        .get_as(&admin, &format!("/fhir/Patient/{pid}"))
        .await
        .json();
    let golden_of = |p: &Value| {
        p["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["type"] == "refer")
            .map(|l| l["other"]["reference"].clone())
    };
    assert_eq!(golden_of(&linked), golden_of(&home_patient));
    // Any later change of Consents has every view built again, from the registers as they are.
    let other = id_of(&app.create_as(&app.his_of("home"), &patient("DOOR-O")).await);
    app.create_as(&admin, &consent(&other, "permit")).await;
    // ...but does not become the resident's institution: the deny still holds for it.
    app.get_as(&away, &format!("/fhir/Condition/{cond}"))
        .await
        .outcome(404);
    let after = app
        .get_as(&away, "/fhir/Condition?_total=accurate")
        .await
        .json();
    assert_eq!(after["total"], 0, "{after}");
    let probe = format!("/fhir/Condition?patient.identifier={ID_CARD}|{number}&_total=accurate");
    assert_eq!(app.get_as(&away, &probe).await.json()["total"], 0);
    // Home, which registered the resident before the Consent, still sees the record.
    assert_eq!(version(&app, "Condition", &cond).await, "1");
}

#[actix_rt::test]
async fn criteria_reach_no_hidden_record_through_chains_and_has() {
    let app = spawn_app().await;
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let org = json!({"resourceType": "Organization", "id": "home", "name": "第一人民医院"});
    assert!(
        call(&app, &admin, "PUT", "/fhir/Organization/home", Some(&org))
            .await
            .status
            .is_success()
    );
    let (_, _, number) = denied_resident(&app).await;
    let away = app.his_of("away");
    // Which institution holds this ID number: a registry searched through the hidden Patient.
    let probe = format!(
        "/fhir/Organization?_has:Patient:organization:identifier={ID_CARD}|{number}&_total=accurate"
    );
    assert_eq!(app.get_as(&admin, &probe).await.json()["total"], 1);
    let r = app.get_as(&away, &probe).await;
    assert_eq!(r.json()["total"], 0, "{}", r.text());
    // Through a chain, and inside a batch and a search across types.
    let chained = format!("/fhir/Condition?patient.identifier={ID_CARD}|{number}&_total=accurate");
    let r = app.get_as(&away, &chained).await;
    assert_eq!(r.json()["total"], 0, "{}", r.text());
    let system =
        format!("/fhir?_type=Organization&_has:Patient:organization:identifier={ID_CARD}|{number}");
    let r = app.get_as(&away, &system).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["entry"].as_array().is_none_or(Vec::is_empty),
        "{}",
        r.text()
    );
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": probe.trim_start_matches("/fhir/")}}]});
    let r = call(&app, &away, "POST", "/fhir", Some(&batch))
        .await
        .json();
    assert_eq!(r["entry"][0]["response"]["status"], "200 OK", "{r}");
    assert!(
        r["entry"][0]["resource"]["entry"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{r}"
    );
}

#[actix_rt::test]
async fn includes_and_everything_return_only_types_the_token_may_read() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let mut p = patient("DOOR-S");
    p["managingOrganization"] = json!({"reference": "Organization/home"});
    let pid = id_of(&app.create_as(&home, &p).await);
    let subject = json!({"reference": format!("Patient/{pid}")});
    app.create_as(
        &home,
        &json!({"resourceType": "Observation", "status": "final",
                                 "code": {"text": "体温"}, "subject": subject}),
    )
    .await;
    app.create_as(
        &home,
        &json!({"resourceType": "Condition", "code": {"text": "高血压"},
                                 "subject": subject}),
    )
    .await;
    let token = |scope: &str| app.doctor_of("home", scope);
    let types = |b: &Value| -> Vec<String> {
        let mut t: Vec<String> = b["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let obs_only = token("user/Observation.rs");
    let r = app
        .get_as(&obs_only, "/fhir/Observation?_include=Observation:subject")
        .await;
    assert_eq!(types(&r.json()), ["Observation"], "{}", r.text());
    let patient_only = token("user/Patient.rs");
    let r = app
        .get_as(
            &patient_only,
            "/fhir/Patient?_revinclude=Condition:subject&_revinclude=Observation:subject",
        )
        .await;
    assert_eq!(types(&r.json()), ["Patient"], "{}", r.text());
    for op in ["$everything", "$summary"] {
        let r = app
            .get_as(&patient_only, &format!("/fhir/Patient/{pid}/{op}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            !r.text().contains("高血压") && !r.text().contains("体温"),
            "{op}: {}",
            r.text()
        );
    }
    let r = app
        .get_as(&patient_only, &format!("/fhir/Patient/{pid}/$everything"))
        .await;
    assert_eq!(types(&r.json()), ["Patient"], "{}", r.text());
    // A token that may read them gets them.
    let both = token("user/Patient.rs user/Condition.rs");
    let r = app
        .get_as(&both, &format!("/fhir/Patient/{pid}/$everything"))
        .await;
    assert_eq!(types(&r.json()), ["Condition", "Patient"], "{}", r.text());
}

#[actix_rt::test]
async fn the_resident_index_operations_show_only_what_a_read_would() {
    let app = spawn_app().await;
    let (pid, _, number) = denied_resident(&app).await;
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let away = app.his_of("away");
    // $match: name, birth date and sex of the denied resident.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient",
            "name": [{"family": "测试", "given": ["甲"]}], "gender": "female",
            "birthDate": "1980-01-01"}}]});
    let matched = call(&app, &admin, "POST", "/fhir/Patient/$match", Some(&params)).await;
    assert!(matched.text().contains(&number), "{}", matched.text());
    let r = call(&app, &away, "POST", "/fhir/Patient/$match", Some(&params)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 0, "{}", r.text());
    assert!(!r.text().contains(&number), "{}", r.text());
    // $ihe-pix: the ID number finds nothing the caller may see, as for an unknown one.
    let pix = |n: &str| format!("/fhir/Patient/$ihe-pix?sourceIdentifier={ID_CARD}|{n}");
    let listed = app.get_as(&admin, &pix(&number)).await;
    assert!(listed.text().contains(&pid), "{}", listed.text());
    let hidden = app.get_as(&away, &pix(&number)).await;
    let unknown = call(
        &app,
        &away,
        "GET",
        &pix(&id_number("510104", "19700101", 4)),
        None,
    )
    .await;
    hidden.outcome(404);
    assert_eq!(hidden.text(), unknown.text());
    // Once away registers the resident itself, it sees its own record but none of home's
    // record numbers.
    let mut p = patient("DOOR-AWAY");
    p["identifier"] = json!([{"system": ID_CARD, "value": number}]);
    p["managingOrganization"] = json!({"reference": "Organization/away"});
    let theirs = id_of(&app.create_as(&away, &p).await);
    let r = app.get_as(&away, &pix(&number)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&theirs), "{}", r.text());
    assert!(!r.text().contains(&pid), "{}", r.text());
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Patient/{theirs}"))
            .await
            .status,
        200
    );
}

/// A personal record without a resident (its subject given by identifier only, or a Patient not
/// pushed yet) is seen by the institution that wrote it and by administrators, never by other
/// institutions, whether or not any Consent exists.
#[actix_rt::test]
async fn records_without_a_resident_are_their_writers_alone() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let away = app.his_of("away");
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let number = id_number("510104", "19800101", 6);
    let by_identifier = id_of(
        &app.create_as(
            &home,
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
                    "subject": {"identifier": {"system": ID_CARD, "value": number}}}),
        )
        .await,
    );
    let before_patient = id_of(
        &app.create_as(
            &home,
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
                    "subject": {"reference": "Patient/not-pushed-yet"}}),
        )
        .await,
    );
    for id in [&by_identifier, &before_patient] {
        let path = format!("/fhir/Observation/{id}");
        assert_eq!(app.get_as(&home, &path).await.status, 200);
        assert_eq!(app.get_as(&admin, &path).await.status, 200);
        let hidden = app.get_as(&away, &path).await;
        hidden.outcome(404);
        assert!(!hidden.text().contains("血糖"));
    }
    let count = |tok: &str| {
        let tok = tok.to_owned();
        let app = &app;
        async move {
            app.get_as(&tok, "/fhir/Observation?_total=accurate")
                .await
                .json()["total"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(count(&home).await, 2);
    assert_eq!(count(&away).await, 0);
    // The same once some resident's Consent restricts something somewhere.
    let (_, _, _) = denied_resident(&app).await;
    assert_eq!(count(&away).await, 0);
    assert_eq!(count(&home).await, 2);
    app.get_as(&away, &format!("/fhir/Observation/{by_identifier}"))
        .await
        .outcome(404);
}

/// A resident's `$everything` as an administrator reads it, with the ids of its resources.
async fn everything_ids(app: &TestApp, admin: &str, golden: &str) -> (Value, Vec<String>) {
    let everything = app
        .get_as(admin, &format!("/fhir/Patient/{golden}/$everything"))
        .await
        .json();
    let ids = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect();
    (everything, ids)
}

/// The golden resident a stored institution Patient links to.
fn golden_of(p: &Value) -> String {
    p["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["type"] == "refer")
        .and_then(|l| l["other"]["reference"].as_str())
        .and_then(|r| r.strip_prefix("Patient/"))
        .unwrap_or_else(|| panic!("no resident link: {p}"))
        .to_owned()
}

/// Records written before their Patient (by identifier, or by a reference to a Patient not
/// stored yet) join the resident when the Patient arrives, in a later transaction; a record
/// that names a Patient already stored by identifier gets its resident at once; a record
/// written again to name another Patient no longer waits for the first.
#[actix_web::test]
async fn records_written_before_their_patient_join_the_resident_when_it_arrives() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let away = app.his_of("away");
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let number = id_number("510104", "19800101", 6);
    let obs = |subject: Value| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
               "subject": subject})
    };
    let by_number = id_of(
        &app.create_as(
            &home,
            &obs(json!({"identifier": {"system": ID_CARD, "value": number}})),
        )
        .await,
    );
    let by_reference = id_of(
        &app.create_as(&home, &obs(json!({"reference": "Patient/home-later"})))
            .await,
    );
    let moved = id_of(
        &app.create_as(&home, &obs(json!({"reference": "Patient/home-first"})))
            .await,
    );
    // Written again, it names another Patient: the first one's arrival leaves it alone.
    let mut again = obs(json!({"reference": "Patient/home-second"}));
    again["id"] = json!(moved);
    let put = call(
        &app,
        &home,
        "PUT",
        &format!("/fhir/Observation/{moved}"),
        Some(&again),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    for id in [&by_number, &by_reference, &moved] {
        app.get_as(&away, &format!("/fhir/Observation/{id}"))
            .await
            .outcome(404);
    }
    // Another institution registers the resident with the ID number: the record naming the
    // number joins.
    let mut clinic_patient = patient("C-1");
    clinic_patient["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": ID_CARD, "value": number}));
    let clinic = app.create_as(&app.his_of("clinic"), &clinic_patient).await;
    let golden = golden_of(&clinic);
    // Home's Patients arrive by PUT with the ids its records named.
    let put_patient = |id: &'static str, body: Value| {
        let (app, home) = (&app, &home);
        async move {
            let mut body = body;
            body["id"] = json!(id);
            let r = call(
                app,
                home,
                "PUT",
                &format!("/fhir/Patient/{id}"),
                Some(&body),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()
        }
    };
    let mut later = patient("H-1");
    later["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "urn:oid:2.16.156.10011.1.19", "value": number}));
    let later = put_patient("home-later", later).await;
    assert_eq!(golden_of(&later), golden, "same number, same resident");
    let first = put_patient("home-first", patient("H-2")).await;
    for id in [&by_number, &by_reference] {
        let r = app.get_as(&away, &format!("/fhir/Observation/{id}")).await;
        assert_eq!(r.status, 200, "linked records follow the regional default");
    }
    app.get_as(&away, &format!("/fhir/Observation/{moved}"))
        .await
        .outcome(404);
    let (everything, ids) = everything_ids(&app, &admin, &golden).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert!(ids.contains(&by_number.as_str()), "{everything}");
    assert!(ids.contains(&by_reference.as_str()), "{everything}");
    assert!(!ids.contains(&moved.as_str()));
    let second = put_patient("home-second", patient("H-3")).await;
    assert_ne!(golden_of(&second), golden_of(&first));
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{moved}"))
            .await
            .status,
        200
    );
    // A record naming a stored Patient by an identifier it carries has its resident at once.
    let at_once = id_of(
        &app.create_as(
            &home,
            &obs(json!({"identifier": {"system": "urn:oid:2.16.156.10011.1.13", "value": "H-1"}})),
        )
        .await,
    );
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{at_once}"))
            .await
            .status,
        200
    );
}

/// Personal types no search parameter ties to a patient get their resident from what they
/// are about: a Binary from its `securityContext`, a document Bundle from its Composition's
/// subject (a Patient entry of the document, known by its ID number). Before, they had none
/// and were their writer's alone.
#[actix_web::test]
async fn binaries_and_documents_belong_to_their_resident() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let away = app.his_of("away");
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let number = id_number("510104", "19800101", 8);
    let mut p = patient("H-9");
    p["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": ID_CARD, "value": number}));
    let stored = app.create_as(&home, &p).await;
    let pid = id_of(&stored);
    let golden = golden_of(&stored);
    let binary = id_of(
        &app.create_as(
            &home,
            &json!({"resourceType": "Binary", "contentType": "text/plain", "data": "5qOA5p+l",
                    "securityContext": {"reference": format!("Patient/{pid}")}}),
        )
        .await,
    );
    let document = id_of(
        &app.create_as(
            &home,
            &json!({"resourceType": "Bundle", "type": "document",
                    "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
                    "timestamp": "2026-12-01T08:00:00+08:00",
                    "entry": [
                        {"fullUrl": "urn:uuid:5e7d1a1c-0000-4000-8000-000000000001",
                         "resource": {"resourceType": "Composition", "status": "final",
                                      "type": {"text": "出院小结"}, "date": "2026-12-01",
                                      "title": "出院小结",
                                      "author": [{"display": "home"}],
                                      "subject": {"reference": "urn:uuid:5e7d1a1c-0000-4000-8000-000000000002"}}},
                        {"fullUrl": "urn:uuid:5e7d1a1c-0000-4000-8000-000000000002",
                         "resource": {"resourceType": "Patient",
                                      "identifier": [{"system": ID_CARD, "value": number}]}}]}),
        )
        .await,
    );
    let (everything, ids) = everything_ids(&app, &admin, &golden).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert!(ids.contains(&binary.as_str()), "{everything}");
    assert!(ids.contains(&document.as_str()), "{everything}");
    // Under the regional default another institution reads them like the rest of the record.
    for path in [
        format!("/fhir/Binary/{binary}"),
        format!("/fhir/Bundle/{document}"),
    ] {
        assert_eq!(app.get_as(&away, &path).await.status, 200, "{path}");
    }
}

/// A deleted record the caller may not see answers as an absent one (404, same text) to a read,
/// a vread and a batch's GET entry, never 410 Gone: a tombstone confirms nothing either. Its
/// writer is still told it is gone.
#[actix_web::test]
async fn a_deleted_hidden_record_answers_as_an_absent_one() {
    let app = spawn_app().await;
    let (_, cond, _) = denied_resident(&app).await;
    let home = app.his_of("home");
    let away = app.his_of("away");
    let deleted = call(
        &app,
        &home,
        "DELETE",
        &format!("/fhir/Condition/{cond}"),
        None,
    )
    .await;
    assert!(deleted.status.is_success(), "{}", deleted.text());
    let same = |hidden: &Reply, absent: &Reply| {
        assert_eq!(hidden.status, absent.status, "{}", hidden.text());
        assert_eq!(
            hidden.text().replace(&cond, "ID"),
            absent.text().replace(ABSENT, "ID")
        );
    };
    for path in [
        "/fhir/Condition/{}",
        "/fhir/Condition/{}/_history/2",
        "/fhir/Condition/{}/_history",
    ] {
        let hidden = app.get_as(&away, &path.replace("{}", &cond)).await;
        let absent = app.get_as(&away, &path.replace("{}", ABSENT)).await;
        assert_eq!(hidden.status, 404);
        same(&hidden, &absent);
        if !path.ends_with("_history") {
            assert_eq!(
                app.get_as(&home, &path.replace("{}", &cond)).await.status,
                410,
                "its writer is told it is gone"
            );
        }
    }
    let batch = |id: &str| {
        json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Condition/{id}")}},
            {"request": {"method": "GET", "url": format!("Condition/{id}/_history/2")}}]})
    };
    let hidden = call(&app, &away, "POST", "/fhir", Some(&batch(&cond)))
        .await
        .json();
    let absent = call(&app, &away, "POST", "/fhir", Some(&batch(ABSENT)))
        .await
        .json();
    for i in 0..2 {
        assert_eq!(
            hidden["entry"][i]["response"]["status"], absent["entry"][i]["response"]["status"],
            "{hidden}"
        );
        assert!(
            hidden["entry"][i]["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("404"),
            "{hidden}"
        );
    }
}
