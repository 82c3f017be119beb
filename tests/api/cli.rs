//! The binary: bad settings stop start-up with a message naming them; migrations revert.

use std::process::Command;

fn huimin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_huimin"));
    let dir = tempfile::tempdir().unwrap().keep();
    c.current_dir(&dir).env("HUIMIN_DATA_DIR", dir.join("data"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUIMIN_") && !k.starts_with("HUIMIN_TEST_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn bad_settings_stop_start_up_naming_the_setting() {
    for (var, value) in [
        ("HUIMIN_LISTEN", "not-an-address"),
        ("HUIMIN_DB_POOL_SIZE", "many"),
        ("HUIMIN_DATABASE_URL", "mysql://localhost/x"),
        ("HUIMIN_LOG_FORMAT", "yaml"),
        ("HUIMIN_LISTN", "127.0.0.1:1"),
        ("HUIMIN_AUDIT_RETENTION_DAYS", "30"),
        ("HUIMIN_REDIS_URL", "localhost:6379"),
        ("HUIMIN_BREAK_GLASS_MINUTES", "0"),
        ("HUIMIN_TLS_CLIENT_AUTH", "sometimes"),
        ("HUIMIN_CONSENT_RECHECK_MS", "0"),
    ] {
        let out = huimin().arg("serve").env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} must stop start-up");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}

#[test]
fn migrate_applies_and_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("HUIMIN_TEST_POSTGRES_URL")
        .ok()
        .map(|server| {
            let server = server.trim_end_matches('/').to_owned();
            let name = format!("huimin_test_migrate_{}", std::process::id());
            crate::helpers::create_pg_database(&server, &name);
            (server, name)
        });
    let url = match &pg {
        Some((server, name)) => format!("{server}/{name}"),
        None => format!("sqlite://{}", dir.path().join("m.db").display()),
    };
    let run = |args: &[&str]| {
        let out = huimin()
            .args(args)
            .env("HUIMIN_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run(&["migrate"]);
    assert!(
        !first.starts_with("0 ") && first.contains("migration(s) applied"),
        "{first}"
    );
    assert!(run(&["migrate"]).starts_with("0 migration(s) applied"));
    assert!(run(&["migrate", "--revert"]).starts_with("reverted"));
    assert!(run(&["migrate"]).starts_with("1 migration(s) applied"));
    if let Some((server, name)) = &pg {
        crate::helpers::drop_pg_database(server, name);
    }
}

#[test]
fn token_command_prints_a_verifiable_token() {
    let mut c = huimin();
    let out = c
        .args([
            "token",
            "--role",
            "doctor",
            "--org",
            "Organization/1",
            "--fhir-user",
            "Practitioner/2",
            "--scope",
            "user/*.rs",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.trim().split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["role"], "doctor");
    assert_eq!(claims["fhirUser"], "Practitioner/2");
    assert_eq!(claims["scope"], "user/*.rs");
    let bad = huimin()
        .args(["token", "--role", "superuser"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
