//! Consent: a resident's deny keeps other institutions out of their record (searches, totals,
//! direct reads, `$everything`), their own institution keeps seeing it, nested provisions
//! narrow by type, a change takes effect on the next request, and under an opt-in default
//! nothing is shared without a permit.

use huimin::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, patient, spawn_app, spawn_app_with};

/// A resident of `Organization/home` with one Observation and one Condition: (Patient id,
/// Observation id, Condition id).
async fn resident_of_home(app: &TestApp, mrn: &str, family: &str) -> (String, String, String) {
    let mut p = patient(mrn);
    p["name"] = json!([{"family": family, "given": ["丁"]}]);
    p["managingOrganization"] = json!({"reference": "Organization/home"});
    let pid = app.create_as(&app.his_of("home"), &p).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = json!({"reference": format!("Patient/{pid}")});
    let obs = app
        .create(&json!({"resourceType": "Observation", "status": "final",
                        "code": {"text": "血压"}, "subject": subject}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cond = app
        .create(
            &json!({"resourceType": "Condition", "code": {"text": "高血压"}, "subject": subject}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (pid, obs, cond)
}

fn consent(pid: &str, provision: Value) -> Value {
    crate::helpers::privacy_consent(pid, provision)
}

/// Record a Consent as the platform's administrator does on the resident's request (the
/// institutions a Consent governs never write it).
async fn give(app: &TestApp, consent: &Value) -> Value {
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    app.create_as(&admin, consent).await
}

/// A doctor's token at institution `org`.
fn doctor(app: &TestApp, org: &str) -> String {
    app.doctor_of(org, "user/*.rs")
}

async fn total(app: &TestApp, token: &str, path: &str) -> i64 {
    let r = app.get_as(token, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()["total"].as_i64().unwrap()
}

#[actix_rt::test]
async fn a_deny_keeps_other_institutions_out_and_takes_effect_at_once() {
    let app = spawn_app().await;
    let (a, a_obs, _) = resident_of_home(&app, "CON-A", "甲").await;
    let (_b, b_obs, _) = resident_of_home(&app, "CON-B", "乙").await;
    let away = doctor(&app, "away");
    let home = doctor(&app, "home");
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        2
    );

    let c = give(&app, &consent(&a, json!({"type": "deny"}))).await;
    // Another institution: A's data is gone from searches and totals, and direct reads answer
    // as for an absent record (404).
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_summary=count").await,
        1
    );
    let r = app
        .get_as(&away, &format!("/fhir/Observation/{a_obs}"))
        .await;
    r.outcome(404);
    assert!(!r.text().contains("血压"), "{}", r.text());
    app.get_as(&away, &format!("/fhir/Patient/{a}/$everything"))
        .await
        .outcome(404);
    // Reads inside a batch: A's entry is a 404 as for an absent record, B's is read; the audit
    // trail records only what was given.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Observation/{a_obs}")}},
        {"request": {"method": "GET", "url": format!("Observation/{b_obs}")}}]});
    let r = app
        .send(
            "POST",
            "/fhir",
            &[
                ("Authorization", format!("Bearer {away}").as_str()),
                ("Content-Type", "application/fhir+json"),
            ],
            Some(batch.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(
        answer["entry"][0]["response"]["status"], "404 Not Found",
        "{answer}"
    );
    assert!(
        answer["entry"][1]["resource"]["id"] == b_obs.as_str(),
        "{answer}"
    );
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let events = app
        .get_as(&admin, "/fhir/AuditEvent?_count=1000")
        .await
        .json();
    let batch_events: Vec<String> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .filter(|e| e["subtype"][0]["code"] == "batch")
        .map(|e| e.to_string())
        .collect();
    assert!(!batch_events.is_empty());
    assert!(
        batch_events.iter().any(|e| e.contains(&b_obs)),
        "{batch_events:?}"
    );
    assert!(
        batch_events.iter().all(|e| !e.contains(&a_obs)),
        "{batch_events:?}"
    );
    // History across resources leaves A's versions out.
    let h = app.get_as(&away, "/fhir/Observation/_history").await;
    assert_eq!(h.status, 200, "{}", h.text());
    assert!(
        !h.text().contains(&a_obs) && !h.text().contains(&a),
        "{}",
        h.text()
    );
    assert_eq!(h.json()["entry"].as_array().map_or(0, Vec::len), 1);
    // A's own institution still sees everything.
    assert_eq!(
        total(&app, &home, "/fhir/Observation?_total=accurate").await,
        2
    );
    assert_eq!(
        app.get_as(&home, &format!("/fhir/Observation/{a_obs}"))
            .await
            .status,
        200
    );
    // Withdrawn: the next request sees A again.
    let mut withdrawn = c.clone();
    withdrawn["status"] = json!("inactive");
    let id = c["id"].as_str().unwrap();
    // The institutions it governs cannot withdraw it; the administrator, on the resident's
    // request, can.
    let put = |token: String| {
        let (app, withdrawn) = (&app, &withdrawn);
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/fhir+json"),
            ];
            let body = withdrawn.to_string();
            app.send(
                "PUT",
                &format!("/fhir/Consent/{id}"),
                &headers,
                Some(body.as_bytes()),
            )
            .await
        }
    };
    put(away.clone()).await.outcome(403);
    put(home.clone()).await.outcome(403);
    assert_eq!(
        put(app.token_for(Role::Admin, "system/*.cruds"))
            .await
            .status,
        200
    );
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        2
    );
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{a_obs}"))
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn a_permit_with_a_nested_deny_hides_one_type() {
    let app = spawn_app().await;
    let (a, a_obs, a_cond) = resident_of_home(&app, "CON-N", "丙").await;
    give(
        &app,
        &consent(
            &a,
            json!({"type": "permit", "provision": [{"type": "deny",
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]}]}),
        ),
    )
    .await;
    let away = doctor(&app, "away");
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{a_obs}"))
            .await
            .status,
        200
    );
    app.get_as(&away, &format!("/fhir/Condition/{a_cond}"))
        .await
        .outcome(404);
    assert_eq!(
        total(&app, &away, "/fhir/Condition?_total=accurate").await,
        0
    );
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    // $everything and $summary leave the denied type out too.
    let all = app
        .get_as(&away, &format!("/fhir/Patient/{a}/$everything"))
        .await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert!(all.text().contains(&a_obs), "{}", all.text());
    assert!(
        !all.text().contains(&a_cond) && !all.text().contains("高血压"),
        "{}",
        all.text()
    );
    let summary = app
        .get_as(&away, &format!("/fhir/Patient/{a}/$summary"))
        .await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    assert!(!summary.text().contains("高血压"), "{}", summary.text());
    // The resident's own institution sees it all.
    let home = doctor(&app, "home");
    let all = app
        .get_as(&home, &format!("/fhir/Patient/{a}/$everything"))
        .await
        .text();
    assert!(all.contains(&a_cond), "{all}");
}

#[actix_rt::test]
async fn under_opt_in_nothing_is_shared_without_a_permit() {
    let app = spawn_app_with(|s| s.consent_default = huimin::config::ConsentDefault::OptIn).await;
    let (a, a_obs, _) = resident_of_home(&app, "CON-I", "戊").await;
    let away = doctor(&app, "away");
    let home = doctor(&app, "home");
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        0
    );
    app.get_as(&away, &format!("/fhir/Observation/{a_obs}"))
        .await
        .outcome(404);
    assert_eq!(
        total(&app, &home, "/fhir/Observation?_total=accurate").await,
        1
    );
    give(&app, &consent(&a, json!({"type": "permit"}))).await;
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{a_obs}"))
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn a_doctor_breaks_the_glass_with_a_stated_reason_and_the_resident_sees_it() {
    let app = spawn_app().await;
    let (a, a_obs, _) = resident_of_home(&app, "CON-G", "庚").await;
    give(&app, &consent(&a, json!({"type": "deny"}))).await;
    let away = doctor(&app, "away");
    let auth = format!("Bearer {away}");
    let path = format!("/fhir/Observation/{a_obs}");
    app.get_as(&away, &path).await.outcome(404);
    let emergency = |reason: &'static str| {
        let (auth, path, app) = (auth.clone(), path.clone(), &app);
        async move {
            app.send(
                "GET",
                &path,
                &[
                    ("Authorization", auth.as_str()),
                    ("X-Break-Glass-Reason", reason),
                ],
                None,
            )
            .await
        }
    };
    let (b, b_obs, _) = resident_of_home(&app, "CON-H", "辛").await;
    give(&app, &consent(&b, json!({"type": "deny"}))).await;
    let read = emergency("昏迷急诊，无法取得同意").await;
    assert_eq!(read.status, 200, "{}", read.text());
    emergency("   ").await.outcome(400);
    // For a bounded time the doctor keeps seeing that resident (and only that one), in
    // searches too; each access is audited as break-glass.
    let again = app.get_as(&away, &path).await;
    assert_eq!(again.status, 200, "{}", again.text());
    app.get_as(&away, &format!("/fhir/Observation/{b_obs}"))
        .await
        .outcome(404);
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    // Once the grant has run out, the deny holds again.
    app.store()
        .write(|c| {
            use diesel::prelude::*;
            use huimin::store::schema::break_glass as g;
            diesel::update(g::table)
                .set(g::expires.eq(huimin::clock::now_millis() - 1))
                .execute(c.conn())
                .map_err(huimin::error::ApiError::from)
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    app.get_as(&away, &path).await.outcome(404);
    // Only doctors break the glass.
    let his = format!("Bearer {}", app.token);
    app.send(
        "GET",
        &path,
        &[
            ("Authorization", his.as_str()),
            ("X-Break-Glass-Reason", "x"),
        ],
        None,
    )
    .await
    .outcome(403);
    // The resident lists the emergency accesses to their record, with the reason.
    let resident = app.token_as(
        "resident-g",
        Role::Resident,
        "patient/*.rs",
        Some(&format!("Patient/{a}")),
    );
    let listed = app.get_as(&resident, "/fhir/AuditEvent?purpose=BTG").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let events: Vec<Value> = listed.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    // The emergency read, the read and the search under the grant.
    assert_eq!(events.len(), 3, "{events:?}");
    let e = &events[0];
    assert_eq!(e["purposeOfEvent"][0]["coding"][1]["code"], "BTG", "{e}");
    assert_eq!(
        e["purposeOfEvent"][0]["text"], "昏迷急诊，无法取得同意",
        "{e}"
    );
    assert_eq!(
        e["agent"][0]["who"]["identifier"]["value"], "dr-away",
        "{e}"
    );
}

#[actix_rt::test]
async fn a_merge_carries_a_consent_to_the_merged_resident_at_once() {
    let app = spawn_app().await;
    let (x, _, _) = resident_of_home(&app, "MRG-X", "甲").await;
    let (y, _, _) = resident_of_home(&app, "MRG-Y", "乙").await;
    let away = doctor(&app, "away");
    give(&app, &consent(&x, json!({"type": "deny"}))).await;
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    let admin_token = app.token_for(Role::Admin, "system/*.cruds");
    let golden = |pid: String| {
        let (app, admin_token) = (&app, &admin_token);
        async move {
            let p = app
                .get_as(admin_token, &format!("/fhir/Patient/{pid}"))
                .await
                .json();
            p["link"][0]["other"]["reference"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (gx, gy) = (golden(x).await, golden(y).await);
    assert_ne!(gx, gy);
    let admin = format!("Bearer {admin_token}");
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": gx}},
        {"name": "target-patient", "valueReference": {"reference": gy}},
        {"name": "reason", "valueString": "同一人"}]});
    let r = app
        .send(
            "POST",
            "/fhir/Patient/$merge",
            &[
                ("Authorization", admin.as_str()),
                ("Content-Type", "application/fhir+json"),
            ],
            Some(params.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // X's deny now governs the merged resident: Y's record is hidden too, on the next request.
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        0
    );
}

#[actix_rt::test]
async fn a_stated_purpose_of_use_is_decided_by_consent_and_audited() {
    let app = spawn_app().await;
    let (a, a_obs, _) = resident_of_home(&app, "CON-P", "壬").await;
    // Shared for treatment, not for research.
    give(
        &app,
        &consent(
            &a,
            json!({"type": "permit", "provision": [{"type": "deny", "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}]}),
        ),
    )
    .await;
    let away = format!("Bearer {}", doctor(&app, "away"));
    let get = |path: String, purpose: Option<&'static str>| {
        let (app, away) = (&app, away.clone());
        async move {
            let mut headers = vec![("Authorization", away.as_str())];
            if let Some(p) = purpose {
                headers.push(("X-Purpose-Of-Use", p));
            }
            app.send("GET", &path, &headers, None).await
        }
    };
    let obs = format!("/fhir/Observation/{a_obs}");
    assert_eq!(get(obs.clone(), None).await.status, 200);
    assert_eq!(get(obs.clone(), Some("TREAT")).await.status, 200);
    assert_eq!(get(obs.clone(), Some("COC")).await.status, 200);
    get(obs.clone(), Some("HRESCH")).await.outcome(404);
    let research = get("/fhir/Observation?_total=accurate".into(), Some("HRESCH"))
        .await
        .json();
    assert_eq!(research["total"], 0, "{research}");
    // Emergencies are stated as such; unknown purposes are refused; residents state none.
    get(obs.clone(), Some("ETREAT")).await.outcome(400);
    get(obs.clone(), Some("SHOPPING")).await.outcome(400);
    let resident = app.token_as(
        "resident-p",
        Role::Resident,
        "patient/*.rs",
        Some(&format!("Patient/{a}")),
    );
    app.send(
        "GET",
        &obs,
        &[
            ("Authorization", format!("Bearer {resident}").as_str()),
            ("X-Purpose-Of-Use", "TREAT"),
        ],
        None,
    )
    .await
    .outcome(403);
    // The audit trail records the purpose stated.
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let audit = app
        .get_as(&admin, "/fhir/AuditEvent?_count=1000")
        .await
        .text();
    assert!(
        audit.contains("\"HRESCH\"") && audit.contains("\"COC\""),
        "{audit}"
    );
}

#[actix_rt::test]
async fn with_redis_a_consent_applies_in_another_server_process_at_once() {
    // Runs where a Redis is named (CI: the PostgreSQL + Redis suite).
    let Ok(redis) = std::env::var("HUIMIN_TEST_REDIS_URL") else {
        return;
    };
    // A decision cached for ten minutes: only Redis can make the change apply sooner.
    let r = redis.clone();
    let a = spawn_app_with(move |s| {
        s.redis_url = Some(r);
        s.consent_recheck_ms = 600_000;
    })
    .await;
    // The same database, reached by a URL written otherwise (other parameters; a path through
    // `.`): the processes still share one change channel.
    let url = match a.database_url() {
        Some(u) if u.contains('?') => format!("{u}&application_name=second"),
        Some(u) => format!("{u}?application_name=second"),
        None => format!(
            "sqlite://{}",
            a.settings.data_dir.join(".").join("huimin.db").display()
        ),
    };
    let keyring = a.settings.keyring_path();
    let b = spawn_app_with(move |s| {
        s.database_url = Some(url.into());
        s.keyring_file = Some(keyring);
        s.redis_url = Some(redis);
        s.consent_recheck_ms = 600_000;
    })
    .await;
    let (pid, _, _) = resident_of_home(&a, "CON-R", "癸").await;
    let away = doctor(&b, "away");
    assert_eq!(
        total(&b, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    give(&a, &consent(&pid, json!({"type": "deny"}))).await;
    let mut seen = 1;
    for _ in 0..50 {
        seen = total(&b, &away, "/fhir/Observation?_total=accurate").await;
        if seen == 0 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, 0,
        "the other process still showed the denied record after 5 s"
    );
}

#[actix_rt::test]
async fn sensitive_data_needs_a_permit_that_names_its_label() {
    let app = spawn_app().await;
    let (a, plain, _) = resident_of_home(&app, "CON-S", "子").await;
    let hiv = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]},
            "code": {"text": "HIV抗体"}, "subject": {"reference": format!("Patient/{a}")}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let away = doctor(&app, "away");
    let home = doctor(&app, "home");
    // No Consent at all: another institution sees the ordinary result, not the sensitive one.
    app.get_as(&away, &format!("/fhir/Observation/{hiv}"))
        .await
        .outcome(404);
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{plain}"))
            .await
            .status,
        200
    );
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    let all = app
        .get_as(&away, &format!("/fhir/Patient/{a}/$everything"))
        .await
        .text();
    assert!(all.contains(&plain) && !all.contains(&hiv), "{all}");
    // The resident's own institution sees it.
    assert_eq!(
        total(&app, &home, "/fhir/Observation?_total=accurate").await,
        2
    );
    // A diagnosis from the sensitive code lists (fhir-profiles/sensitive-codes.json) is
    // labelled on the way in and withheld the same way.
    let depression = app
        .create(&json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "F32.1"}],
                     "text": "中度抑郁发作"},
            "subject": {"reference": format!("Patient/{a}")}}))
        .await;
    assert_eq!(
        depression["meta"]["security"][0]["code"], "PSY",
        "{depression}"
    );
    let dep = depression["id"].as_str().unwrap();
    app.get_as(&away, &format!("/fhir/Condition/{dep}"))
        .await
        .outcome(404);
    assert_eq!(
        app.get_as(&home, &format!("/fhir/Condition/{dep}"))
            .await
            .status,
        200
    );
    // A permit that does not name the label is not enough; one that names it is.
    give(&app, &consent(&a, json!({"type": "permit"}))).await;
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        1
    );
    give(
        &app,
        &consent(
            &a,
            json!({"type": "permit", "securityLabel": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]}),
        ),
    )
    .await;
    assert_eq!(
        total(&app, &away, "/fhir/Observation?_total=accurate").await,
        2
    );
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{hiv}"))
            .await
            .status,
        200
    );
}

/// A guardian acts for a child with their own token (`fhirUser` the RelatedPerson): reads the
/// child's record and writes the child's Consents, naming themself as performer, which the
/// consent engine counts for a child under 14. A parent of an adult, an inactive RelatedPerson,
/// or one who is no guardian gets nothing; a guardian writes no Consent of another resident, or
/// without naming themself; the child cannot forge a guardian's Consent.
#[actix_rt::test]
async fn a_guardian_gives_a_childs_consent_with_their_own_token() {
    let app = spawn_app().await;
    let home = app.his_of("home");
    let (child, child_obs, _) = resident_of_home(&app, "GRD-C", "小").await;
    let mut born = patient("GRD-C");
    born["id"] = json!(child);
    born["name"] = json!([{"family": "小", "given": ["丁"]}]);
    born["birthDate"] = json!("2019-05-01");
    born["managingOrganization"] = json!({"reference": "Organization/home"});
    let put = app
        .send(
            "PUT",
            &format!("/fhir/Patient/{child}"),
            &[
                ("Authorization", &format!("Bearer {home}")),
                ("Content-Type", "application/fhir+json"),
            ],
            Some(born.to_string().as_bytes()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let (adult, _, _) = resident_of_home(&app, "GRD-A", "大").await;
    let related = |patient: &str, code: &str, active: bool| {
        json!({"resourceType": "RelatedPerson", "active": active,
               "patient": {"reference": format!("Patient/{patient}")},
               "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": code}]}],
               "name": [{"text": "丁母"}]})
    };
    let rp = |body: Value| {
        let (app, home) = (&app, &home);
        async move {
            app.create_as(home, &body).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mother = rp(related(&child, "MTH", true)).await;
    let of_adult = rp(related(&adult, "MTH", true)).await;
    let inactive = rp(related(&child, "MTH", false)).await;
    let friend = rp(related(&child, "FRND", true)).await;
    let token = |rp: &str| {
        app.token_as(
            &format!("guardian-{rp}"),
            Role::Resident,
            "patient/*.cruds",
            Some(&format!("RelatedPerson/{rp}")),
        )
    };
    let guardian = token(&mother);
    let r = app
        .get_as(&guardian, &format!("/fhir/Observation/{child_obs}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (rp, why) in [
        (&of_adult, "14 or older"),
        (&inactive, "not active"),
        (&friend, "no guardian"),
    ] {
        let r = app
            .get_as(&token(rp), &format!("/fhir/Observation/{child_obs}"))
            .await;
        let issue = r.outcome(403);
        assert!(
            issue["diagnostics"].as_str().unwrap().contains(why),
            "{issue}"
        );
    }
    let post = |token: &str, body: &Value| {
        let (app, auth) = (&app, format!("Bearer {token}"));
        let body = body.to_string();
        async move {
            app.send(
                "POST",
                "/fhir/Consent",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/fhir+json"),
                ],
                Some(body.as_bytes()),
            )
            .await
        }
    };
    let mut deny = consent(&child, json!({"type": "deny"}));
    let away = doctor(&app, "away");
    assert_eq!(
        app.get_as(&away, &format!("/fhir/Observation/{child_obs}"))
            .await
            .status,
        200
    );
    // Without naming themself, and for another resident: refused.
    let r = post(&guardian, &deny).await;
    assert!(
        r.outcome(403)["diagnostics"]
            .as_str()
            .unwrap()
            .contains("performer")
    );
    deny["performer"] = json!([{"reference": format!("RelatedPerson/{mother}")}]);
    let mut other = deny.clone();
    other["patient"] = json!({"reference": format!("Patient/{adult}")});
    let r = post(&guardian, &other).await;
    r.outcome(403);
    // The child's own token cannot give a Consent in the guardian's name.
    let own = app.token_as(
        "child",
        Role::Resident,
        "patient/*.cruds",
        Some(&format!("Patient/{child}")),
    );
    let r = post(&own, &deny).await;
    assert!(
        r.outcome(403)["diagnostics"]
            .as_str()
            .unwrap()
            .contains("performer")
    );
    // The guardian's deny, in their own name, keeps other institutions out at once.
    let given = app.create_as(&guardian, &deny).await;
    assert_eq!(given["resourceType"], "Consent", "{given}");
    app.get_as(&away, &format!("/fhir/Observation/{child_obs}"))
        .await
        .outcome(404);
}
