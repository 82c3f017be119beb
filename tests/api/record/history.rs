//! History at instance, type and system level: order, entries, `_since`, `_count` and paging.

use serde_json::{Value, json};

use crate::helpers::{TestApp, entries_of, is_golden, pages, patient, spawn_app};

/// Follow `next` links from `first`: every entry, and how many pages there were.
async fn all_pages(app: &TestApp, first: &str) -> (Vec<Value>, usize) {
    let bundles = pages(app, first).await;
    assert!(bundles.iter().all(|b| b["type"] == "history"));
    (entries_of(&bundles), bundles.len())
}

#[actix_web::test]
async fn instance_history_lists_every_version_newest_first() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/fhir/Patient/{id}");
    let mut p = created.clone();
    p["gender"] = json!("male");
    app.put_json(&path, &p).await;
    app.delete(&path).await;

    let (entries, pages) = all_pages(&app, &format!("{path}/_history?_count=1")).await;
    assert_eq!(pages, 3);
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[0]["response"]["etag"], "W/\"3\"");
    assert_eq!(entries[1]["resource"]["gender"], "male");
    assert_eq!(entries[2]["resource"]["meta"]["versionId"], "1");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["fullUrl"], format!("{}{path}", app.base));

    app.get("/fhir/Patient/unknown/_history").await.outcome(404);
}

#[actix_web::test]
async fn type_and_system_history_with_since() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.create(&patient(&format!("1101051949123100{i}X"))).await;
    }
    app.create(&json!({"resourceType": "Organization", "name": "市第一人民医院"}))
        .await;
    // Each Patient also made its golden resident (the resident index).
    let types = app.get("/fhir/Patient/_history").await.json();
    let entries = types["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(
        entries.iter().filter(|e| is_golden(&e["resource"])).count(),
        3
    );
    let system = app.get("/fhir/_history").await.json();
    let sys_entries = system["entry"].as_array().unwrap();
    assert_eq!(sys_entries.len(), 7);
    assert_eq!(sys_entries[0]["resource"]["resourceType"], "Organization");

    // _since is inclusive of what changed at or after the instant.
    let last = sys_entries[0]["resource"]["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = app
        .get(&format!(
            "/fhir/_history?_since={}",
            last.replace('+', "%2B")
        ))
        .await
        .json();
    assert!(
        since["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["resourceType"] == "Organization")
    );
    let future = app
        .get("/fhir/_history?_since=2999-01-01T00:00:00Z")
        .await
        .json();
    assert!(future.get("entry").is_none());

    let issue = app
        .get("/fhir/_history?_since=yesterday")
        .await
        .outcome(400);
    assert_eq!(issue["expression"][0], "_since");
    app.get("/fhir/_history?_count=x").await.outcome(400);
    app.get("/fhir/_history?foo=1").await.outcome(400);
}

#[actix_web::test]
async fn paging_links_stay_correct_while_resources_are_written() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create(&patient(&format!("1101051949123100{i}X"))).await;
    }
    let first = app.get("/fhir/Patient/_history?_count=2").await.json();
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // New writes between pages do not shift what the next page returns.
    for i in 5..8 {
        app.create(&patient(&format!("1101051949123100{i}X"))).await;
    }
    let (rest, _) = all_pages(&app, &next).await;
    let mut seen: Vec<String> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.iter())
        .filter(|e| !is_golden(&e["resource"]))
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 5);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "no entry repeated or skipped");
}
