//! Bounded work per request: what one request can make the server do stays proportional to
//! what it sent (a name's pinyin, a JSON Patch's result), and reading a body has a deadline.

use serde_json::json;

use crate::helpers::{NOT_GOLDEN, patient, spawn_app};

#[actix_rt::test]
async fn a_patch_cannot_build_a_resource_larger_than_a_body() {
    let app = spawn_app().await;
    let created = app.create(&patient("LIM-1")).await;
    let id = created["id"].as_str().unwrap();
    // Each op appends the whole name list to itself: 40 of them would make 2^40 copies.
    let bomb: Vec<_> = (0..40)
        .map(|_| json!({"op": "copy", "from": "/name", "path": "/name/-"}))
        .collect();
    let body = serde_json::to_vec(&bomb).unwrap();
    assert!(body.len() < 4096);
    let r = app
        .send(
            "PATCH",
            &format!("/fhir/Patient/{id}"),
            &[("Content-Type", "application/json-patch+json")],
            Some(&body),
        )
        .await;
    r.outcome(413);
    let now = app.get(&format!("/fhir/Patient/{id}")).await.json();
    assert_eq!(now["meta"]["versionId"], "1");
}

#[actix_rt::test]
async fn a_very_long_name_is_stored_and_found_without_stalling_the_writer() {
    let app = spawn_app().await;
    let mut p = patient("LIM-2");
    p["name"] = json!([{"family": "张".repeat(1_000_000), "given": ["伟"]}]);
    let r = app.post_json("/fhir/Patient", &p).await;
    assert_eq!(r.status, 201, "{}", &r.text()[..200.min(r.text().len())]);
    // The writer still answers the next write at once, and the name's spelling is searchable.
    let other = app.create(&patient("LIM-3")).await;
    assert!(other["id"].is_string());
    let found = app
        .get(&format!(
            "/fhir/Patient?name-pinyin=zhangzhang&_summary=count&{NOT_GOLDEN}"
        ))
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
}

#[actix_rt::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use std::io::{Read, Write};
    let app = crate::helpers::spawn_app_with(|s| s.body_timeout_ms = 300).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let token = app.token.clone();
    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{{\"resourceType\""
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("timeout"), "{answer}");
}

#[actix_rt::test]
async fn links_ignore_forwarded_headers_unless_configured() {
    let app = spawn_app().await;
    let r = app
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", "application/fhir+json"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Proto", "https"),
            ],
            Some(patient("LIM-4").to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 201);
    let location = r.header("location").unwrap();
    assert!(!location.contains("evil.example"), "{location}");
    assert!(location.starts_with(&app.base), "{location}");
    let trusting = crate::helpers::spawn_app_with(|s| s.trust_forwarded = true).await;
    let r = trusting
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", "application/fhir+json"),
                ("X-Forwarded-Host", "hie.example.cn"),
                ("X-Forwarded-Proto", "https"),
            ],
            Some(patient("LIM-5").to_string().as_bytes()),
        )
        .await;
    assert!(
        r.header("location")
            .unwrap()
            .starts_with("https://hie.example.cn/fhir/"),
        "{:?}",
        r.header("location")
    );
}

#[cfg(unix)]
#[actix_rt::test]
async fn the_database_and_audit_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    app.create(&patient("LIM-6")).await;
    if app.pg_database().is_some() {
        return; // PostgreSQL keeps its own files.
    }
    for entry in std::fs::read_dir(&app.settings.data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("huimin.db") {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
        }
    }
    let logs = app.settings.data_dir.join("audit-log");
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
    }
}
