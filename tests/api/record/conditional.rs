//! Conditional create (If-None-Exist), conditional update and delete, and the basic search
//! they rest on (`_id`, `identifier`).

use serde_json::json;

use crate::helpers::{FHIR_JSON, NOT_GOLDEN, entries_of, pages, patient, spawn_app};

/// Medical record numbers (not checked like ID numbers).
const SYS: &str = "urn:oid:2.16.156.10011.1.13";

#[actix_web::test]
async fn if_none_exist_creates_once() {
    let app = spawn_app().await;
    let body = patient("11010519491231002X").to_string();
    let cond = format!("identifier={SYS}|11010519491231002X");
    let headers = [
        ("Content-Type", FHIR_JSON),
        ("If-None-Exist", cond.as_str()),
    ];
    let first = app
        .send("POST", "/fhir/Patient", &headers, Some(body.as_bytes()))
        .await;
    assert_eq!(first.status.as_u16(), 201, "{}", first.text());
    let second = app
        .send("POST", "/fhir/Patient", &headers, Some(body.as_bytes()))
        .await;
    assert_eq!(second.status.as_u16(), 200, "{}", second.text());
    assert_eq!(first.json()["id"], second.json()["id"]);
    let all = app.get(&format!("/fhir/Patient?{NOT_GOLDEN}")).await.json();
    assert_eq!(all["entry"].as_array().unwrap().len(), 1);

    // Two matches: 412.
    app.create(&patient("11010519491231002X")).await;
    app.send("POST", "/fhir/Patient", &headers, Some(body.as_bytes()))
        .await
        .outcome(412);
    // Unsupported criteria: 400 naming the parameter.
    let bad = [("Content-Type", FHIR_JSON), ("If-None-Exist", "nonsense=x")];
    let issue = app
        .send("POST", "/fhir/Patient", &bad, Some(body.as_bytes()))
        .await
        .outcome(400);
    assert_eq!(issue["expression"][0], "nonsense");
}

#[actix_web::test]
async fn conditional_update_creates_updates_or_refuses() {
    let app = spawn_app().await;
    let url = format!("/fhir/Patient?identifier={SYS}|11010519491231002X");
    let r = app.put_json(&url, &patient("11010519491231002X")).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let mut p = patient("11010519491231002X");
    p["gender"] = json!("male");
    let r = app.put_json(&url, &p).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.json()["meta"]["versionId"], "2");
    app.create(&patient("11010519491231002X")).await;
    app.put_json(&url, &p).await.outcome(412);
    app.put_json("/fhir/Patient", &p).await.outcome(400);
}

#[actix_web::test]
async fn conditional_delete_removes_the_single_match() {
    let app = spawn_app().await;
    let a = app.create(&patient("11010519491231002X")).await;
    app.create(&patient("110105194912310037")).await;
    app.create(&patient("110105194912310037")).await;
    let r = app
        .delete(&format!(
            "/fhir/Patient?identifier={SYS}|11010519491231002X"
        ))
        .await;
    assert_eq!(r.status.as_u16(), 204);
    app.get(&format!("/fhir/Patient/{}", a["id"].as_str().unwrap()))
        .await
        .outcome(410);
    app.delete(&format!(
        "/fhir/Patient?identifier={SYS}|110105194912310037"
    ))
    .await
    .outcome(412);
    // Any search parameter selects; several matches refuse, an unknown parameter is a 400.
    app.delete("/fhir/Patient?birthdate=1980")
        .await
        .outcome(412);
    app.delete("/fhir/Patient?nonsense=1980").await.outcome(400);
    app.delete("/fhir/Patient").await.outcome(400);
}

#[actix_web::test]
async fn search_by_identifier_and_id_with_paging() {
    let app = spawn_app().await;
    let a = app.create(&patient("11010519491231002X")).await;
    let mut other = patient("110105194912310037");
    other["identifier"][0]["system"] = json!("urn:oid:2.16.156.10011.1.12");
    let b = app.create(&other).await;
    let find = |q: &str| {
        let q = q.to_owned();
        let app = &app;
        async move {
            let r = app.get(&format!("/fhir/Patient?{q}")).await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
            let mut ids: Vec<String> = r.json()["entry"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    let (ida, idb) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let mut both = vec![ida.clone(), idb.clone()];
    both.sort();
    assert_eq!(
        find(&format!("identifier={SYS}|11010519491231002X")).await,
        vec![ida.clone()]
    );
    assert_eq!(
        find("identifier=110105194912310037").await,
        vec![idb.clone()]
    );
    assert_eq!(
        find("identifier=urn:oid:2.16.156.10011.1.12|").await,
        vec![idb.clone()]
    );
    assert_eq!(
        find("identifier=|110105194912310037").await,
        Vec::<String>::new()
    );
    assert_eq!(
        find("identifier=11010519491231002X,110105194912310037").await,
        both
    );
    assert_eq!(
        find(&format!("_id={ida}&identifier=110105194912310037")).await,
        Vec::<String>::new()
    );
    assert_eq!(find(&format!("_id={ida},{idb}")).await, both);

    // Paging with _count follows next links to the end.
    for i in 0..5 {
        app.create(&patient(&format!("1101051949123100{i}X"))).await;
    }
    let bundles = pages(&app, &format!("/fhir/Patient?_count=3&{NOT_GOLDEN}")).await;
    assert_eq!(bundles.len(), 3);
    assert!(bundles.iter().all(|b| b["type"] == "searchset"));
    let seen = entries_of(&bundles);
    assert_eq!(seen.len(), 7);

    // POST _search with a form body.
    let r = app
        .send(
            "POST",
            "/fhir/Patient/_search",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(format!("_id={ida}").as_bytes()),
        )
        .await;
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 1);
    app.get("/fhir/Patient?nonsense=x").await.outcome(400);
}

#[actix_web::test]
async fn sixty_four_concurrent_conditional_creates_make_one_resource() {
    // The database decides (the match_keys primary key), so this holds on PostgreSQL with
    // concurrent writer transactions as well as on SQLite's single writer.
    let app = spawn_app().await;
    let body = patient("11010519491231002X").to_string();
    let cond = format!("identifier={SYS}|11010519491231002X");
    let headers = [
        ("Content-Type", FHIR_JSON),
        ("If-None-Exist", cond.as_str()),
    ];
    let replies = futures_util::future::join_all(
        (0..64).map(|_| app.send("POST", "/fhir/Patient", &headers, Some(body.as_bytes()))),
    )
    .await;
    let created = replies.iter().filter(|r| r.status.as_u16() == 201).count();
    let matched = replies.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!((created, matched), (1, 63));
    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    let found = app
        .get(&format!("/fhir/Patient?{cond}&_summary=count"))
        .await;
    assert_eq!(found.json()["total"], 1);
}
