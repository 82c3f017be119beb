//! JSON → XML → JSON round trips of the official R4B examples kept in `fixtures/examples/`,
//! and validation of each against the R4B model.

use std::path::PathBuf;

use huimin::fhir::json::Json;
use huimin::fhir::{validate, xml};

fn examples_dir() -> PathBuf {
    std::env::var_os("HUIMIN_TEST_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/examples"))
}

#[test]
fn official_examples_round_trip_through_xml() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let original = Json::parse(&bytes).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = xml::json_to_xml(&original, false)
            .map_err(|e| format!("to XML: {} at {}", e.message, e.path))
            .and_then(|x| {
                xml::xml_to_json(&x).map_err(|e| format!("from XML: {} at {}", e.message, e.path))
            });
        match result {
            Ok(back) if back == original => {}
            Ok(_) => failures.push(format!("{name}: differs after the round trip")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} examples found");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn official_examples_validate() {
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if let Err(issues) = validate::resource(&bytes, None) {
            failures.push(format!("{}: {:?}", path.display(), issues[0]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
