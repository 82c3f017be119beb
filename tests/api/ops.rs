//! Operations endpoints and the CapabilityStatement.

use crate::helpers::{patient, spawn_app};

#[actix_web::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status.as_u16(), 200);
    assert_eq!(app.get("/readyz").await.text(), "ready\n");
    let created = app.create(&patient("11010519491231002X")).await;
    app.get(&format!(
        "/fhir/Patient/{}",
        created["id"].as_str().unwrap()
    ))
    .await;
    app.get("/fhir/Patient/missing").await;
    let m = app.get("/metrics").await.text();
    assert!(
        m.contains(r#"huimin_http_requests_total{interaction="read",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"huimin_http_requests_total{interaction="read",status="404"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"huimin_http_requests_total{interaction="create",status="201"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("huimin_http_request_duration_seconds_bucket{interaction=\"read\""),
        "{m}"
    );
}

#[actix_web::test]
async fn capability_statement_describes_the_server() {
    let app = spawn_app().await;
    let cs = app.get("/fhir/metadata").await.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.3.0");
    assert_eq!(cs["kind"], "instance");
    assert!(cs["format"].as_array().unwrap().iter().any(|f| f == "xml"));
    let rest = &cs["rest"][0];
    let resources = rest["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 141, "every R4B resource type");
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(&i), "{i}");
    }
    assert_eq!(patient["conditionalDelete"], "single");
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "identifier",
        "birthdate",
        "name",
        "family",
        "gender",
        "general-practitioner",
    ] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    let observation = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    assert!(
        observation["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "component-code-value-quantity" && p["type"] == "composite")
    );
    let birthdate = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "birthdate")
        .unwrap();
    assert_eq!(birthdate["type"], "date");
    assert_eq!(
        birthdate["definition"],
        "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    );
    assert_eq!(
        rest["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    let xml = app.get("/fhir/metadata?_format=xml").await;
    assert!(
        xml.text()
            .starts_with("<CapabilityStatement xmlns=\"http://hl7.org/fhir\">")
    );
}
