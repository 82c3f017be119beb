//! Bearer tokens: dev HS256, production RS256/ES256 (PEM and JWKS), claims and SMART scopes.

use base64::Engine as _;
use huimin::auth::{Claims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{TestApp, patient, spawn_app, spawn_app_with};

fn keys_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/keys")
}

fn claims(iss: &str, aud: &str, exp_in: i64) -> Claims {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    Claims {
        sub: "his-1".into(),
        iss: iss.into(),
        aud: aud.into(),
        exp: (now + exp_in) as u64,
        nbf: None,
        iat: None,
        scope: "system/*.cruds".into(),
        role: Role::His,
        org: Some("Organization/1".into()),
        fhir_user: None,
        area: None,
    }
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    app.send(
        "GET",
        "/fhir/Patient/x",
        &[("Authorization", auth.as_str())],
        None,
    )
    .await
    .status
    .as_u16()
}

#[actix_web::test]
async fn missing_and_bad_tokens_are_401() {
    let app = spawn_app().await;
    // An empty Authorization value here means: send no Authorization header at all.
    let r = app
        .send("GET", "/fhir/Patient/x", &[("Authorization", "")], None)
        .await;
    let issue = r.outcome(401);
    assert_eq!(issue["code"], "login");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let basic = app
        .send(
            "GET",
            "/fhir/Patient/x",
            &[("Authorization", "Basic abc")],
            None,
        )
        .await;
    assert_eq!(basic.status.as_u16(), 401);

    assert_eq!(status_with(&app, "not.a.token").await, 401);
    // alg: none
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let c = serde_json::to_value(claims("huimin-dev", "huimin", 600)).unwrap();
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(c.clone())
    );
    assert_eq!(status_with(&app, &none).await, 401);
    // Tampered payload: a valid token with its claims swapped.
    let good = app.token.clone();
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = c.clone();
    evil["scope"] = json!("system/*.cruds");
    evil["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(evil), parts[2]);
    assert_eq!(status_with(&app, &tampered).await, 401);
    // Signed with another secret, expired, wrong audience, wrong issuer.
    let secret = huimin::auth::dev_secret(&app.settings.data_dir, false).unwrap();
    let sign = |c: &Claims, key: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    assert_eq!(
        status_with(
            &app,
            &sign(&claims("huimin-dev", "huimin", 600), b"another secret")
        )
        .await,
        401
    );
    assert_eq!(
        status_with(&app, &sign(&claims("huimin-dev", "huimin", -600), &secret)).await,
        401
    );
    assert_eq!(
        status_with(&app, &sign(&claims("huimin-dev", "other", 600), &secret)).await,
        401
    );
    assert_eq!(
        status_with(&app, &sign(&claims("someone", "huimin", 600), &secret)).await,
        401
    );
    let mut future = claims("huimin-dev", "huimin", 600);
    future.nbf = Some(jsonwebtoken::get_current_timestamp() + 3600);
    assert_eq!(status_with(&app, &sign(&future, &secret)).await, 401);
    // A few seconds of clock skew are allowed, not a minute.
    assert_eq!(
        status_with(&app, &sign(&claims("huimin-dev", "huimin", -20), &secret)).await,
        401
    );
    let mut soon = claims("huimin-dev", "huimin", 600);
    soon.nbf = Some(jsonwebtoken::get_current_timestamp() + 20);
    assert_eq!(status_with(&app, &sign(&soon, &secret)).await, 401);
    // A hospital system or doctor acts for one institution, named as `Organization/<id>`:
    // without one (or with a full URL) the token is refused, not let through unrestricted.
    for role in [Role::His, Role::Doctor] {
        for org in [
            None,
            Some("https://his.example/fhir/Organization/1"),
            Some("Organization/"),
        ] {
            let mut c = claims("huimin-dev", "huimin", 600);
            c.role = role;
            c.org = org.map(str::to_owned);
            assert_eq!(
                status_with(&app, &sign(&c, &secret)).await,
                401,
                "{role:?} {org:?}"
            );
        }
    }
    // And the proper one works.
    assert_eq!(
        status_with(&app, &sign(&claims("huimin-dev", "huimin", 600), &secret)).await,
        404
    );
}

#[actix_web::test]
async fn scopes_are_enforced_per_interaction_and_type() {
    let app = spawn_app().await;
    let created = app.create(&patient("11010519491231002X")).await;
    let path = format!("/fhir/Patient/{}", created["id"].as_str().unwrap());
    let obs_reader = app.token_for(Role::Doctor, "user/Observation.rs");
    let auth = format!("Bearer {obs_reader}");
    let h = [("Authorization", auth.as_str())];
    let issue = app.send("GET", &path, &h, None).await.outcome(403);
    assert_eq!(issue["code"], "forbidden");
    app.send("GET", "/fhir/Observation/none", &h, None)
        .await
        .outcome(404);
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
        .to_string();
    app.send(
        "POST",
        "/fhir/Observation",
        &[h[0], ("Content-Type", "application/fhir+json")],
        Some(obs.as_bytes()),
    )
    .await
    .outcome(403);
    app.send("GET", "/fhir/_history", &h, None)
        .await
        .outcome(403);

    let reader = app.token_for(Role::Doctor, "user/*.rs openid fhirUser");
    let auth = format!("Bearer {reader}");
    let h = [("Authorization", auth.as_str())];
    assert_eq!(app.send("GET", &path, &h, None).await.status.as_u16(), 200);
    app.send("DELETE", &path, &h, None).await.outcome(403);
    app.send(
        "PUT",
        &path,
        &[h[0], ("Content-Type", "application/fhir+json")],
        Some(created.to_string().as_bytes()),
    )
    .await
    .outcome(403);
    assert_eq!(
        app.get(&path).await.status.as_u16(),
        200,
        "nothing was changed"
    );
}

#[actix_web::test]
async fn metadata_and_smart_configuration_are_public() {
    let mut app = spawn_app().await;
    app.token = String::new();
    assert_eq!(app.get("/fhir/metadata").await.status.as_u16(), 200);
    let smart = app.get("/fhir/.well-known/smart-configuration").await;
    assert_eq!(smart.status.as_u16(), 200);
    assert!(
        smart.json()["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "permission-v2")
    );
}

/// Production mode needs a keyring for identifiers at rest: one made as an operator would.
fn production_keyring(s: &mut huimin::config::Settings) {
    let path = s.data_dir.join("operator-keyring.json");
    huimin::protect::KeyringFile {
        keys: vec![huimin::protect::KeyEntry::generate().unwrap()],
    }
    .write_new(&path)
    .unwrap();
    s.keyring_file = Some(path);
}

#[test]
fn production_mode_without_a_keyring_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = huimin::config::Settings {
        data_dir: dir.path().to_path_buf(),
        auth_mode: huimin::config::AuthMode::Jwt,
        auth_issuer: Some("https://idp.example.cn".into()),
        auth_keys_file: Some(keys_dir().join("rsa-public.pem")),
        ..Default::default()
    };
    let e = format!("{:#}", settings.protection().unwrap_err());
    assert!(
        e.contains("HUIMIN_KEYRING_FILE") && e.contains("no keyring"),
        "{e}"
    );
    // Unless identifiers are not to be protected.
    let off = huimin::config::Settings {
        protect_identifiers: false,
        ..settings
    };
    assert!(!off.protection().unwrap().is_enabled());
}

fn production_claims() -> Claims {
    claims("https://idp.example.cn", "huimin", 600)
}

#[actix_web::test]
async fn production_mode_verifies_rs256_with_a_pem_key() {
    let app = spawn_app_with(|s| {
        s.auth_mode = huimin::config::AuthMode::Jwt;
        s.auth_issuer = Some("https://idp.example.cn".into());
        s.auth_keys_file = Some(keys_dir().join("rsa-public.pem"));
        production_keyring(s);
    })
    .await;
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(keys_dir().join("rsa-private.pem")).unwrap())
            .unwrap();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &production_claims(), &key).unwrap();
    assert_eq!(status_with(&app, &token).await, 404);
    // An HS256 token signed with the public key as secret (algorithm confusion) is refused.
    let pem = std::fs::read(keys_dir().join("rsa-public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &production_claims(),
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    assert_eq!(status_with(&app, &confused).await, 401);
    let mut wrong_aud = production_claims();
    wrong_aud.aud = "elsewhere".into();
    let t = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &wrong_aud, &key).unwrap();
    assert_eq!(status_with(&app, &t).await, 401);
}

#[actix_web::test]
async fn production_mode_verifies_es256_and_rs256_from_a_jwks() {
    let app = spawn_app_with(|s| {
        s.auth_mode = huimin::config::AuthMode::Jwt;
        s.auth_issuer = Some("https://idp.example.cn".into());
        s.auth_keys_file = Some(keys_dir().join("jwks.json"));
        production_keyring(s);
    })
    .await;
    let ec = EncodingKey::from_ec_pem(&std::fs::read(keys_dir().join("ec-private.pem")).unwrap())
        .unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    let token = jsonwebtoken::encode(&h, &production_claims(), &ec).unwrap();
    assert_eq!(status_with(&app, &token).await, 404);
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(keys_dir().join("rsa-private.pem")).unwrap())
            .unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    assert_eq!(
        status_with(
            &app,
            &jsonwebtoken::encode(&h, &production_claims(), &rsa).unwrap()
        )
        .await,
        404
    );
    // Unknown kid, or an expired token, is refused.
    h.kid = Some("nope".into());
    assert_eq!(
        status_with(
            &app,
            &jsonwebtoken::encode(&h, &production_claims(), &rsa).unwrap()
        )
        .await,
        401
    );
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    let mut old = production_claims();
    old.exp = 1_000_000;
    assert_eq!(
        status_with(&app, &jsonwebtoken::encode(&h, &old, &ec).unwrap()).await,
        401
    );
}

#[actix_web::test]
async fn update_without_create_scope_cannot_create_and_writes_nothing() {
    let app = spawn_app().await;
    let updater = app.token_for(Role::His, "system/Patient.rus");
    let auth = format!("Bearer {updater}");
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/fhir+json"),
    ];
    let mut p = patient("11010519491231002X");
    p["id"] = json!("new-by-put");
    let body = p.to_string();
    app.send("PUT", "/fhir/Patient/new-by-put", &h, Some(body.as_bytes()))
        .await
        .outcome(403);
    app.get("/fhir/Patient/new-by-put").await.outcome(404);
    let cond = "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13|11010519491231002X";
    p.as_object_mut().unwrap().remove("id");
    app.send("PUT", cond, &h, Some(p.to_string().as_bytes()))
        .await
        .outcome(403);
    assert!(
        app.get("/fhir/Patient").await.json().get("entry").is_none(),
        "nothing was created"
    );
    // An existing resource can still be updated with that scope.
    let created = app.create(&patient("11010519491231002X")).await;
    let path = format!("/fhir/Patient/{}", created["id"].as_str().unwrap());
    let r = app
        .send("PUT", &path, &h, Some(created.to_string().as_bytes()))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
}
