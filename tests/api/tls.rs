//! HTTPS, and hospital systems authenticated by client certificates (mutual TLS).

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::Value;

use crate::helpers::{TestApp, patient, spawn_app_with};

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn` signed by `issuer` (self-signed CA when `None`).
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    serial: u32,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&b.x509v3_context(Some(ca), None))
                .unwrap();
            b.append_extension(san).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

struct Pki {
    ca: X509,
    ca_key: PKey<Private>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = key();
        let ca = certificate("Huimin test CA", &ca_key, None, 1);
        Pki {
            ca,
            ca_key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A certificate signed by this CA and its key.
    fn issue(&self, cn: &str, serial: u32) -> (X509, PKey<Private>) {
        let k = key();
        (
            certificate(cn, &k, Some((&self.ca, &self.ca_key)), serial),
            k,
        )
    }

    fn write(&self, name: &str, pem: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    }

    /// A server with HTTPS and client certificates of this CA (`required` or `optional`).
    async fn server(&self, client_auth: &str) -> TestApp {
        let (cert, k) = self.issue("127.0.0.1", 2);
        let cert = self.write("server.pem", &cert.to_pem().unwrap());
        let k = self.write("server-key.pem", &k.private_key_to_pem_pkcs8().unwrap());
        let ca = self.write("ca.pem", &self.ca.to_pem().unwrap());
        let auth = match client_auth {
            "required" => huimin::config::ClientAuth::Required,
            _ => huimin::config::ClientAuth::Optional,
        };
        spawn_app_with(move |s| {
            s.tls_cert_file = Some(cert);
            s.tls_key_file = Some(k);
            s.tls_client_ca_file = Some(ca);
            s.tls_client_auth = auth;
        })
        .await
    }

    /// A client that trusts this CA, presenting `identity` when given.
    fn client(&self, identity: Option<&(X509, PKey<Private>)>) -> awc::Client {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.cert_store_mut().add_cert(self.ca.clone()).unwrap();
        if let Some((cert, k)) = identity {
            b.set_certificate(cert).unwrap();
            b.set_private_key(k).unwrap();
        }
        awc::Client::builder()
            .connector(awc::Connector::new().openssl(b.build()))
            .timeout(std::time::Duration::from_secs(30))
            .finish()
    }
}

/// The status of a request over HTTPS, or `None` when the connection was refused.
async fn status(
    app: &TestApp,
    client: &awc::Client,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<u16> {
    let port = app.base.rsplit(':').next().unwrap();
    let url = format!("https://127.0.0.1:{port}{path}");
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let sent = match body {
        Some(b) => {
            req.insert_header(("Content-Type", "application/fhir+json"))
                .send_body(b.to_string())
                .await
        }
        None => req.send().await,
    };
    sent.ok().map(|r| r.status().as_u16())
}

/// The body of a GET over HTTPS with a token.
async fn text(app: &TestApp, client: &awc::Client, path: &str, token: &str) -> String {
    let port = app.base.rsplit(':').next().unwrap();
    let mut r = client
        .get(format!("https://127.0.0.1:{port}{path}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    String::from_utf8(r.body().limit(1 << 24).await.unwrap().to_vec()).unwrap()
}

#[actix_web::test]
async fn https_with_optional_client_certificates() {
    let pki = Pki::new();
    let app = pki.server("optional").await;
    // Plain HTTP is not spoken.
    let plain = awc::Client::default();
    assert!(plain.get(app.url("/fhir/metadata")).send().await.is_err());
    // Without a certificate: a token, as ever.
    let anonymous = pki.client(None);
    assert_eq!(
        status(&app, &anonymous, "GET", "/fhir/metadata", None, None).await,
        Some(200)
    );
    assert_eq!(
        status(&app, &anonymous, "GET", "/fhir/Patient", None, None).await,
        Some(401)
    );
    assert_eq!(
        status(
            &app,
            &anonymous,
            "GET",
            "/fhir/Patient",
            Some(&app.token),
            None
        )
        .await,
        Some(200)
    );
    // A hospital system's certificate authenticates it as its institution's system.
    let his = pki.issue("org-3201", 3);
    let hospital = pki.client(Some(&his));
    assert_eq!(
        status(
            &app,
            &hospital,
            "POST",
            "/fhir/Patient",
            None,
            Some(&patient("TLS-1"))
        )
        .await,
        Some(201)
    );
    let admin = app.token_for(huimin::auth::Role::Admin, "system/*.cruds");
    let audit = text(&app, &anonymous, "/fhir/AuditEvent?_count=1000", &admin).await;
    assert!(audit.contains("certificate:org-3201"), "{audit}");
    assert!(audit.contains("Organization/org-3201"), "{audit}");
    // A certificate from another CA is refused in the handshake.
    let other = Pki::new();
    let stranger = other.issue("org-3201", 4);
    let forged = pki.client(Some(&stranger));
    assert_eq!(
        status(&app, &forged, "GET", "/fhir/Patient", None, None).await,
        None
    );
}

#[actix_web::test]
async fn required_client_certificates_refuse_clients_without_one() {
    let pki = Pki::new();
    let app = pki.server("required").await;
    assert_eq!(
        status(&app, &pki.client(None), "GET", "/fhir/metadata", None, None).await,
        None
    );
    let his = pki.issue("org-3202", 5);
    assert_eq!(
        status(
            &app,
            &pki.client(Some(&his)),
            "GET",
            "/fhir/Patient",
            None,
            None
        )
        .await,
        Some(200)
    );
}

#[test]
fn half_a_tls_configuration_stops_start_up() {
    let settings = huimin::config::Settings {
        tls_cert_file: Some("/nonexistent/cert.pem".into()),
        ..Default::default()
    };
    let e = huimin::tls::acceptor(&settings).err().unwrap();
    assert!(format!("{e:#}").contains("HUIMIN_TLS_KEY_FILE"), "{e:#}");
}
