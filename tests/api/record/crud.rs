//! read, vread, create, update, patch, delete; versions, ETags, If-Match, Prefer.

use serde_json::json;

use crate::helpers::{FHIR_JSON, patient, spawn_app};

#[actix_web::test]
async fn create_returns_the_resource_with_version_headers() {
    let app = spawn_app().await;
    let r = app
        .post_json("/fhir/Patient", &patient("11010519491231002X"))
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let body = r.json();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("etag").as_deref(), Some("W/\"1\""));
    assert!(r.header("last-modified").unwrap().ends_with("GMT"));
    let location = r.header("location").unwrap();
    assert_eq!(
        location,
        format!("{}/fhir/Patient/{id}/_history/1", app.base)
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );

    // The Location can be vread, and a read serves the same stored bytes.
    let v = app.get(&location).await;
    assert_eq!(v.status.as_u16(), 200);
    assert_eq!(v.body, r.body);
    let read = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(read.body, r.body);
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
}

#[actix_web::test]
async fn create_accepts_plain_json_and_assigns_its_own_id() {
    let app = spawn_app().await;
    let mut p = patient("11010519491231002X");
    p["id"] = json!("client-chosen");
    let r = app
        .send(
            "POST",
            "/fhir/Patient",
            &[("Content-Type", "application/json")],
            Some(p.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_ne!(r.json()["id"], "client-chosen");
}

#[actix_web::test]
async fn stored_json_keeps_decimal_precision_and_member_order() {
    let app = spawn_app().await;
    let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"体温"},"valueQuantity":{"value":36.60,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"}}"#;
    let r = app
        .send(
            "POST",
            "/fhir/Observation",
            &[("Content-Type", FHIR_JSON)],
            Some(obs.as_bytes()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(r#""valueQuantity":{"value":36.60,"unit":"Cel""#),
        "{text}"
    );
    assert!(
        text.starts_with(r#"{"resourceType":"Observation","id":"#),
        "{text}"
    );
}

#[actix_web::test]
async fn update_versions_and_create_on_update() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap();
    let mut p = created.clone();
    p["gender"] = json!("male");
    let r = app.put_json(&format!("/fhir/Patient/{id}"), &p).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["meta"]["versionId"], "2");
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));
    assert!(r.header("location").unwrap().ends_with("/_history/2"));

    // The old version is still there.
    let v1 = app.get(&format!("/fhir/Patient/{id}/_history/1")).await;
    assert_eq!(v1.json()["gender"], "female");
    let v3 = app.get(&format!("/fhir/Patient/{id}/_history/3")).await;
    v3.outcome(404);

    // PUT to a new id creates it.
    let mut n = patient("11010519491231002X");
    n["id"] = json!("his-0001");
    let r = app.put_json("/fhir/Patient/his-0001", &n).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_eq!(r.json()["meta"]["versionId"], "1");
}

#[actix_web::test]
async fn update_rejects_missing_or_mismatched_ids() {
    let app = spawn_app().await;
    let p = patient("11010519491231002X");
    let issue = app.put_json("/fhir/Patient/abc", &p).await.outcome(400);
    assert_eq!(issue["expression"][0], "Patient.id");
    let mut q = p.clone();
    q["id"] = json!("other");
    let issue = app.put_json("/fhir/Patient/abc", &q).await.outcome(400);
    assert_eq!(issue["expression"][0], "Patient.id");
    app.get("/fhir/Patient/abc").await.outcome(404);
    app.get("/fhir/Patient/not%20valid").await.outcome(400);
}

#[actix_web::test]
async fn if_match_gives_optimistic_locking() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/fhir/Patient/{id}");
    let body = created.to_string();
    let stale = app
        .send(
            "PUT",
            &path,
            &[("Content-Type", FHIR_JSON), ("If-Match", "W/\"7\"")],
            Some(body.as_bytes()),
        )
        .await;
    stale.outcome(412);
    let ok = app
        .send(
            "PUT",
            &path,
            &[("Content-Type", FHIR_JSON), ("If-Match", "W/\"1\"")],
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text());
    app.send(
        "PUT",
        &path,
        &[("Content-Type", FHIR_JSON), ("If-Match", "bogus")],
        Some(body.as_bytes()),
    )
    .await
    .outcome(400);
}

#[actix_web::test]
async fn concurrent_updates_with_the_same_if_match_let_exactly_one_win() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/fhir/Patient/{id}");
    let body = created.to_string();
    let futures = (0..8).map(|_| {
        app.send(
            "PUT",
            &path,
            &[("Content-Type", FHIR_JSON), ("If-Match", "W/\"1\"")],
            Some(body.as_bytes()),
        )
    });
    let replies = futures_util::future::join_all(futures).await;
    let ok = replies.iter().filter(|r| r.status.as_u16() == 200).count();
    let conflict = replies.iter().filter(|r| r.status.as_u16() == 412).count();
    assert_eq!((ok, conflict), (1, 7));
    assert_eq!(app.get(&path).await.json()["meta"]["versionId"], "2");
}

#[actix_web::test]
async fn concurrent_puts_to_a_new_id_all_land_as_distinct_versions() {
    let app = spawn_app().await;
    let mut p = patient("11010519491231002X");
    p["id"] = json!("race-1");
    let body = p.to_string();
    let futures = (0..8).map(|_| {
        app.send(
            "PUT",
            "/fhir/Patient/race-1",
            &[("Content-Type", FHIR_JSON)],
            Some(body.as_bytes()),
        )
    });
    let replies = futures_util::future::join_all(futures).await;
    for r in &replies {
        assert!(
            r.status.as_u16() == 200 || r.status.as_u16() == 201,
            "{} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(
        replies.iter().filter(|r| r.status.as_u16() == 201).count(),
        1
    );
    let mut versions: Vec<String> = replies
        .iter()
        .map(|r| r.json()["meta"]["versionId"].as_str().unwrap().to_owned())
        .collect();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap());
    assert_eq!(versions, (1..=8).map(|v| v.to_string()).collect::<Vec<_>>());
}

#[actix_web::test]
async fn patch_applies_json_patch_and_validates_the_result() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/fhir/Patient/{id}");
    let ops = json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": true}]);
    let r = app
        .send(
            "PATCH",
            &path,
            &[("Content-Type", "application/json-patch+json")],
            Some(ops.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["gender"], "male");
    assert_eq!(r.json()["meta"]["versionId"], "2");

    // A patch producing an invalid resource is refused and nothing is written.
    let bad = json!([{"op": "replace", "path": "/gender", "value": "robot"}]);
    let issue = app
        .send(
            "PATCH",
            &path,
            &[("Content-Type", "application/json-patch+json")],
            Some(bad.to_string().as_bytes()),
        )
        .await
        .outcome(400);
    assert_eq!(issue["expression"][0], "Patient.gender");
    let failing_test = json!([{"op": "test", "path": "/gender", "value": "female"}]);
    app.send(
        "PATCH",
        &path,
        &[("Content-Type", "application/json-patch+json")],
        Some(failing_test.to_string().as_bytes()),
    )
    .await
    .outcome(422);
    app.send("PATCH", &path, &[("Content-Type", FHIR_JSON)], Some(b"{}"))
        .await
        .outcome(415);
    let stale = app
        .send(
            "PATCH",
            &path,
            &[
                ("Content-Type", "application/json-patch+json"),
                ("If-Match", "W/\"1\""),
            ],
            Some(ops.to_string().as_bytes()),
        )
        .await;
    stale.outcome(412);
    assert_eq!(app.get(&path).await.json()["meta"]["versionId"], "2");
}

#[actix_web::test]
async fn delete_leaves_a_versioned_tombstone() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/fhir/Patient/{id}");
    let r = app.delete(&path).await;
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));
    app.get(&path).await.outcome(410);
    app.get(&format!("{path}/_history/2")).await.outcome(410);
    assert_eq!(
        app.get(&format!("{path}/_history/1")).await.status.as_u16(),
        200
    );
    // Deleting again, or something unknown, is not an error.
    assert_eq!(app.delete(&path).await.status.as_u16(), 204);
    assert_eq!(
        app.delete("/fhir/Patient/never-was").await.status.as_u16(),
        204
    );
    // Resurrection by PUT is a new version.
    let mut again = created.clone();
    again.as_object_mut().unwrap().remove("meta");
    let r = app.put_json(&path, &again).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert_eq!(r.json()["meta"]["versionId"], "3");
}

#[actix_web::test]
async fn prefer_return_is_honoured() {
    let app = spawn_app().await;
    let body = patient("11010519491231002X").to_string();
    let minimal = app
        .send(
            "POST",
            "/fhir/Patient",
            &[("Content-Type", FHIR_JSON), ("Prefer", "return=minimal")],
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(minimal.status.as_u16(), 201);
    assert!(minimal.body.is_empty());
    assert!(minimal.header("location").is_some());
    let oo = app
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("Prefer", "return=OperationOutcome"),
            ],
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(oo.status.as_u16(), 201);
    assert_eq!(oo.json()["resourceType"], "OperationOutcome");
    let rep = app
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("Prefer", "return=representation"),
            ],
            Some(body.as_bytes()),
        )
        .await;
    assert_eq!(rep.json()["resourceType"], "Patient");
    let del = app
        .send(
            "DELETE",
            &format!("/fhir/Patient/{}", rep.json()["id"].as_str().unwrap()),
            &[("Prefer", "return=OperationOutcome")],
            None,
        )
        .await;
    assert_eq!(del.status.as_u16(), 200);
    assert_eq!(del.json()["resourceType"], "OperationOutcome");
}

#[actix_web::test]
async fn conditional_read_headers() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let path = format!("/fhir/Patient/{}", created["id"].as_str().unwrap());
    let r = app
        .send("GET", &path, &[("If-None-Match", "W/\"1\"")], None)
        .await;
    assert_eq!(r.status.as_u16(), 304);
    let r = app
        .send("GET", &path, &[("If-None-Match", "W/\"0\"")], None)
        .await;
    assert_eq!(r.status.as_u16(), 200);
}

#[actix_web::test]
async fn unknown_types_and_routes_are_404_outcomes() {
    let app = spawn_app().await;
    let issue = app.get("/fhir/Unicorn/1").await.outcome(404);
    assert_eq!(issue["code"], "not-found");
    app.post_json("/fhir/Unicorn", &json!({"resourceType": "Unicorn"}))
        .await
        .outcome(404);
    app.get("/nowhere").await.outcome(404);
    app.get("/fhir/Patient/1/_history/1/extra")
        .await
        .outcome(404);
    app.send("POST", "/fhir/Patient/1", &[], Some(b"{}"))
        .await
        .outcome(405);
}
