//! Search over every parameter type, modifier and prefix, against hand-built fixtures with
//! known answers (each search is checked for exactly the expected set of ids).

use serde_json::{Value, json};

use crate::helpers::{FHIR_JSON, NOT_GOLDEN, TestApp, entries_of, is_golden, pages, spawn_app};

async fn put(app: &TestApp, r: Value) {
    let path = format!(
        "/fhir/{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    );
    // A Patient is written by the system of the institution that manages it.
    let auth = match r["managingOrganization"]["reference"].as_str() {
        Some(org) => app.his_of(org.trim_start_matches("Organization/")),
        None => app.token.clone(),
    };
    let reply = app
        .send(
            "PUT",
            &path,
            &[
                ("Authorization", format!("Bearer {auth}").as_str()),
                ("Content-Type", crate::helpers::FHIR_JSON),
            ],
            Some(r.to_string().as_bytes()),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text());
}

async fn fixtures(app: &TestApp) {
    let mr = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]});
    put(
        app,
        json!({"resourceType": "Patient", "id": "pat-a", "active": true, "deceasedBoolean": false,
        "identifier": [{"system": "urn:sys1", "value": "A1"}],
        "name": [{"family": "Zhang", "given": ["Wei"]}, {"text": "张伟"}],
        "telecom": [{"system": "phone", "value": "13800000001"}],
        "gender": "male", "birthDate": "1980-05-01", "address": [{"city": "成都市"}],
        "managingOrganization": {"reference": "Organization/org-1"}}),
    )
    .await;
    put(
        app,
        json!({"resourceType": "Organization", "id": "org-1", "name": "市第一人民医院"}),
    )
    .await;
    put(app, json!({"resourceType": "Patient", "id": "pat-b", "active": false,
        "identifier": [{"system": "urn:sys1", "value": "B1"}],
        "name": [{"family": "Zhāng", "given": ["Li"]}], "gender": "female", "birthDate": "1990-12-31"})).await;
    put(
        app,
        json!({"resourceType": "Patient", "id": "pat-c",
        "identifier": [{"system": "urn:sys2", "value": "C1", "type": mr}],
        "name": [{"family": "Wang"}], "gender": "female", "birthDate": "2000"}),
    )
    .await;
    let loinc = |code: &str, text: &str| json!({"coding": [{"system": "http://loinc.org", "code": code}], "text": text});
    let q = |v: f64, code: &str| json!({"value": v, "unit": code, "system": "http://unitsofmeasure.org", "code": code});
    put(app, json!({"resourceType": "Observation", "id": "obs-1", "status": "final", "code": loinc("8480-6", "收缩压"),
        "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": "2026-01-15T08:00:00+08:00",
        "valueQuantity": q(120.0, "mm[Hg]")})).await;
    put(app, json!({"resourceType": "Observation", "id": "obs-2", "status": "final", "code": loinc("8480-6", "收缩压"),
        "subject": {"reference": "Patient/pat-b"}, "effectivePeriod": {"start": "2026-02-01", "end": "2026-02-03"},
        "valueQuantity": q(135.5, "mm[Hg]")})).await;
    put(app, json!({"resourceType": "Observation", "id": "obs-3", "status": "final", "code": loinc("8310-5", "体温"),
        "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": "2025-12-31",
        "valueQuantity": q(36.6, "Cel")})).await;
    put(
        app,
        json!({"resourceType": "RiskAssessment", "id": "risk-1", "status": "final",
        "subject": {"reference": "Patient/pat-a"}, "prediction": [{"probabilityDecimal": 0.02}]}),
    )
    .await;
    put(app, json!({"resourceType": "ValueSet", "id": "vs-1", "status": "active", "url": "http://example.org/fhir/ValueSet/a"})).await;
    put(app, json!({"resourceType": "ValueSet", "id": "vs-2", "status": "active", "url": "http://example.org/fhir/ValueSet/b"})).await;
    put(app, json!({"resourceType": "ValueSet", "id": "vs-3", "status": "active", "url": "http://other.org/ValueSet/c"})).await;
}

/// The ids a search returns (following every page), sorted.
async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    // Golden residents (the resident index's own Patients) are tested in `residents.rs`.
    let mut out: Vec<String> = entries_of(&pages(app, &format!("/fhir/{query}")).await)
        .iter()
        .filter(|e| !is_golden(&e["resource"]))
        .map(|e| {
            assert_eq!(e["search"]["mode"], "match", "{query}");
            e["resource"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    out.sort();
    out
}

async fn check(app: &TestApp, cases: &[(&str, &[&str])]) {
    for (query, expected) in cases {
        let got = ids(app, query).await;
        let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{query}");
    }
}

#[actix_web::test]
async fn string_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    check(
        &app,
        &[
            ("Patient?family=zhang", &["pat-a", "pat-b"]),
            ("Patient?family=ZHA", &["pat-a", "pat-b"]),
            ("Patient?family:exact=Zhang", &["pat-a"]),
            ("Patient?family:exact=zhang", &[]),
            ("Patient?family:contains=an", &["pat-a", "pat-b", "pat-c"]),
            ("Patient?family:contains=ng", &["pat-a", "pat-b", "pat-c"]),
            ("Patient?name=张", &["pat-a"]),
            ("Patient?name=伟", &[]),
            ("Patient?name:contains=伟", &["pat-a"]),
            ("Patient?name=wei", &["pat-a"]),
            ("Patient?address-city=成都", &["pat-a"]),
            ("Patient?family=zhang,wang", &["pat-a", "pat-b", "pat-c"]),
            ("Patient?family=zhang&given=li", &["pat-b"]),
            ("Patient?family=100%25", &[]),
        ],
    )
    .await;
}

#[actix_web::test]
async fn token_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    check(
        &app,
        &[
            ("Patient?gender=male", &["pat-a"]),
            ("Patient?gender:not=male", &["pat-b", "pat-c"]),
            ("Patient?identifier=urn:sys1|", &["pat-a", "pat-b"]),
            ("Patient?identifier=urn:sys1|A1", &["pat-a"]),
            ("Patient?identifier=|C1", &[]),
            ("Patient?identifier=C1", &["pat-c"]),
            (
                "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|C1",
                &["pat-c"],
            ),
            ("Patient?active=true", &["pat-a"]),
            ("Patient?active=false", &["pat-b"]),
            ("Patient?active:missing=true", &["pat-c"]),
            ("Patient?active:missing=false", &["pat-a", "pat-b"]),
            ("Patient?phone=13800000001", &["pat-a"]),
            ("Patient?_id=pat-a,pat-c", &["pat-a", "pat-c"]),
            (
                "Observation?code=http://loinc.org|8480-6",
                &["obs-1", "obs-2"],
            ),
            (
                "Observation?code=8480-6,8310-5",
                &["obs-1", "obs-2", "obs-3"],
            ),
            ("Observation?code=http://snomed.info/sct|8480-6", &[]),
            ("Observation?code:text=体温", &["obs-3"]),
            ("Observation?code:text=收缩", &["obs-1", "obs-2"]),
        ],
    )
    .await;
}

#[actix_web::test]
async fn date_search_with_every_prefix() {
    let app = spawn_app().await;
    fixtures(&app).await;
    check(
        &app,
        &[
            ("Patient?birthdate=1980", &["pat-a"]),
            ("Patient?birthdate=1980-05-01", &["pat-a"]),
            ("Patient?birthdate=eq1980-05", &["pat-a"]),
            ("Patient?birthdate=ne1980-05-01", &["pat-b", "pat-c"]),
            ("Patient?birthdate=ge1990-01-01", &["pat-b", "pat-c"]),
            ("Patient?birthdate=gt1990-12-30", &["pat-b", "pat-c"]),
            ("Patient?birthdate=gt1990-12-31", &["pat-c"]),
            ("Patient?birthdate=lt1990", &["pat-a"]),
            ("Patient?birthdate=le1990-12-31", &["pat-a", "pat-b"]),
            (
                "Patient?birthdate=le2000-06-01",
                &["pat-a", "pat-b", "pat-c"],
            ),
            ("Patient?birthdate=eq2000-06", &[]),
            ("Patient?birthdate=sa1990", &["pat-c"]),
            ("Patient?birthdate=eb1990", &["pat-a"]),
            ("Patient?birthdate=ap1980-05-01", &["pat-a"]),
            (
                "Patient?birthdate=ge1980&birthdate=lt1995",
                &["pat-a", "pat-b"],
            ),
            ("Observation?date=2026-02-02", &[]),
            ("Observation?date=2026-02", &["obs-2"]),
            ("Observation?date=ge2026-01-01", &["obs-1", "obs-2"]),
            ("Observation?date=lt2026", &["obs-3"]),
            ("Observation?date=2026-01-15T08:00:00%2B08:00", &["obs-1"]),
            ("Observation?date=2026-01-15T00:00:00Z", &["obs-1"]),
            (
                "Patient?_lastUpdated=gt2000-01-01",
                &["pat-a", "pat-b", "pat-c"],
            ),
            ("Patient?_lastUpdated=lt2000-01-01", &[]),
        ],
    )
    .await;
}

#[actix_web::test]
async fn reference_quantity_number_and_uri_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let absolute = format!("Observation?subject={}/fhir/Patient/pat-a", app.base);
    check(
        &app,
        &[
            ("Observation?subject=Patient/pat-a", &["obs-1", "obs-3"]),
            ("Observation?subject=pat-a", &["obs-1", "obs-3"]),
            ("Observation?subject:Patient=pat-b", &["obs-2"]),
            ("Observation?patient=Patient/pat-b", &["obs-2"]),
            ("Observation?subject=Group/pat-a", &[]),
            (absolute.as_str(), &["obs-1", "obs-3"]),
            ("Observation?subject:missing=true", &[]),
            ("Observation?value-quantity=120", &["obs-1"]),
            ("Observation?value-quantity=gt130", &["obs-2"]),
            (
                "Observation?value-quantity=120|http://unitsofmeasure.org|mm[Hg]",
                &["obs-1"],
            ),
            (
                "Observation?value-quantity=le136||mm[Hg]",
                &["obs-1", "obs-2"],
            ),
            ("Observation?value-quantity=36.6||Cel", &["obs-3"]),
            (
                "Observation?value-quantity=ap130||mm[Hg]",
                &["obs-1", "obs-2"],
            ),
            ("Observation?value-quantity=ne120||mm[Hg]", &["obs-2"]),
            ("Observation?value-quantity=135.5", &["obs-2"]),
            ("Observation?value-quantity=135", &[]),
            (
                "Observation?code=http://loinc.org|8480-6&subject=Patient/pat-a",
                &["obs-1"],
            ),
            ("RiskAssessment?probability=0.02", &["risk-1"]),
            ("RiskAssessment?probability=gt0.01", &["risk-1"]),
            ("RiskAssessment?probability=lt0.01", &[]),
            ("ValueSet?url=http://example.org/fhir/ValueSet/a", &["vs-1"]),
            (
                "ValueSet?url:below=http://example.org/fhir/",
                &["vs-1", "vs-2"],
            ),
        ],
    )
    .await;
}

#[actix_web::test]
async fn chained_and_reverse_chained_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    check(
        &app,
        &[
            (
                "Observation?subject:Patient.family=zhang",
                &["obs-1", "obs-2", "obs-3"],
            ),
            ("Observation?subject.gender=female", &["obs-2"]),
            (
                "Observation?subject:Patient.identifier=urn:sys1|A1",
                &["obs-1", "obs-3"],
            ),
            (
                "Observation?subject:Patient.organization.name=市第一",
                &["obs-1", "obs-3"],
            ),
            ("Observation?subject:Patient.organization.name=省", &[]),
            (
                "Observation?patient.birthdate=lt1985&code=8480-6",
                &["obs-1"],
            ),
            ("Patient?_has:Observation:patient:code=8310-5", &["pat-a"]),
            (
                "Patient?_has:Observation:subject:value-quantity=gt130",
                &["pat-b"],
            ),
            (
                "Patient?_has:Observation:patient:code=8480-6&gender=female",
                &["pat-b"],
            ),
            (
                "Organization?_has:Patient:organization:_has:Observation:patient:code=8480-6",
                &["org-1"],
            ),
            (
                "Organization?_has:Patient:organization:_has:Observation:patient:code=9999-9",
                &[],
            ),
            ("Patient?_has:Observation:patient:subject.family=wang", &[]),
        ],
    )
    .await;
    for q in [
        "Observation?subject:Account.name=x",
        "Observation?subject.nonsense=x",
        "Patient?_has:Observation:code=1",
        "Patient?_has:Observation:nonsense:code=1",
        "Patient?_has:Unicorn:patient:code=1",
    ] {
        app.get(&format!("/fhir/{q}")).await.outcome(400);
    }
    let deep = "Observation?subject:Patient.organization.partof.partof.partof.name=x";
    assert_eq!(
        app.get(&format!("/fhir/{deep}")).await.outcome(400)["code"],
        "too-costly"
    );
}

/// (mode, type/id) of every entry of the first page, sorted.
async fn entries(app: &TestApp, query: &str) -> Vec<(String, String)> {
    let r = app.get(&format!("/fhir/{query}")).await;
    assert_eq!(r.status.as_u16(), 200, "{query}: {}", r.text());
    let mut out: Vec<(String, String)> = r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let res = &e["resource"];
            (
                e["search"]["mode"].as_str().unwrap().to_owned(),
                format!(
                    "{}/{}",
                    res["resourceType"].as_str().unwrap(),
                    res["id"].as_str().unwrap()
                ),
            )
        })
        .collect();
    out.sort();
    out
}

fn modes(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.sort();
    out
}

#[actix_web::test]
async fn include_and_revinclude() {
    let app = spawn_app().await;
    fixtures(&app).await;
    assert_eq!(
        entries(&app, "Observation?code=8480-6&_include=Observation:subject").await,
        modes(&[
            ("match", "Observation/obs-1"),
            ("match", "Observation/obs-2"),
            ("include", "Patient/pat-a"),
            ("include", "Patient/pat-b")
        ])
    );
    assert_eq!(
        entries(
            &app,
            "Observation?_id=obs-1,obs-3&_include=Observation:subject:Patient"
        )
        .await,
        modes(&[
            ("match", "Observation/obs-1"),
            ("match", "Observation/obs-3"),
            ("include", "Patient/pat-a")
        ])
    );
    assert_eq!(
        entries(&app, "Observation?_id=obs-1&_include=*").await,
        modes(&[("match", "Observation/obs-1"), ("include", "Patient/pat-a")])
    );
    assert_eq!(
        entries(&app, "Patient?_id=pat-a&_revinclude=Observation:subject").await,
        modes(&[
            ("match", "Patient/pat-a"),
            ("include", "Observation/obs-1"),
            ("include", "Observation/obs-3")
        ])
    );
    assert_eq!(
        entries(&app, "Observation?_id=obs-1&_include=Observation:subject&_include:iterate=Patient:organization").await,
        modes(&[("match", "Observation/obs-1"), ("include", "Patient/pat-a"), ("include", "Organization/org-1")])
    );
    // Without :iterate the second hop is not taken.
    assert_eq!(
        entries(
            &app,
            "Observation?_id=obs-1&_include=Observation:subject&_include=Patient:organization"
        )
        .await,
        modes(&[("match", "Observation/obs-1"), ("include", "Patient/pat-a")])
    );
    assert_eq!(
        entries(&app, "Organization?_id=org-1&_revinclude=Patient:organization&_revinclude:iterate=Observation:subject").await,
        modes(&[("match", "Organization/org-1"), ("include", "Patient/pat-a"), ("include", "Observation/obs-1"), ("include", "Observation/obs-3")])
    );
    for q in [
        "Observation?_include=Observation",
        "Observation?_include=Observation:nonsense",
        "Observation?_include=Unicorn:subject",
    ] {
        app.get(&format!("/fhir/{q}")).await.outcome(400);
    }
}

#[actix_web::test]
async fn deleted_and_updated_resources_leave_the_index() {
    let app = spawn_app().await;
    fixtures(&app).await;
    // pat-a is org-1's: its system deletes it.
    let org1 = format!("Bearer {}", app.his_of("org-1"));
    let gone = app
        .send(
            "DELETE",
            "/fhir/Patient/pat-a",
            &[("Authorization", org1.as_str())],
            None,
        )
        .await;
    assert_eq!(gone.status.as_u16(), 204, "{}", gone.text());
    check(
        &app,
        &[
            ("Patient?gender=male", &[]),
            ("Patient?family=zhang", &["pat-b"]),
        ],
    )
    .await;
    let mut b = app.get("/fhir/Patient/pat-b").await.json();
    b["gender"] = json!("male");
    app.put_json("/fhir/Patient/pat-b", &b).await;
    check(
        &app,
        &[
            ("Patient?gender=male", &["pat-b"]),
            ("Patient?gender=female", &["pat-c"]),
        ],
    )
    .await;
}

#[actix_web::test]
async fn bad_searches_are_400_unless_lenient() {
    let app = spawn_app().await;
    fixtures(&app).await;
    for (q, expr) in [
        ("Patient?nonsense=1", "nonsense"),
        ("Patient?birthdate=yesterday", "birthdate"),
        ("Patient?family:fuzzy=x", "family:fuzzy"),
        ("Patient?active:missing=maybe", "active:missing"),
        ("Observation?value-quantity=lots", "value-quantity"),
        ("Observation?subject:Account=1", "subject:Account"),
        ("Patient?gender=", "gender"),
        ("Patient?_contained=true", "_contained"),
    ] {
        let issue = app.get(&format!("/fhir/{q}")).await.outcome(400);
        assert_eq!(issue["expression"][0], expr, "{q}");
    }
    let many = (0..101)
        .map(|i| format!("x{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        app.get(&format!("/fhir/Patient?_id={many}"))
            .await
            .outcome(400)["code"],
        "too-costly"
    );

    let r = app
        .send(
            "GET",
            &format!("/fhir/Patient?nonsense=1&gender=male&{NOT_GOLDEN}"),
            &[("Prefer", "handling=lenient")],
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    let self_link = b["link"][0]["url"].as_str().unwrap();
    assert!(
        self_link.contains("gender=male") && !self_link.contains("nonsense"),
        "{self_link}"
    );
    // Values reach SQL only as bound parameters.
    check(
        &app,
        &[
            ("Patient?family=x'%20OR%20'1'='1", &[]),
            ("Patient?_id=pat-a')%20OR%20('1'='1", &[]),
            ("Patient?_contained=false&gender=male", &["pat-a"]),
        ],
    )
    .await;
    let _ = FHIR_JSON;
}

/// The ids of every page in order (not sorted).
async fn ordered(app: &TestApp, query: &str) -> Vec<String> {
    let first = if query.starts_with("http") {
        query.to_owned()
    } else {
        format!("/fhir/{query}")
    };
    entries_of(&pages(app, &first).await)
        .iter()
        .filter(|e| !is_golden(&e["resource"]))
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn sorting_with_keyset_paging() {
    let app = spawn_app().await;
    fixtures(&app).await;
    for (q, want) in [
        ("Patient?_sort=birthdate", vec!["pat-a", "pat-b", "pat-c"]),
        ("Patient?_sort=-birthdate", vec!["pat-c", "pat-b", "pat-a"]),
        ("Patient?_sort=family", vec!["pat-c", "pat-a", "pat-b"]),
        ("Patient?_sort=-family", vec!["pat-a", "pat-b", "pat-c"]),
        (
            "Patient?_sort=gender,-birthdate",
            vec!["pat-c", "pat-b", "pat-a"],
        ),
        ("Patient?_sort=active", vec!["pat-b", "pat-a", "pat-c"]),
        ("Patient?_sort=-active", vec!["pat-a", "pat-b", "pat-c"]),
        ("Patient?_sort=-_id", vec!["pat-c", "pat-b", "pat-a"]),
        ("Observation?_sort=-date", vec!["obs-2", "obs-1", "obs-3"]),
        (
            "Observation?_sort=value-quantity",
            vec!["obs-3", "obs-1", "obs-2"],
        ),
        (
            "Observation?_sort=subject,-value-quantity",
            vec!["obs-1", "obs-3", "obs-2"],
        ),
    ] {
        assert_eq!(ordered(&app, q).await, want, "{q}");
        // The same order one resource per page, following the next links.
        assert_eq!(
            ordered(&app, &format!("{q}&_count=1")).await,
            want,
            "{q} paged"
        );
    }
    app.get("/fhir/Patient?_sort=nonsense").await.outcome(400);
    app.get("/fhir/Patient?_sort=birthdate&_cursor=garbage")
        .await
        .outcome(400);
}

#[actix_web::test]
async fn sorted_paging_stays_correct_while_resources_are_written() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let first = app
        .get(&format!(
            "/fhir/Patient?_sort=birthdate&_count=2&{NOT_GOLDEN}"
        ))
        .await
        .json();
    let page1: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(page1, ["pat-a", "pat-b"]);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // Written between the pages: one sorts before the cursor, one after it.
    put(
        &app,
        json!({"resourceType": "Patient", "id": "pat-early", "birthDate": "1970-01-01"}),
    )
    .await;
    put(
        &app,
        json!({"resourceType": "Patient", "id": "pat-late", "birthDate": "2010-01-01"}),
    )
    .await;
    let rest = ordered(&app, &next).await;
    assert_eq!(
        rest,
        ["pat-c", "pat-late"],
        "no repeats, no skips, new rows after the cursor appear"
    );
}

#[actix_web::test]
async fn totals_summaries_and_elements() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let b = app
        .get(&format!(
            "/fhir/Patient?_total=accurate&_count=1&{NOT_GOLDEN}"
        ))
        .await
        .json();
    assert_eq!(b["total"], 3);
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    assert!(
        app.get("/fhir/Patient?_count=1")
            .await
            .json()
            .get("total")
            .is_none(),
        "no total unless asked"
    );
    let b = app
        .get(&format!(
            "/fhir/Patient?gender=female&_summary=count&{NOT_GOLDEN}"
        ))
        .await
        .json();
    assert_eq!(b["total"], 2);
    assert!(b.get("entry").is_none());
    let b = app
        .get("/fhir/Patient?_id=pat-a&_elements=gender")
        .await
        .json();
    let res = &b["entry"][0]["resource"];
    let mut keys: Vec<&str> = res
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["gender", "id", "meta", "resourceType"]);
    assert_eq!(res["meta"]["tag"][0]["code"], "SUBSETTED");
    let b = app
        .get("/fhir/Patient?_id=pat-a&_summary=true")
        .await
        .json();
    let res = &b["entry"][0]["resource"];
    assert_eq!(res["gender"], "male");
    assert_eq!(res["meta"]["tag"][0]["code"], "SUBSETTED");
    let full = app.get("/fhir/Patient?_id=pat-a").await.json();
    assert!(full["entry"][0]["resource"]["meta"].get("tag").is_none());
    app.get("/fhir/Patient?_summary=maybe").await.outcome(400);
    app.get("/fhir/Patient?_total=some").await.outcome(400);
}

#[actix_web::test]
async fn compartment_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    check(
        &app,
        &[
            ("Patient/pat-a/Observation", &["obs-1", "obs-3"]),
            ("Patient/pat-a/Observation?code=8480-6", &["obs-1"]),
            ("Patient/pat-b/Observation", &["obs-2"]),
            ("Patient/pat-c/Observation", &[]),
            ("Patient/pat-a/RiskAssessment", &["risk-1"]),
            ("Patient/pat-a/Patient", &["pat-a"]),
        ],
    )
    .await;
    app.get("/fhir/Patient/pat-a/ValueSet").await.outcome(400);
    app.get("/fhir/Unicorn/x/Observation").await.outcome(404);
    assert_eq!(
        app.get("/fhir/Patient/pat-a/_history")
            .await
            .status
            .as_u16(),
        200
    );
}

#[actix_web::test]
async fn system_search_across_types() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let all = ["obs-1", "obs-2", "obs-3", "pat-a", "pat-b", "pat-c"];
    assert_eq!(ordered(&app, "?_type=Patient,Observation").await, all);
    assert_eq!(
        ordered(&app, "?_type=Patient,Observation&_count=4").await,
        all
    );
    check(
        &app,
        &[(
            "?_type=Patient,Observation&_id=pat-a,obs-1",
            &["obs-1", "pat-a"],
        )],
    )
    .await;
    assert_eq!(
        ordered(&app, "?_lastUpdated=gt2000-01-01&_count=3")
            .await
            .len(),
        11
    );
    app.get("/fhir?_type=Patient,Observation&gender=male")
        .await
        .outcome(400);
    app.get("/fhir/?_type=Unicorn").await.outcome(400);
    // POST to the base is for transactions and batches: a body that is not a Bundle is 400.
    let post = app
        .send(
            "POST",
            "/fhir/",
            &[("Content-Type", FHIR_JSON)],
            Some(b"{}"),
        )
        .await;
    post.outcome(400);
}

#[actix_web::test]
async fn chinese_names_by_characters_and_by_pinyin() {
    let app = spawn_app().await;
    fixtures(&app).await;
    put(&app, json!({"resourceType": "Patient", "id": "pat-li", "name": [{"family": "李", "given": ["小明"]}]})).await;
    check(
        &app,
        &[
            ("Patient?name=李", &["pat-li"]),
            ("Patient?family=李", &["pat-li"]),
            ("Patient?name:contains=小明", &["pat-li"]),
            ("Patient?name-pinyin=lixiaoming", &["pat-li"]),
            ("Patient?name-pinyin=Li Xiao", &["pat-li"]),
            ("Patient?name-pinyin=lxm", &["pat-li"]),
            ("Patient?name-pinyin=zhangw", &["pat-a"]),
            ("Patient?name-pinyin=zw", &["pat-a"]),
            ("Patient?name-pinyin=wang", &[]),
        ],
    )
    .await;
    let cs = app.get("/fhir/metadata").await.json();
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(
        patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "name-pinyin")
    );
}

#[actix_web::test]
async fn composite_parameters_match_within_one_item() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let bp = |id: &str, sys: f64, dia: f64| {
        let comp = |code: &str, v: f64| {
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                   "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
        };
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
               "subject": {"reference": "Patient/pat-a"},
               "component": [comp("8480-6", sys), comp("8462-4", dia)]})
    };
    put(&app, bp("bp-1", 150.0, 95.0)).await;
    put(&app, bp("bp-2", 118.0, 92.0)).await;
    check(
        &app,
        &[
            (
                "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140",
                &["bp-1"],
            ),
            (
                "Observation?component-code-value-quantity=8462-4$gt90",
                &["bp-1", "bp-2"],
            ),
            (
                "Observation?component-code-value-quantity=8480-6$gt90||mm[Hg]",
                &["bp-1", "bp-2"],
            ),
            // Systolic below 100 matches nothing: the diastolic values are in other components.
            (
                "Observation?component-code-value-quantity=8480-6$lt100",
                &[],
            ),
            (
                "Observation?code-value-quantity=http://loinc.org|8480-6$120",
                &["obs-1"],
            ),
            (
                "Observation?combo-code-value-quantity=8480-6$gt130",
                &["bp-1", "obs-2"],
            ),
            (
                "Observation?component-code-value-quantity=8480-6$gt140,8462-4$lt93",
                &["bp-1", "bp-2"],
            ),
        ],
    )
    .await;
    // A composite whose first component is a reference.
    let doc = |id: &str, relation: &str, target: &str| {
        json!({"resourceType": "DocumentReference", "id": id, "status": "current",
               "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
               "relatesTo": [{"code": relation, "target": {"reference": target}}]})
    };
    put(&app, doc("doc-1", "replaces", "DocumentReference/doc-0")).await;
    put(&app, doc("doc-2", "appends", "DocumentReference/doc-0")).await;
    check(
        &app,
        &[
            (
                "DocumentReference?relationship=DocumentReference/doc-0$replaces",
                &["doc-1"],
            ),
            (
                "DocumentReference?relationship=DocumentReference/doc-0$replaces,DocumentReference/doc-0$appends",
                &["doc-1", "doc-2"],
            ),
            (
                "DocumentReference?relationship=DocumentReference/doc-9$replaces",
                &[],
            ),
        ],
    )
    .await;
    app.get("/fhir/DocumentReference?relationship=doc-0$replaces")
        .await
        .outcome(400);
    app.get("/fhir/Observation?component-code-value-quantity=8480-6")
        .await
        .outcome(400);
    app.get("/fhir/Observation?component-code-value-quantity=8480-6$lots")
        .await
        .outcome(400);
    app.get("/fhir/Observation?_sort=code-value-quantity")
        .await
        .outcome(400);
}

/// `patient` (subject pointing at a Patient) and the `combo-*` parameters (code or component
/// code, …) have no index rows of their own: they are answered from their base parameters'
/// rows, and must answer exactly as if they had them.
#[actix_web::test]
async fn aliased_parameters_answer_as_their_own() {
    let app = spawn_app().await;
    fixtures(&app).await;
    let comp = |code: &str, v: f64| {
        json!({"code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Systolic"}]},
               "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    };
    put(
        &app,
        json!({"resourceType": "Observation", "id": "bp-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/pat-b"}, "component": [comp("8480-6", 150.0)]}),
    )
    .await;
    put(
        &app,
        json!({"resourceType": "Group", "id": "grp-1", "type": "person", "actual": true}),
    )
    .await;
    put(
        &app,
        json!({"resourceType": "Observation", "id": "grp-obs", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": "Group/grp-1"}}),
    )
    .await;
    check(
        &app,
        &[
            ("Observation?patient=pat-a", &["obs-1", "obs-3"]),
            ("Observation?patient=Patient/pat-b", &["bp-1", "obs-2"]),
            ("Observation?patient:Patient=pat-b", &["bp-1", "obs-2"]),
            // The Group is a subject but not a patient.
            ("Observation?subject=Group/grp-1", &["grp-obs"]),
            ("Observation?patient=grp-1", &[]),
            ("Observation?code=8310-5&patient:missing=true", &["grp-obs"]),
            ("Observation?code=8310-5&patient:missing=false", &["obs-3"]),
            ("Observation?patient.gender=female", &["bp-1", "obs-2"]),
            ("Patient?_has:Observation:patient:code=85354-9", &["pat-b"]),
            ("Group?_has:Observation:subject:code=8310-5", &["grp-1"]),
            // combo-code: the code or a component's code.
            ("Observation?combo-code=8480-6", &["bp-1", "obs-1", "obs-2"]),
            ("Observation?combo-code=http://loinc.org|85354-9", &["bp-1"]),
            ("Observation?combo-code:text=systolic", &["bp-1"]),
            ("Observation?combo-code:not=8480-6&patient=pat-b", &[]),
            (
                "Observation?combo-code:not=85354-9&patient=pat-b",
                &["obs-2"],
            ),
            ("Observation?combo-value-quantity=gt140", &["bp-1"]),
            (
                "Observation?combo-value-quantity:missing=true&patient=pat-a",
                &[],
            ),
            (
                "Observation?combo-value-quantity:missing=true",
                &["grp-obs"],
            ),
            ("Observation?_id:not=obs-1&patient=pat-a", &["obs-3"]),
        ],
    )
    .await;
    // Sorting by a union: the lowest value of either part.
    assert_eq!(
        ordered(&app, "Observation?patient=pat-b&_sort=combo-value-quantity").await,
        ["obs-2", "bp-1"]
    );
    assert_eq!(
        ordered(
            &app,
            "Observation?patient=pat-b&_sort=-combo-value-quantity"
        )
        .await,
        ["bp-1", "obs-2"]
    );
    // Includes through the narrowed parameter bring only Patients.
    let got = entries(&app, "Observation?code=8310-5&_include=Observation:patient").await;
    assert_eq!(
        got,
        modes(&[
            ("match", "Observation/grp-obs"),
            ("match", "Observation/obs-3"),
            ("include", "Patient/pat-a")
        ])
    );
    let got = entries(&app, "Patient?_id=pat-b&_revinclude=Observation:patient").await;
    assert_eq!(
        got,
        modes(&[
            ("include", "Observation/bp-1"),
            ("include", "Observation/obs-2"),
            ("match", "Patient/pat-b")
        ])
    );
    app.get("/fhir/Observation?patient:Group=grp-1")
        .await
        .outcome(400);
    app.get("/fhir/Observation?_include=Observation:patient:Group")
        .await
        .outcome(400);
    app.get("/fhir/Observation?_id:text=x").await.outcome(400);
}

#[actix_web::test]
async fn text_and_content_search() {
    let app = spawn_app().await;
    fixtures(&app).await;
    put(
        &app,
        json!({"resourceType": "Condition", "id": "cond-1",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>原发性<b>高血压</b> &amp; Type 2 diabetes</p></div>"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "Essential hypertension"}], "text": "原发性高血压"},
        "subject": {"reference": "Patient/pat-a"}, "note": [{"text": "Patient reports headaches"}]}),
    )
    .await;
    put(
        &app,
        json!({"resourceType": "Condition", "id": "cond-2",
        "code": {"text": "Type 2 diabetes mellitus"}, "subject": {"reference": "Patient/pat-b"}}),
    )
    .await;
    check(
        &app,
        &[
            // _content: every string of the resource, words ANDed, case- and accent-insensitive.
            ("Condition?_content=高血压", &["cond-1"]),
            ("Condition?_content=血压", &["cond-1"]),
            ("Condition?_content=HEADACHE", &["cond-1"]),
            ("Condition?_content=diabetes", &["cond-2"]),
            ("Condition?_content=type diabetes", &["cond-2"]),
            ("Condition?_content=essential headaches", &["cond-1"]),
            ("Condition?_content=essential diabetes", &[]),
            ("Condition?_content=\"diabetes mellitus\"", &["cond-2"]),
            ("Condition?_content=\"mellitus diabetes\"", &[]),
            (
                "Condition?_content=headaches,mellitus",
                &["cond-1", "cond-2"],
            ),
            // The narrative is not content, references and systems are not words.
            ("Condition?_content=原发性 diabetes", &[]),
            ("Condition?_content=pat-a", &[]),
            ("Patient?_content=成都", &["pat-a"]),
            ("Patient?_content=zhang", &["pat-a", "pat-b"]),
            // _text: the narrative only, markup stripped and entities decoded.
            ("Condition?_text=高血压", &["cond-1"]),
            ("Condition?_text=原发性高血压 diabetes", &["cond-1"]),
            ("Condition?_text=headaches", &[]),
            ("Condition?_text=\"%26 type\"", &["cond-1"]),
            ("Condition?_text=div", &[]),
            ("Condition?_text:missing=true", &["cond-2"]),
        ],
    )
    .await;
    // Updating the resource replaces its text rows.
    let updated = app
        .put_json(
            "/fhir/Condition/cond-2",
            &json!({"resourceType": "Condition", "id": "cond-2",
            "code": {"text": "Asthma"}, "subject": {"reference": "Patient/pat-b"}}),
        )
        .await;
    assert_eq!(updated.status.as_u16(), 200);
    check(
        &app,
        &[
            ("Condition?_content=diabetes", &[]),
            ("Condition?_content=asthma", &["cond-2"]),
        ],
    )
    .await;
    app.get("/fhir/Condition?_content=%20%20")
        .await
        .outcome(400);
}

#[actix_web::test]
async fn very_long_values_are_indexed_and_found() {
    let app = spawn_app().await;
    // Values longer than a B-tree entry allows are indexed by their first 1,000 bytes.
    let long_code = "X".repeat(5000);
    let long_name = "长".repeat(2000);
    put(
        &app,
        json!({"resourceType": "Patient", "id": "long-1",
        "identifier": [{"system": "urn:sys1", "value": long_code}],
        "name": [{"family": long_name}]}),
    )
    .await;
    put(
        &app,
        json!({"resourceType": "Patient", "id": "long-2",
        "identifier": [{"system": "urn:sys1", "value": "short"}]}),
    )
    .await;
    check(
        &app,
        &[
            (
                &format!("Patient?identifier=urn:sys1|{long_code}"),
                &["long-1"],
            ),
            (&format!("Patient?family={}", "长".repeat(400)), &["long-1"]),
            (&format!("Patient?family:exact={long_name}"), &["long-1"]),
            ("Patient?identifier=short", &["long-2"]),
        ],
    )
    .await;
}

/// Text compares byte by byte on both backends: on PostgreSQL every text column is COLLATE
/// "C" (index inserts make no locale comparisons), so ids and codes order as on SQLite. A
/// migration that adds a text column without `COLLATE "C"` fails here.
#[actix_rt::test]
async fn text_compares_in_byte_order_on_both_backends() {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let app = spawn_app().await;
    if app.settings.database_url.is_some() {
        let others: Vec<Column> = app
            .store()
            .read(|c| match c.conn() {
                huimin::store::DbConn::Postgres(pg) => diesel::sql_query(
                    "SELECT table_name || '.' || column_name AS name \
                     FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND data_type = 'text' AND table_name NOT LIKE '\\_\\_diesel%' \
                     AND coalesce(collation_name, '') <> 'C'",
                )
                .load(pg)
                .map_err(huimin::error::ApiError::from),
                huimin::store::DbConn::Sqlite(_) => Ok(Vec::new()),
            })
            .unwrap();
        let names: Vec<&str> = others.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.is_empty(),
            "text columns in the locale's order: {names:?}"
        );
    }
    // Upper case before lower case, whatever the database's locale.
    for id in ["b-1", "Z-1", "B-1"] {
        put(
            &app,
            json!({"resourceType": "Organization", "id": id, "name": id}),
        )
        .await;
    }
    let page = app.get("/fhir/Organization?_sort=_id&_count=100").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let ids: Vec<String> = entries_of(&[page.json()])
        .iter()
        .filter_map(|e| e["resource"]["id"].as_str())
        .filter(|id| id.ends_with("-1"))
        .map(str::to_owned)
        .collect();
    assert_eq!(ids, ["B-1", "Z-1", "b-1"]);
}
