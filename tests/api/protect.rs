//! Identifiers at rest: ID, health card and phone numbers are stored sealed with SM4 and found
//! through their blind index; clients see the values they sent; keys rotate.

use serde_json::{Value, json};

use crate::helpers::{FHIR_JSON, NOT_GOLDEN, TestApp, id_number, spawn_app, spawn_app_with};
use huimin::error::ApiError;
use huimin::store::record::raw;

const ID_CARD: &str = "urn:oid:2.16.156.10011.1.3";
const HEALTH_CARD: &str = "urn:oid:2.16.156.10011.1.19";
const PHONE: &str = "13912345678";

fn resident(number: &str, inst: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": format!("urn:his:{inst}:mrn"), "value": mrn},
            {"system": ID_CARD, "value": number},
            {"system": HEALTH_CARD, "value": number}
        ],
        "name": [{"text": "王测试"}],
        "gender": "male",
        "birthDate": format!("{}-{}-{}", &number[6..10], &number[10..12], &number[12..14]),
        "telecom": [
            {"system": "phone", "value": PHONE},
            {"system": "email", "value": "wang@example.cn"}
        ]
    })
}

/// Stored rows (resources, versions, token and text index, conditional-create keys) that hold
/// `needle` as it is.
fn stored_rows(app: &TestApp, needle: &str) -> i64 {
    app.store()
        .read(|c| raw::rows_holding(c, needle).map_err(ApiError::from))
        .unwrap()
}

/// The ids of the non-golden Patients a search finds.
async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .get(&format!("/fhir/Patient?{query}&{NOT_GOLDEN}"))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{query}: {}", r.text());
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn identifiers_are_sealed_at_rest_and_found_by_exact_value() {
    let app = spawn_app().await;
    let number = id_number("110105", "19850601", 317);
    let created = app.create(&resident(&number, "a", "A-1")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // The client gets back what it sent, on every way of reading it.
    assert_eq!(created["identifier"][1]["value"], number.as_str());
    for path in [
        format!("/fhir/Patient/{id}"),
        format!("/fhir/Patient/{id}/_history/1"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(
            r.json()["identifier"][2]["value"],
            number.as_str(),
            "{path}"
        );
        assert_eq!(r.json()["telecom"][0]["value"], PHONE, "{path}");
    }
    let history = app
        .get(&format!("/fhir/Patient/{id}/_history"))
        .await
        .text();
    assert!(history.contains(&number) && history.contains(PHONE));
    let xml = app
        .send(
            "GET",
            &format!("/fhir/Patient/{id}"),
            &[("Accept", "application/fhir+xml")],
            None,
        )
        .await
        .text();
    assert!(
        xml.contains(&format!("<value value=\"{number}\"/>")),
        "{xml}"
    );

    // Nothing stored holds them in the clear (the MRN and e-mail, not protected, are there).
    assert_eq!(stored_rows(&app, &number), 0);
    assert_eq!(stored_rows(&app, PHONE), 0);
    assert!(stored_rows(&app, "A-1") > 0);
    assert!(stored_rows(&app, "wang@example.cn") > 0);

    // Found by exact value, with or without the system, in either case of the check character.
    for query in [
        format!("identifier={ID_CARD}|{number}"),
        format!("identifier={HEALTH_CARD}|{number}"),
        format!("identifier={number}"),
        format!("identifier={}", number.to_lowercase()),
        format!("phone={PHONE}"),
        format!("telecom=phone|{PHONE}"),
        "identifier=urn:his:a:mrn|A-1".to_owned(),
    ] {
        assert_eq!(found(&app, &query).await, vec![id.clone()], "{query}");
    }
    assert!(
        found(&app, &format!("identifier=urn:his:a:mrn|{number}"))
            .await
            .is_empty()
    );
    assert!(found(&app, "phone=13900000000").await.is_empty());
    let total = app
        .get(&format!(
            "/fhir/Patient?identifier={number}&{NOT_GOLDEN}&_summary=count"
        ))
        .await
        .json();
    assert_eq!(total["total"], 1);

    // A conditional create by the ID number matches instead of creating a second Patient.
    let again = app
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("If-None-Exist", &format!("identifier={ID_CARD}|{number}")),
            ],
            Some(resident(&number, "a", "A-1").to_string().as_bytes()),
        )
        .await;
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    assert_eq!(again.json()["id"], id.as_str());

    // Another institution's record of the same person joins the same golden resident.
    let other = app.create(&resident(&number, "b", "B-9")).await;
    assert_eq!(other["link"], created["link"]);

    // The audit trail keeps the searched values blind too.
    let admin = app.token_for(huimin::auth::Role::Admin, "system/*.cruds");
    let audit = app.get_as(&admin, "/fhir/AuditEvent?_count=1000").await;
    assert_eq!(audit.status.as_u16(), 200);
    let audit = audit.text();
    assert!(
        audit.contains("identifier=") && audit.contains("bi:"),
        "{audit}"
    );
    for needle in [number.as_str(), PHONE] {
        if let Some(at) = audit.find(needle) {
            panic!(
                "{}",
                &audit[at.saturating_sub(300)..(at + 100).min(audit.len())]
            );
        }
    }
}

#[actix_web::test]
async fn transactions_resolve_conditional_references_by_protected_identifiers() {
    let app = spawn_app().await;
    let number = id_number("320102", "19700101", 21);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:7f9c2a52-0000-4000-8000-000000000001",
             "resource": resident(&number, "c", "C-1"),
             "request": {"method": "POST", "url": "Patient",
                         "ifNoneExist": format!("identifier={ID_CARD}|{number}")}},
            {"resource": {"resourceType": "Observation", "status": "final",
                          "code": {"text": "体温"},
                          "subject": {"reference": format!("Patient?identifier={ID_CARD}|{number}")}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    // Pushed twice: the second push matches the Patient and adds only the Observation.
    let mut patients = Vec::new();
    for _ in 0..2 {
        let r = app.post_json("/fhir", &bundle).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        let b = r.json();
        let loc = b["entry"][0]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned();
        patients.push(loc.split("/_history").next().unwrap().to_owned());
    }
    assert_eq!(patients[0], patients[1]);
    let obs = app
        .get(&format!("/fhir/Observation?subject={}", patients[0]))
        .await
        .json();
    assert_eq!(obs["entry"].as_array().unwrap().len(), 2, "{obs}");
    assert_eq!(stored_rows(&app, &number), 0);
}

#[actix_web::test]
async fn a_control_character_is_refused_naming_the_element() {
    let app = spawn_app().await;
    let mut p = resident(&id_number("110105", "19850601", 11), "a", "A-2");
    p["name"][0]["text"] = json!("王\u{1}sm4:kx:AAAA");
    let r = app.post_json("/fhir/Patient", &p).await;
    let outcome = r.outcome(400);
    assert!(
        outcome.to_string().contains("Patient.name[0].text"),
        "{outcome}"
    );
}

#[actix_web::test]
async fn keys_rotate_reencrypt_and_retire() {
    // No sealer: a key that chained audit records stays (see the test below).
    let app = crate::helpers::spawn_app_with(|s| s.audit_seal_interval_ms = 3_600_000).await;
    let number = id_number("440106", "19900909", 55);
    let created = app.create(&resident(&number, "d", "D-1")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = app.store().protection().key_ids()[0].to_owned();
    assert!(stored_rows(&app, &format!("sm4:{first}:")) > 0);

    let keys = |args: &[&str]| {
        let out = app.cli(&[&["keys"], args].concat());
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = keys(&["rotate"]);
    assert!(ok, "{out}");
    // The old key cannot go while it still protects something.
    let (ok, out) = keys(&["retire", &first]);
    assert!(!ok && out.contains("reencrypt"), "{out}");
    let (ok, out) = keys(&["reencrypt"]);
    assert!(ok, "{out}");
    assert!(out.contains("resident key(s) moved"), "{out}");
    assert_eq!(stored_rows(&app, &format!("sm4:{first}:")), 0);
    assert_eq!(stored_rows(&app, &format!("bi:{first}:")), 0);
    let (ok, out) = keys(&["retire", &first]);
    assert!(ok, "{out}");
    let (ok, out) = keys(&["list"]);
    assert!(
        ok && !out.contains(&first) && out.contains("active"),
        "{out}"
    );

    // A server started with the new keyring reads, searches and links as before.
    let url = app.database_url().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            app.settings.data_dir.join("huimin.db").display()
        )
    });
    let keyring = app.settings.keyring_path();
    let next = spawn_app_with(move |s| {
        s.database_url = Some(url.into());
        s.keyring_file = Some(keyring);
    })
    .await;
    let read = next.get(&format!("/fhir/Patient/{id}")).await.json();
    assert_eq!(read["identifier"][1]["value"], number.as_str());
    assert_eq!(
        found(&next, &format!("identifier={ID_CARD}|{number}")).await,
        vec![id]
    );
    assert_eq!(found(&next, &format!("phone={PHONE}")).await.len(), 1);
    let other = next.create(&resident(&number, "e", "E-1")).await;
    assert_eq!(
        other["link"], created["link"],
        "the resident key moved with the key"
    );
    assert_eq!(stored_rows(&next, &number), 0);
}

#[actix_web::test]
async fn a_server_with_another_keyring_is_refused_at_start_up() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = app.settings.clone();
    let url = app.database_url().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            app.settings.data_dir.join("huimin.db").display()
        )
    });
    settings.database_url = Some(url.into());
    // Its own data directory: a development keyring of its own would be generated there.
    settings.data_dir = dir.path().to_path_buf();
    let e = match huimin::startup::Application::build(settings) {
        Ok(_) => panic!("a server with another keyring started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("keyring holds none"), "{e}");
}

#[actix_web::test]
async fn a_key_that_chained_the_audit_trail_is_not_retired() {
    let app = crate::helpers::spawn_app_with(|s| s.audit_seal_interval_ms = 3_600_000).await;
    app.create(&resident(&id_number("440106", "19900909", 57), "e", "E-1"))
        .await;
    let first = app.store().protection().key_ids()[0].to_owned();
    huimin::services::audit::seal_committed(&app.store(), std::time::Duration::from_secs(30))
        .unwrap();
    let run = |args: &[&str]| {
        let out = app.cli(&[&["keys"], args].concat());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    assert!(run(&["rotate"]).0);
    assert!(run(&["reencrypt"]).0);
    let (ok, out) = run(&["retire", &first]);
    assert!(!ok && out.contains("audit"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(ok && out.contains(&first), "{out}");
}
