//! Two-way referral and remote consultation: referrals made by `$refer` and in a transaction,
//! malformed ones refused naming the element, the Task's state machine (each move allowed to
//! its side and refused to the other), access to the resident's record opening and closing
//! with the referral, a Consent that denies coordination of care, the overdue sweep, the
//! worklists, and a consultation's round trip.

use huimin::auth::Role;
use huimin::clock;
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TestApp, id_number, patient, privacy_consent, spawn_app, spawn_app_with,
};

const CATEGORY: &str = "urn:huimin:CodeSystem:request-category";

/// A community clinic, a city hospital and a third institution, each with a PractitionerRole;
/// a resident of the clinic with one Observation, whose Consent denies everyone but the
/// clinic (which registered them first).
pub(crate) struct City {
    pub pid: String,
    pub obs: String,
    pub clinic: String,
    pub hospital: String,
    pub clinic_role: String,
    pub hospital_role: String,
}

async fn institution(app: &TestApp, id: &str, category: &str) {
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let org = json!({
        "resourceType": "Organization", "id": id, "active": true, "name": id,
        "type": [{"coding": [{"system": "urn:huimin:institution-category", "code": category}]}]
    });
    let r = call(
        app,
        &admin,
        "PUT",
        &format!("/fhir/Organization/{id}"),
        &org,
    )
    .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
}

async fn role_at(app: &TestApp, org: &str) -> String {
    let role = json!({"resourceType": "PractitionerRole",
        "practitioner": {"reference": "Practitioner/p1"},
        "organization": {"reference": format!("Organization/{org}")}});
    app.create_as(&app.his_of(org), &role).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn city(app: &TestApp, seq: u32) -> City {
    institution(app, "clinic", "C210").await;
    institution(app, "hospital", "A100").await;
    institution(app, "third", "A100").await;
    let clinic = app.his_of("clinic");
    let mut p = patient(&format!("REF-{seq}"));
    p["managingOrganization"] = json!({"reference": "Organization/clinic"});
    p["identifier"].as_array_mut().unwrap().push(
        json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "19800101", seq * 2)}),
    );
    let pid = app.create_as(&clinic, &p).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let obs = app
        .create_as(
            &clinic,
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "血压"},
                    "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    app.create_as(&admin, &privacy_consent(&pid, json!({"type": "deny"})))
        .await;
    City {
        clinic_role: role_at(app, "clinic").await,
        hospital_role: role_at(app, "hospital").await,
        pid,
        obs,
        clinic,
        hospital: app.his_of("hospital"),
    }
}

pub(crate) async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> Reply {
    let auth = format!("Bearer {token}");
    app.send(
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .await
}

/// A GET stating purpose of use COC (coordination of care).
pub(crate) async fn get_coc(app: &TestApp, token: &str, path: &str) -> Reply {
    let auth = format!("Bearer {token}");
    app.send(
        "GET",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("X-Purpose-Of-Use", "COC"),
        ],
        None,
    )
    .await
}

pub(crate) fn request(c: &City, kind: &str, performer: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": CATEGORY, "code": kind}]}],
        "subject": {"reference": format!("Patient/{}", c.pid)},
        "requester": {"reference": format!("PractitionerRole/{}", c.clinic_role)},
        "performer": [{"reference": performer}],
        "reasonCode": [{"text": "血压控制不佳，转上级医院"}]
    })
}

/// `$refer` of `sr` with a deadline `deadline_ms` from now.
pub(crate) async fn refer(app: &TestApp, token: &str, sr: &Value, deadline_ms: i64) -> Reply {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "serviceRequest", "resource": sr},
        {"name": "deadline", "valueDateTime": clock::instant(clock::now_millis() + deadline_ms)}
    ]});
    call(app, token, "POST", "/fhir/ServiceRequest/$refer", &body).await
}

/// The Task `$refer` answered.
pub(crate) fn task_of(r: &Reply) -> Value {
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "task")
        .unwrap()["resource"]
        .clone()
}

/// PUT of `task` moved to `status`, changed by `change` too; the new Task on success.
pub(crate) async fn move_task(
    app: &TestApp,
    token: &str,
    task: &Value,
    status: &str,
    change: impl FnOnce(&mut Value),
) -> Reply {
    let mut t = task.clone();
    t["status"] = json!(status);
    change(&mut t);
    let id = t["id"].as_str().unwrap().to_owned();
    call(app, token, "PUT", &format!("/fhir/Task/{id}"), &t).await
}

/// A document of the resident written by `token`'s institution: a return slip.
pub(crate) async fn return_slip(app: &TestApp, token: &str, pid: &str) -> String {
    app.create_as(
        token,
        &json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"text": "回转单：诊断、检查结果、治疗经过、下一步方案"},
            "subject": {"reference": format!("Patient/{pid}")},
            "content": [{"attachment": {"contentType": "text/plain", "data": "5Zue6L2s5Y2V"}}]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn diagnostics(r: &Reply) -> String {
    r.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[actix_rt::test]
async fn a_referral_opens_the_receivers_access_for_coordination_of_care_until_it_ends() {
    let app = spawn_app().await;
    let c = city(&app, 11).await;
    let doctor = app.doctor_of("hospital", "user/*.rs");
    let obs = format!("/fhir/Observation/{}", c.obs);
    // The resident's Consent keeps the hospital out.
    get_coc(&app, &doctor, &obs).await.outcome(404);

    let r = refer(
        &app,
        &c.clinic,
        &request(&c, "referral-up", "Organization/hospital"),
        86_400_000,
    )
    .await;
    let task = task_of(&r);
    assert_eq!(task["status"], "requested");
    assert_eq!(task["owner"]["reference"], "Organization/hospital");
    assert!(task["restriction"]["period"]["end"].is_string(), "{task}");
    let tid = task["id"].as_str().unwrap().to_owned();

    // For coordination of care the hospital's doctor reads the record, and only so.
    let read = get_coc(&app, &doctor, &obs).await;
    assert_eq!(read.status, 200, "{}", read.text());
    app.get_as(&doctor, &obs).await.outcome(404);
    let found = get_coc(
        &app,
        &doctor,
        &format!("/fhir/Observation?patient={}", c.pid),
    )
    .await;
    assert_eq!(found.json()["entry"].as_array().map(Vec::len), Some(1));
    // Another institution still sees nothing.
    let third = app.doctor_of("third", "user/*.rs");
    get_coc(&app, &third, &obs).await.outcome(404);

    // The resident sees their agreement to the hospital's access, and who read under it.
    let resident = app.token_as(
        "resident-ref",
        Role::Resident,
        "patient/*.rs",
        Some(&format!("Patient/{}", c.pid)),
    );
    let consents = app
        .get_as(&resident, "/fhir/Consent?_count=50")
        .await
        .json();
    let agreement = consents["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|c| c["sourceReference"]["reference"] == format!("Task/{tid}"))
        .cloned()
        .unwrap_or_else(|| panic!("no agreement: {consents}"));
    assert_eq!(agreement["provision"]["purpose"][0]["code"], "COC");
    assert_eq!(
        agreement["provision"]["actor"][0]["reference"]["reference"],
        "Organization/hospital"
    );
    let trail = app
        .get_as(&resident, "/fhir/AuditEvent?_count=200")
        .await
        .json();
    let under = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|e| e["purposeOfEvent"][0]["text"] == format!("Task/{tid}"))
        .count();
    assert!(under >= 2, "{trail}");

    // Cancelled by the clinic: the access ends.
    let cancelled = move_task(&app, &c.clinic, &task, "cancelled", |_| {}).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    get_coc(&app, &doctor, &obs).await.outcome(404);
}

#[actix_rt::test]
async fn a_completed_referral_keeps_the_access_for_its_window_only() {
    let app = spawn_app_with(|s| s.referral_access_days = 0).await;
    let c = city(&app, 12).await;
    let doctor = app.doctor_of("hospital", "user/*.rs");
    let obs = format!("/fhir/Observation/{}", c.obs);
    let task = task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    let h = &c.hospital;
    let task = move_task(&app, h, &task, "received", |_| {}).await.json();
    let task = move_task(&app, h, &task, "accepted", |_| {}).await.json();
    let task = move_task(&app, h, &task, "in-progress", |_| {})
        .await
        .json();
    assert!(task["executionPeriod"]["start"].is_string(), "{task}");
    assert_eq!(get_coc(&app, &doctor, &obs).await.status, 200);
    let slip = return_slip(&app, h, &c.pid).await;
    let done = move_task(&app, h, &task, "completed", |t| {
        t["output"] = json!([{"type": {"text": "回转单"}, "valueReference": {"reference": format!("DocumentReference/{slip}")}}]);
    })
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.json()["executionPeriod"]["end"].is_string());
    // No days of access after completion here: it has ended.
    get_coc(&app, &doctor, &obs).await.outcome(404);
}

#[actix_rt::test]
async fn each_move_of_the_task_is_its_sides_and_others_are_409() {
    let app = spawn_app().await;
    let c = city(&app, 13).await;
    let (clinic, h) = (&c.clinic, &c.hospital);
    let task = task_of(
        &refer(
            &app,
            clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    // The requester does not accept its own referral; the receiver does not cancel it.
    let r = move_task(&app, clinic, &task, "accepted", |_| {}).await;
    r.outcome(403);
    assert!(
        diagnostics(&r).contains("Organization/hospital"),
        "{}",
        r.text()
    );
    move_task(&app, h, &task, "cancelled", |_| {})
        .await
        .outcome(403);
    // A move the machine does not have names both states.
    let r = move_task(&app, h, &task, "completed", |_| {}).await;
    let issue = r.outcome(409);
    assert_eq!(issue["code"], "business-rule");
    assert!(
        diagnostics(&r).contains("from requested to completed"),
        "{}",
        r.text()
    );
    // Fixed elements stay fixed.
    let r = move_task(&app, h, &task, "received", |t| {
        t["owner"] = json!({"reference": "Organization/third"});
    })
    .await;
    assert_eq!(r.outcome(422)["expression"][0], "Task.owner");
    // A rejection says why.
    let received = move_task(&app, h, &task, "received", |_| {}).await.json();
    let r = move_task(&app, h, &received, "rejected", |_| {}).await;
    assert_eq!(r.outcome(422)["expression"][0], "Task.statusReason");
    let rejected = move_task(&app, h, &received, "rejected", |t| {
        t["statusReason"] = json!({"text": "本院无床位"});
    })
    .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text());
    let rejected = rejected.json();
    // Nothing moves out of rejected; a third institution, which may not see the resident, is
    // answered as for an absent Task; no delete.
    let r = move_task(&app, h, &rejected, "accepted", |_| {}).await;
    assert!(
        diagnostics(&r).contains("from rejected to accepted"),
        "{}",
        r.text()
    );
    let third = app.his_of("third");
    let id = rejected["id"].as_str().unwrap();
    let hidden = move_task(&app, &third, &rejected, "cancelled", |_| {}).await;
    hidden.outcome(404);
    assert!(!hidden.text().contains("rejected"), "{}", hidden.text());
    let del = app
        .send(
            "DELETE",
            &format!("/fhir/Task/{id}"),
            &[("Authorization", &format!("Bearer {clinic}"))],
            None,
        )
        .await;
    del.outcome(409);

    // Completing needs the return slip.
    let task = task_of(
        &refer(
            &app,
            clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    let task = move_task(&app, h, &task, "accepted", |_| {}).await.json();
    let task = move_task(&app, h, &task, "in-progress", |t| {
        t["businessStatus"] = json!({"coding": [{"system": "urn:huimin:CodeSystem:task-business-status", "code": "arrived"}]});
    })
    .await
    .json();
    let r = move_task(&app, h, &task, "completed", |_| {}).await;
    assert_eq!(r.outcome(422)["expression"][0], "Task.output");
    assert!(diagnostics(&r).contains("return slip"), "{}", r.text());
    // A document of another resident is no return slip.
    let mut o = patient("REF-OTHER");
    o["identifier"].as_array_mut().unwrap().push(
        json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "19800101", 28)}),
    );
    let other = app.create_as(clinic, &o).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = return_slip(&app, h, &other).await;
    let r = move_task(&app, h, &task, "completed", |t| {
        t["output"] = json!([{"type": {"text": "回转单"}, "valueReference": {"reference": format!("DocumentReference/{foreign}")}}]);
    })
    .await;
    r.outcome(422);
    // A JSON Patch moves it too, by the same rules.
    let slip = return_slip(&app, h, &c.pid).await;
    let patch = json!([
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output", "value": [{"type": {"text": "回转单"}, "valueReference": {"reference": format!("DocumentReference/{slip}")}}]}
    ]);
    let id = task["id"].as_str().unwrap();
    let r = app
        .send(
            "PATCH",
            &format!("/fhir/Task/{id}"),
            &[
                ("Authorization", &format!("Bearer {h}")),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(patch.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "completed");
    // The Task stays the clinic's record: the clinic reads it and may still change its notes.
    let stored = app.get_as(clinic, &format!("/fhir/Task/{id}")).await;
    assert_eq!(stored.json()["status"], "completed");
    app.assert_stat_cells_exact();
}

#[actix_rt::test]
async fn a_malformed_referral_is_422_naming_the_element_and_writes_nothing() {
    let app = spawn_app().await;
    let c = city(&app, 15).await;
    let clinic = &c.clinic;
    let cases = [
        (
            {
                let mut sr = request(&c, "referral-up", "Organization/hospital");
                sr.as_object_mut().unwrap().remove("performer");
                sr
            },
            "ServiceRequest.performer",
        ),
        (
            request(&c, "referral-up", "Organization/nowhere"),
            "ServiceRequest.performer[0]",
        ),
        (
            request(&c, "referral-up", "Practitioner/p1"),
            "ServiceRequest.performer[0]",
        ),
        (
            {
                let mut sr = request(&c, "referral-up", "Organization/hospital");
                sr["subject"] = json!({"reference": "Patient/no-such-patient"});
                sr
            },
            "ServiceRequest.subject",
        ),
        (
            {
                let mut sr = request(&c, "referral-up", "Organization/hospital");
                sr["requester"] =
                    json!({"reference": format!("PractitionerRole/{}", c.hospital_role)});
                sr
            },
            "ServiceRequest.requester",
        ),
    ];
    for (sr, element) in cases {
        let r = refer(&app, clinic, &sr, 86_400_000).await;
        assert_eq!(r.outcome(422)["expression"][0], element, "{}", r.text());
    }
    // In a transaction: the Task must be owned by a receiver of its request.
    let mut task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "focus": {"reference": "urn:uuid:6a4b1f9e-0000-4000-8000-000000000001"},
        "for": {"reference": format!("Patient/{}", c.pid)},
        "owner": {"reference": "Organization/third"}});
    let mut bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a4b1f9e-0000-4000-8000-000000000001",
         "resource": request(&c, "referral-up", "Organization/hospital"),
         "request": {"method": "POST", "url": "ServiceRequest"}},
        {"resource": task, "request": {"method": "POST", "url": "Task"}}]});
    let r = call(&app, clinic, "POST", "/fhir", &bundle).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("Task.owner"), "{}", r.text());
    // Nothing was written.
    let none = app
        .get_as(clinic, "/fhir/ServiceRequest?_summary=count")
        .await
        .json();
    assert_eq!(none["total"], 0, "{none}");
    // Made right, the same transaction is a referral.
    task["owner"] = json!({"reference": "Organization/hospital"});
    bundle["entry"][1]["resource"] = task;
    let r = call(&app, clinic, "POST", "/fhir", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doctor = app.doctor_of("hospital", "user/*.rs");
    assert_eq!(
        get_coc(&app, &doctor, &format!("/fhir/Observation/{}", c.obs))
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn a_consent_denying_coordination_of_care_refuses_the_referral() {
    let app = spawn_app().await;
    let c = city(&app, 16).await;
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let mut deny = privacy_consent(
        &c.pid,
        json!({"type": "deny", "provision": [{"type": "deny", "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}]}]}),
    );
    deny["dateTime"] = json!("2026-06-01");
    app.create_as(&admin, &deny).await;
    let r = refer(
        &app,
        &c.clinic,
        &request(&c, "referral-up", "Organization/hospital"),
        86_400_000,
    )
    .await;
    r.outcome(403);
    assert!(diagnostics(&r).contains("COC"), "{}", r.text());
    let none = app
        .get_as(&c.clinic, "/fhir/ServiceRequest?_summary=count")
        .await
        .json();
    assert_eq!(none["total"], 0, "{none}");
    // A caller that may not see the resident learns nothing: the same answer as for a Patient
    // that does not exist.
    let third = app.his_of("third");
    let mut theirs = request(&c, "referral-up", "Organization/hospital");
    theirs["requester"] = json!(null);
    theirs.as_object_mut().unwrap().remove("requester");
    let hidden = refer(&app, &third, &theirs, 86_400_000).await;
    theirs["subject"] = json!({"reference": "Patient/no-such-patient"});
    let absent = refer(&app, &third, &theirs, 86_400_000).await;
    assert_eq!(hidden.status, 422);
    assert_eq!(hidden.json()["issue"], absent.json()["issue"]);
}

#[actix_rt::test]
async fn the_sweep_flags_referrals_not_accepted_by_their_deadline_and_worklists_find_them() {
    let app = spawn_app_with(|s| s.referral_sweep_ms = 100).await;
    let c = city(&app, 17).await;
    let late = task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            300,
        )
        .await,
    );
    let timely = task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    let h = &c.hospital;
    let mut flagged = Value::Null;
    for _ in 0..50 {
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        flagged = get_coc(&app, h, "/fhir/Task?business-status=overdue")
            .await
            .json();
        if flagged["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
    }
    let ids: Vec<&str> = flagged["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("nothing flagged: {flagged}"))
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [late["id"].as_str().unwrap()]);
    // The receiver's inbox, newest first, with the requests and the residents.
    let inbox = get_coc(
        &app,
        h,
        "/fhir/Task?owner=Organization/hospital&status=requested,received,accepted&_sort=-authored-on&_include=Task:focus&_include=Task:patient",
    )
    .await
    .json();
    let entries = inbox["entry"].as_array().unwrap();
    let of = |t: &str| {
        entries
            .iter()
            .filter(|e| e["resource"]["resourceType"] == t)
            .count()
    };
    assert_eq!(
        (of("Task"), of("ServiceRequest"), of("Patient")),
        (2, 2, 1),
        "{inbox}"
    );
    assert_eq!(entries[0]["resource"]["id"], timely["id"]);
    // The sender's outbox.
    let outbox = app
        .get_as(
            &c.clinic,
            &format!("/fhir/Task?requester=PractitionerRole/{}", c.clinic_role),
        )
        .await
        .json();
    assert_eq!(
        outbox["entry"].as_array().map(Vec::len),
        Some(2),
        "{outbox}"
    );
}

#[actix_rt::test]
async fn a_consultation_goes_to_the_specialist_and_comes_back_with_the_reply() {
    let app = spawn_app().await;
    let c = city(&app, 18).await;
    let specialist = format!("PractitionerRole/{}", c.hospital_role);
    let task = task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "consultation", &specialist),
            86_400_000,
        )
        .await,
    );
    assert_eq!(task["owner"]["reference"], specialist);
    // The specialist reads the record for the consultation.
    let doctor = app.doctor_of("hospital", "user/*.rs");
    assert_eq!(
        get_coc(&app, &doctor, &format!("/fhir/Observation/{}", c.obs))
            .await
            .status,
        200
    );
    let h = &c.hospital;
    let task = move_task(&app, h, &task, "accepted", |_| {}).await.json();
    let task = move_task(&app, h, &task, "in-progress", |_| {})
        .await
        .json();
    // A consultation completes with its reply.
    let slip = move_task(&app, h, &task, "completed", |_| {}).await;
    assert!(diagnostics(&slip).contains("reply"), "{}", slip.text());
    let reply = app
        .create_as(
            h,
            &json!({"resourceType": "Communication", "status": "completed",
                "subject": {"reference": format!("Patient/{}", c.pid)},
                "payload": [{"contentString": "建议调整降压方案，两周后复诊"}]}),
        )
        .await;
    let rid = reply["id"].as_str().unwrap();
    let done = move_task(&app, h, &task, "completed", |t| {
        t["output"] = json!([{"type": {"text": "会诊意见"}, "valueReference": {"reference": format!("Communication/{rid}")}}]);
    })
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    // The requester sees the Task completed and reads the reply.
    let id = task["id"].as_str().unwrap();
    let seen = app
        .get_as(&c.clinic, &format!("/fhir/Task/{id}"))
        .await
        .json();
    assert_eq!(seen["status"], "completed");
    let read = app
        .get_as(&c.clinic, &format!("/fhir/Communication/{rid}"))
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert!(read.text().contains("两周后复诊"));
}

#[actix_rt::test]
async fn refer_books_a_referral_place_in_the_same_step_or_nothing() {
    let app = spawn_app().await;
    let c = city(&app, 19).await;
    let h = &c.hospital;
    let schedule = app
        .create_as(
            h,
            &json!({"resourceType": "Schedule",
                "actor": [{"reference": format!("PractitionerRole/{}", c.hospital_role)}],
                "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // One place, kept for referrals; the public books only from tomorrow.
    let start = clock::now_millis() + 5 * 86_400_000;
    let slot = app
        .create_as(
            h,
            &json!({"resourceType": "Slot", "status": "free",
                "extension": [
                    {"url": "urn:huimin:StructureDefinition:slot-capacity", "valueInteger": 1},
                    {"url": "urn:huimin:StructureDefinition:slot-referral-reserve", "valueInteger": 1},
                    {"url": "urn:huimin:StructureDefinition:slot-release", "valueDateTime": clock::instant(clock::now_millis() + 86_400_000)}],
                "schedule": {"reference": format!("Schedule/{schedule}")},
                "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}],
                "start": clock::instant(start), "end": clock::instant(start + 900_000)}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let appointment = json!({"resourceType": "Appointment", "status": "proposed",
        "slot": [{"reference": format!("Slot/{slot}")}],
        "participant": [{"actor": {"reference": format!("Patient/{}", c.pid)}, "status": "needs-action"}]});
    let body = |sr: Value| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "serviceRequest", "resource": sr},
            {"name": "appointment", "resource": appointment.clone()}]})
    };
    let path = "/fhir/ServiceRequest/$refer";
    let r = call(
        &app,
        &c.clinic,
        "POST",
        path,
        &body(request(&c, "referral-up", "Organization/hospital")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let out = r.json();
    let booked = out["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "appointment")
        .unwrap_or_else(|| panic!("{out}"))["resource"]
        .clone();
    assert_eq!(booked["status"], "booked");
    let sr = out["parameter"][0]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        booked["basedOn"][0]["reference"],
        format!("ServiceRequest/{sr}")
    );
    // The place is gone: a second referral with a booking fails whole, nothing of it stays.
    let before = app
        .get_as(&c.clinic, "/fhir/Task?_summary=count")
        .await
        .json()["total"]
        .clone();
    let r = call(
        &app,
        &c.clinic,
        "POST",
        path,
        &body(request(&c, "referral-up", "Organization/hospital")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let after = app
        .get_as(&c.clinic, "/fhir/Task?_summary=count")
        .await
        .json()["total"]
        .clone();
    assert_eq!(before, after);
    app.assert_stat_cells_exact();
}
