//! Micro-benchmarks of the per-request FHIR work: validating a resource on write, converting
//! JSON ↔ XML, and the read path's stored-bytes encoding.
//!
//! `cargo bench --bench formats`

use criterion::{Criterion, criterion_group, criterion_main};
use huimin::fhir::json::Json;
use huimin::fhir::{validate, xml};
use std::hint::black_box;

const PATIENT: &str = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"11010519491231002X"},{"system":"urn:oid:2.16.156.10011.1.19","value":"11010519491231002X"}],"active":true,"name":[{"use":"official","family":"测试","given":["甲"]}],"telecom":[{"system":"phone","value":"13800000000","use":"mobile"}],"gender":"female","birthDate":"1980-01-01","address":[{"use":"home","line":["建设路 1 号"],"city":"成都市","district":"锦江区","postalCode":"610000","country":"CN"}],"maritalStatus":{"coding":[{"system":"urn:oid:2.16.156.10011.2.3.3.5","code":"20"}]}}"#;

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_default()
}

fn benches(c: &mut Criterion) {
    c.bench_function("validate Patient (parse, typed model check)", |b| {
        b.iter(|| validate::resource(black_box(PATIENT.as_bytes()), Some("Patient")))
    });
    let obs = example("Observation-example.json");
    c.bench_function("validate Observation-example", |b| {
        b.iter(|| validate::resource(black_box(&obs), Some("Observation")))
    });
    let tree = Json::parse(PATIENT.as_bytes()).unwrap_or(Json::Null);
    c.bench_function("JSON tree parse Patient", |b| {
        b.iter(|| Json::parse(black_box(PATIENT.as_bytes())))
    });
    c.bench_function("JSON -> XML Patient", |b| {
        b.iter(|| xml::json_to_xml(black_box(&tree), false))
    });
    let x = xml::json_to_xml(&tree, false).unwrap_or_default();
    c.bench_function("XML -> JSON Patient", |b| {
        b.iter(|| xml::xml_to_json(black_box(&x)))
    });
    let bundle = example("Bundle-bundle-transaction.json");
    let bundle_tree = Json::parse(&bundle).unwrap_or(Json::Null);
    c.bench_function("JSON -> XML Bundle-bundle-transaction", |b| {
        b.iter(|| xml::json_to_xml(black_box(&bundle_tree), false))
    });
}

criterion_group!(formats, benches);
criterion_main!(formats);
