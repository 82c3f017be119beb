//! Access by role: a resident sees only their own record, an official no individual's data;
//! searches are filtered before paging (totals and includes too) and a hidden resource's
//! direct read answers as for an absent resource.

use huimin::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, patient, spawn_app};

/// Two residents with distinct demographics, each with one Observation:
/// (my Patient, my Observation, their Patient, their Observation).
async fn two_residents(app: &TestApp) -> (String, String, String, String) {
    let me = app.create(&patient("ACC-1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p2 = patient("ACC-2");
    p2["name"] = json!([{"family": "欧阳", "given": ["丙"]}]);
    p2["gender"] = json!("male");
    p2["birthDate"] = json!("1955-09-09");
    let them = app.create(&p2).await["id"].as_str().unwrap().to_owned();
    let obs = |p: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "体温"},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let my_obs = app.create(&obs(&me)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_obs = app.create(&obs(&them)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (me, my_obs, them, their_obs)
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

#[actix_rt::test]
async fn a_resident_reads_and_searches_only_their_own_record() {
    let app = spawn_app().await;
    let (me, my_obs, them, their_obs) = two_residents(&app).await;
    let org = app
        .create(&json!({"resourceType": "Organization", "name": "第一社区卫生服务中心"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = app.token_as(
        "resident-acc",
        Role::Resident,
        "patient/*.cruds",
        Some(&format!("Patient/{me}")),
    );
    let get = |path: String| {
        let tok = tok.clone();
        let app = &app;
        async move { app.get_as(&tok, &path).await }
    };

    // Searches: only my record, totals and includes included.
    let found = get("/fhir/Observation?_total=accurate&_include=Observation:subject".into())
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
    let listed = ids(&found);
    assert!(
        listed.contains(&format!("Observation/{my_obs}")),
        "{listed:?}"
    );
    assert!(listed.contains(&format!("Patient/{me}")), "{listed:?}");
    assert!(
        !listed
            .iter()
            .any(|r| r.ends_with(&them) || r.ends_with(&their_obs)),
        "{listed:?}"
    );
    let counted = get("/fhir/Observation?_summary=count".into()).await.json();
    assert_eq!(counted["total"], 1, "{counted}");
    let patients = ids(&get("/fhir/Patient?_count=50".into()).await.json());
    assert!(
        !patients.contains(&format!("Patient/{them}")),
        "{patients:?}"
    );
    assert!(patients.contains(&format!("Patient/{me}")), "{patients:?}");
    let compartment = get(format!("/fhir/Patient/{them}/Observation?_total=accurate"))
        .await
        .json();
    assert_eq!(compartment["total"], 0, "{compartment}");
    // Registries stay visible.
    assert_eq!(get(format!("/fhir/Organization/{org}")).await.status, 200);
    assert_eq!(
        get("/fhir/Organization?_total=accurate".into())
            .await
            .json()["total"],
        1
    );

    // Direct reads: mine 200; theirs answered exactly as an absent record is (404), so that
    // not even their existence shows.
    assert_eq!(get(format!("/fhir/Observation/{my_obs}")).await.status, 200);
    assert_eq!(get(format!("/fhir/Patient/{me}")).await.status, 200);
    for path in [
        format!("/fhir/Observation/{their_obs}"),
        format!("/fhir/Observation/{their_obs}/_history/1"),
        format!("/fhir/Observation/{their_obs}/_history"),
        format!("/fhir/Patient/{them}"),
        format!("/fhir/Patient/{them}/$everything"),
        format!("/fhir/Patient/{them}/$summary"),
    ] {
        let r = get(path.clone()).await;
        let issue = r.outcome(404);
        assert!(!r.text().contains("体温"), "{path}: {}", r.text());
        assert!(issue["diagnostics"].as_str().is_some(), "{path}");
        let absent_id = "0190aaaa-0000-7000-8000-000000000000";
        let absent = get(path
            .replace(&their_obs, absent_id)
            .replace(&them, absent_id))
        .await;
        assert_eq!(
            r.text().replace(&their_obs, "ID").replace(&them, "ID"),
            absent.text().replace(absent_id, "ID"),
            "{path}"
        );
    }
    assert_eq!(
        get(format!("/fhir/Patient/{me}/$everything")).await.status,
        200
    );
    assert_eq!(
        get(format!("/fhir/Observation/{my_obs}/_history"))
            .await
            .status,
        200
    );
    // History across resources shows only my own record's versions (and registries').
    for path in ["/fhir/Observation/_history", "/fhir/_history"] {
        let h = get(path.into()).await;
        assert_eq!(h.status, 200, "{path}: {}", h.text());
        let text = h.text();
        assert!(text.contains(&my_obs), "{path}: {text}");
        assert!(!text.contains(&their_obs), "{path}: {text}");
        assert!(!text.contains(&them), "{path}: {text}");
    }
    // The resident index is not for residents.
    get("/fhir/Patient/$ihe-pix?sourceIdentifier=urn:oid:2.16.156.10011.1.13|ACC-2".into())
        .await
        .outcome(403);

    // Writes: only Consents about myself.
    let auth = format!("Bearer {tok}");
    let post = |path: &'static str, body: Value| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.send(
                "POST",
                path,
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/fhir+json"),
                ],
                Some(body.to_string().as_bytes()),
            )
            .await
        }
    };
    let consent = |p: &str| {
        json!({"resourceType": "Consent", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
               "patient": {"reference": format!("Patient/{p}")},
               "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}})
    };
    let mine = post("/fhir/Consent", consent(&me)).await;
    assert_eq!(mine.status, 201, "{}", mine.text());
    post("/fhir/Consent", consent(&them)).await.outcome(403);
    post(
        "/fhir/Observation",
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
    )
    .await
    .outcome(403);
    post(
        "/fhir",
        json!({"resourceType": "Bundle", "type": "batch", "entry": []}),
    )
    .await
    .outcome(403);
}

#[actix_rt::test]
async fn an_official_sees_no_individual_resource() {
    let app = spawn_app().await;
    let (me, my_obs, _, _) = two_residents(&app).await;
    let org = app
        .create(&json!({"resourceType": "Organization", "name": "区卫生健康委员会"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = app.token_as("official-1", Role::Official, "user/*.rs", None);
    // A search of a type holding personal data is refused as its reads are, whatever the
    // criteria (not even an empty page says something).
    app.get_as(&tok, "/fhir/Patient?_total=accurate")
        .await
        .outcome(403);
    app.get_as(&tok, "/fhir/Observation?_summary=count")
        .await
        .outcome(403);
    // Across types, those holding personal data show nothing.
    let system = app
        .get_as(&tok, "/fhir?_type=Patient,Observation,Organization")
        .await
        .json();
    assert_eq!(
        ids(&system),
        vec![format!("Organization/{org}")],
        "{system}"
    );
    app.get_as(&tok, &format!("/fhir/Observation/{my_obs}"))
        .await
        .outcome(403);
    app.get_as(&tok, &format!("/fhir/Patient/{me}/$everything"))
        .await
        .outcome(403);
    assert_eq!(
        app.get_as(&tok, &format!("/fhir/Organization/{org}"))
            .await
            .status,
        200
    );
    let write_tok = app.token_as("official-2", Role::Official, "user/*.cruds", None);
    let auth = format!("Bearer {write_tok}");
    app.send(
        "POST",
        "/fhir/Organization",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(
            json!({"resourceType": "Organization", "name": "x"})
                .to_string()
                .as_bytes(),
        ),
    )
    .await
    .outcome(403);
}

#[actix_web::test]
async fn a_hospital_system_writes_for_its_own_institution() {
    let app = spawn_app().await;
    let a = app.his_of("hosp-a");
    let mut p = patient("OWN-1");
    p["managingOrganization"] = serde_json::json!({"reference": "Organization/hosp-b"});
    let send =
        |token: String, method: &'static str, path: &'static str, body: serde_json::Value| {
            let app = &app;
            async move {
                app.send(
                    method,
                    path,
                    &[
                        ("Authorization", format!("Bearer {token}").as_str()),
                        ("Content-Type", crate::helpers::FHIR_JSON),
                    ],
                    Some(body.to_string().as_bytes()),
                )
                .await
            }
        };
    let refused = send(a.clone(), "POST", "/fhir/Patient", p.clone()).await;
    let outcome = refused.outcome(403);
    assert!(
        outcome.to_string().contains("Patient.managingOrganization"),
        "{outcome}"
    );
    let enc = serde_json::json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceProvider": {"reference": "Organization/hosp-b"}});
    send(a.clone(), "POST", "/fhir/Encounter", enc.clone())
        .await
        .outcome(403);
    // In a transaction the whole bundle is refused, nothing written.
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("OWN-2"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": enc, "request": {"method": "POST", "url": "Encounter"}}]});
    send(a.clone(), "POST", "/fhir", bundle).await.outcome(403);
    let none = app
        .get("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13|OWN-2")
        .await;
    assert!(none.json()["entry"].as_array().is_none_or(Vec::is_empty));
    // Its own institution's records, and records naming none, are written.
    p["managingOrganization"] = serde_json::json!({"reference": "Organization/hosp-a"});
    assert_eq!(
        send(a.clone(), "POST", "/fhir/Patient", p.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        send(a, "POST", "/fhir/Patient", patient("OWN-3"))
            .await
            .status,
        201
    );
    // Another institution's system neither takes over nor deletes that Patient.
    let ours = send(app.his_of("hosp-a"), "POST", "/fhir/Patient", {
        let mut q = patient("OWN-4");
        q["managingOrganization"] = serde_json::json!({"reference": "Organization/hosp-a"});
        q
    })
    .await
    .json();
    let path = format!("/fhir/Patient/{}", ours["id"].as_str().unwrap());
    let mut taken = ours.clone();
    taken["managingOrganization"] = serde_json::json!({"reference": "Organization/hosp-c"});
    let c = format!("Bearer {}", app.his_of("hosp-c"));
    let put = app
        .send(
            "PUT",
            &path,
            &[
                ("Authorization", c.as_str()),
                ("Content-Type", crate::helpers::FHIR_JSON),
            ],
            Some(taken.to_string().as_bytes()),
        )
        .await;
    assert!(put.outcome(403).to_string().contains("another institution"));
    app.send("DELETE", &path, &[("Authorization", c.as_str())], None)
        .await
        .outcome(403);
    let id = ours["id"].as_str().unwrap();
    let patch_of = |ops: serde_json::Value| {
        use base64::Engine as _;
        serde_json::json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": base64::engine::general_purpose::STANDARD.encode(ops.to_string())})
    };
    let to_c = serde_json::json!([{"op": "replace", "path": "/managingOrganization",
        "value": {"reference": "Organization/hosp-c"}}]);
    let gender = serde_json::json!([{"op": "replace", "path": "/gender", "value": "other"}]);
    // Nor in a transaction, whichever way the entry changes it: the whole bundle is refused.
    for entry in [
        serde_json::json!({"resource": taken, "request": {"method": "PUT", "url": format!("Patient/{id}")}}),
        serde_json::json!({"resource": patch_of(gender.clone()), "request": {"method": "PATCH", "url": format!("Patient/{id}")}}),
        serde_json::json!({"request": {"method": "DELETE", "url": format!("Patient/{id}")}}),
    ] {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": patient("OWN-5"), "request": {"method": "POST", "url": "Patient"}}, entry]});
        let refused = send(app.his_of("hosp-c"), "POST", "/fhir", bundle).await;
        let outcome = refused.outcome(403);
        assert!(
            outcome.to_string().contains("another institution"),
            "{outcome}"
        );
    }
    // In a batch the entry is refused and the others are written.
    let batch = serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": format!("Patient/{id}")}},
        {"resource": patient("OWN-6"), "request": {"method": "POST", "url": "Patient"}}]});
    let answered = send(app.his_of("hosp-c"), "POST", "/fhir", batch)
        .await
        .json();
    let statuses: Vec<&str> = answered["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses[0].starts_with("403"), "{statuses:?}");
    assert!(statuses[1].starts_with("201"), "{statuses:?}");
    // Nor does a PATCH of another institution's record, or one that would hand its own record
    // to another institution, go through.
    let json_patch = |token: String, ops: serde_json::Value| {
        let path = path.clone();
        let app = &app;
        async move {
            app.send(
                "PATCH",
                &path,
                &[
                    ("Authorization", format!("Bearer {token}").as_str()),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(ops.to_string().as_bytes()),
            )
            .await
        }
    };
    json_patch(app.his_of("hosp-c"), gender.clone())
        .await
        .outcome(403);
    let handed = json_patch(app.his_of("hosp-a"), to_c).await.outcome(403);
    assert!(
        handed.to_string().contains("Patient.managingOrganization"),
        "{handed}"
    );
    // Nor a conditional delete or update that finds it by its identifier.
    let by_identifier = "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13|OWN-4";
    let deleted = app
        .send(
            "DELETE",
            by_identifier,
            &[("Authorization", c.as_str())],
            None,
        )
        .await;
    assert!(
        deleted
            .outcome(403)
            .to_string()
            .contains("another institution"),
        "conditional delete"
    );
    let updated = app
        .send(
            "PUT",
            by_identifier,
            &[
                ("Authorization", c.as_str()),
                ("Content-Type", crate::helpers::FHIR_JSON),
            ],
            Some(taken.to_string().as_bytes()),
        )
        .await;
    assert!(
        updated
            .outcome(403)
            .to_string()
            .contains("another institution"),
        "conditional update"
    );
    // Nothing of all that was written: the record is as its institution left it.
    let stored = app.get(&path).await.json();
    assert_eq!(stored["meta"]["versionId"], ours["meta"]["versionId"]);
    assert_eq!(
        stored["managingOrganization"]["reference"],
        "Organization/hosp-a"
    );
    // Its own institution still changes it.
    assert_eq!(json_patch(app.his_of("hosp-a"), gender).await.status, 200);
    // Administrators maintain every institution's records.
    p["managingOrganization"] = serde_json::json!({"reference": "Organization/hosp-b"});
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    assert_eq!(send(admin, "POST", "/fhir/Patient", p).await.status, 201);
}

/// Personal data outside the R4B Patient compartment (a Task for the resident, a Device they
/// wear, a Binary, a document Bundle) is hidden like any other: an official sees none of it,
/// another resident none, and the resident their own Task.
#[actix_rt::test]
async fn personal_types_outside_the_patient_compartment_are_hidden_too() {
    let app = spawn_app().await;
    let (me, _, them, _) = two_residents(&app).await;
    let task = |p: &str| {
        json!({"resourceType": "Task", "status": "requested", "intent": "order",
               "for": {"reference": format!("Patient/{p}")}})
    };
    let my_task = app.create(&task(&me)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_task = app.create(&task(&them)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = app
        .create(
            &json!({"resourceType": "Device", "patient": {"reference": format!("Patient/{them}")}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let binary = app
        .create(
            &json!({"resourceType": "Binary", "contentType": "text/plain",
                        "securityContext": {"reference": format!("Patient/{them}")},
                        "data": "5L2T5rip"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let official = app.token_for(Role::Official, "system/*.rs");
    for path in [
        format!("/fhir/Task/{their_task}"),
        format!("/fhir/Device/{device}"),
        format!("/fhir/Binary/{binary}"),
    ] {
        app.get_as(&official, &path).await.outcome(403);
    }
    for t in ["Task", "Device", "Binary"] {
        app.get_as(&official, &format!("/fhir/{t}?_total=accurate"))
            .await
            .outcome(403);
    }
    let resident = app.token_as(
        "resident-task",
        Role::Resident,
        "patient/*.rs",
        Some(&format!("Patient/{me}")),
    );
    assert_eq!(
        app.get_as(&resident, &format!("/fhir/Task/{my_task}"))
            .await
            .status,
        200
    );
    for path in [
        format!("/fhir/Task/{their_task}"),
        format!("/fhir/Device/{device}"),
        format!("/fhir/Binary/{binary}"),
    ] {
        app.get_as(&resident, &path).await.outcome(404);
    }
    let listed = app
        .get_as(&resident, "/fhir/Task?_total=accurate")
        .await
        .json();
    assert_eq!(listed["total"], 1, "{listed}");
}

/// A resident's conditional create of a Consent matches only their own record's Consents:
/// criteria naming another resident's Consent confirm nothing and return nothing of it.
#[actix_rt::test]
async fn a_residents_criteria_never_match_another_residents_consent() {
    let app = spawn_app().await;
    let (me, _, them, _) = two_residents(&app).await;
    let admin = app.token_for(Role::Admin, "system/*.cruds");
    let theirs = app
        .create_as(
            &admin,
            &crate::helpers::privacy_consent(&them, json!({"type": "deny"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = app.token_as(
        "resident-c",
        Role::Resident,
        "patient/*.cruds",
        Some(&format!("Patient/{me}")),
    );
    let auth = format!("Bearer {tok}");
    for criteria in [format!("_id={theirs}"), format!("patient=Patient/{them}")] {
        let r = app
            .send(
                "POST",
                "/fhir/Consent",
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/fhir+json"),
                    ("If-None-Exist", criteria.as_str()),
                ],
                Some(
                    crate::helpers::privacy_consent(&me, json!({"type": "permit"}))
                        .to_string()
                        .as_bytes(),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{criteria}: {}", r.text());
        assert_ne!(r.json()["id"], theirs.as_str());
        assert!(!r.text().contains(&them), "{}", r.text());
    }
}
