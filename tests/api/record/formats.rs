//! JSON and XML both ways over HTTP, `_format`, `_pretty`, validation errors and size limits.

use serde_json::json;

use crate::helpers::{FHIR_JSON, patient, spawn_app, spawn_app_with};

const FHIR_XML: &str = "application/fhir+xml";

#[actix_web::test]
async fn xml_in_and_out() {
    let app = spawn_app().await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>测试 甲</p></div></text>
  <identifier><system value="urn:oid:2.16.156.10011.1.3"/><value value="11010519491231002X"/></identifier>
  <name><family value="测试"/><given value="甲"/></name>
  <gender value="female"/>
  <birthDate value="1980-01-01"/>
</Patient>"#;
    let r = app
        .send(
            "POST",
            "/fhir/Patient",
            &[("Content-Type", FHIR_XML), ("Accept", FHIR_XML)],
            Some(xml.as_bytes()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with(FHIR_XML));
    let text = r.text();
    assert!(
        text.starts_with(r#"<Patient xmlns="http://hl7.org/fhir"><id value=""#),
        "{text}"
    );
    assert!(text.contains("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>测试 甲</p></div>"));
    let loc = r.header("location").unwrap();

    // The same resource as JSON, by Accept and by _format (which wins over Accept).
    let j = app
        .send("GET", &loc, &[("Accept", FHIR_JSON)], None)
        .await
        .json();
    assert_eq!(j["name"][0]["given"][0], "甲");
    assert_eq!(
        j["text"]["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>测试 甲</p></div>"
    );
    let x = app
        .send(
            "GET",
            &format!("{loc}?_format=xml"),
            &[("Accept", FHIR_JSON)],
            None,
        )
        .await;
    assert!(x.header("content-type").unwrap().starts_with(FHIR_XML));
    let pretty = app.get(&format!("{loc}?_format=json&_pretty=true")).await;
    assert!(
        pretty.text().contains("\n  \"resourceType\": \"Patient\""),
        "{}",
        pretty.text()
    );
    let xpretty = app
        .get(&format!(
            "{loc}?_format=application/fhir%2Bxml&_pretty=true"
        ))
        .await;
    assert!(
        xpretty.text().contains("\n  <id value="),
        "{}",
        xpretty.text()
    );
    app.get(&format!("{loc}?_format=csv")).await.outcome(406);
}

#[actix_web::test]
async fn json_to_xml_to_json_over_http_is_lossless() {
    let app = spawn_app().await;
    let original = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20T08:30:00+08:00",
        "valueQuantity": {"value": 36.5, "unit": "Cel"},
        "component": [{"code": {"text": "a"}, "valueString": "x"}]
    });
    let created = app.create(&original).await;
    let loc = format!("/fhir/Observation/{}", created["id"].as_str().unwrap());
    let xml = app.get(&format!("{loc}?_format=xml")).await.body;
    // Write the XML back as a new version and compare.
    let r = app
        .send("PUT", &loc, &[("Content-Type", FHIR_XML)], Some(&xml))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let mut back = r.json();
    let mut first = created.clone();
    back.as_object_mut().unwrap().remove("meta");
    first.as_object_mut().unwrap().remove("meta");
    assert_eq!(back, first);
}

#[actix_web::test]
async fn errors_follow_the_negotiated_format() {
    let app = spawn_app().await;
    let r = app
        .send(
            "GET",
            "/fhir/Patient/missing",
            &[("Accept", FHIR_XML)],
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);
    assert!(
        r.text()
            .starts_with("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"),
        "{}",
        r.text()
    );
    assert!(r.header("content-type").unwrap().starts_with(FHIR_XML));
}

#[actix_web::test]
async fn invalid_resources_are_refused_with_the_element_named_and_nothing_stored() {
    let app = spawn_app().await;
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("{\"resourceType\":\"Patient\",", "structure", None),
        (
            r#"{"resourceType":"Patient","foo":1}"#,
            "structure",
            Some("Patient.foo"),
        ),
        (
            r#"{"resourceType":"Patient","active":"yes"}"#,
            "value",
            Some("Patient.active"),
        ),
        (
            r#"{"resourceType":"Patient","birthDate":"1980-13-45"}"#,
            "value",
            Some("Patient.birthDate"),
        ),
        (
            r#"{"resourceType":"Patient","name":[{"given":[1]}]}"#,
            "value",
            Some("Patient.name[0].given[0]"),
        ),
        (
            r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#,
            "invalid",
            Some("resourceType"),
        ),
        (
            r#"{"resourceType":"Patient","name":[]}"#,
            "value",
            Some("Patient.name"),
        ),
        (r#"[1,2]"#, "structure", None),
        (r#"{"name":[]}"#, "required", Some("resourceType")),
    ];
    for (body, code, expr) in cases {
        let issue = app
            .send(
                "POST",
                "/fhir/Patient",
                &[("Content-Type", FHIR_JSON)],
                Some(body.as_bytes()),
            )
            .await
            .outcome(400);
        assert_eq!(issue["code"], code, "{body}: {issue}");
        if let Some(e) = expr {
            assert_eq!(issue["expression"][0], e, "{body}: {issue}");
        }
    }
    let xml_cases = [
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#,
            Some("Patient.foo"),
        ),
        (
            r#"<!DOCTYPE x [<!ENTITY e "boom">]><Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>"#,
            None,
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#,
            Some("Patient.active"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/>"#,
            None,
        ),
    ];
    for (body, expr) in xml_cases {
        let issue = app
            .send(
                "POST",
                "/fhir/Patient",
                &[("Content-Type", FHIR_XML)],
                Some(body.as_bytes()),
            )
            .await
            .outcome(400);
        if let Some(e) = expr {
            assert_eq!(issue["expression"][0], e, "{body}: {issue}");
        }
    }
    app.send(
        "POST",
        "/fhir/Patient",
        &[("Content-Type", "text/plain")],
        Some(b"hello"),
    )
    .await
    .outcome(415);
    app.send(
        "POST",
        "/fhir/Patient",
        &[("Content-Type", FHIR_JSON)],
        Some(b""),
    )
    .await
    .outcome(400);
    let history = app.get("/fhir/_history").await.json();
    assert!(
        history.get("entry").is_none(),
        "nothing of a rejected request is stored: {history}"
    );
}

#[actix_web::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 4096).await;
    let mut p = patient("11010519491231002X");
    p["name"][0]["text"] = json!("x".repeat(8000));
    let issue = app.post_json("/fhir/Patient", &p).await.outcome(413);
    assert_eq!(issue["code"], "too-long");
    assert_eq!(
        app.post_json("/fhir/Patient", &patient("11010519491231002X"))
            .await
            .status
            .as_u16(),
        201
    );
}
