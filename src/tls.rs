//! HTTPS with OpenSSL, and client certificates (mutual TLS) for hospital systems.
//!
//! With `tls_cert_file` and `tls_key_file` the server speaks HTTPS only. With
//! `tls_client_ca_file` it asks each client for a certificate and verifies it against those
//! CA certificates: `tls_client_auth = optional` lets clients without one in (they then need a
//! bearer token), `required` refuses them in the handshake. A client whose certificate does
//! not verify is refused in the handshake either way.
//!
//! A verified certificate authenticates a hospital system (role `his`, scopes
//! `system/*.cruds`) when the request carries no bearer token: its subject's common name (CN)
//! is the institution's Organization id, so the caller is `Organization/<CN>`. A bearer token,
//! when sent, decides as without a certificate.

use std::any::Any;
use std::path::Path;

use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use anyhow::{Context as _, bail};
use openssl::nid::Nid;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509VerifyResult;

use crate::config::{ClientAuth, Settings};

/// The verified client certificate of a connection.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The subject's common name: the institution's Organization id.
    pub common_name: String,
}

/// The TLS acceptor the settings ask for; `None` for plain HTTP.
pub fn acceptor(s: &Settings) -> anyhow::Result<Option<SslAcceptorBuilder>> {
    let (cert, key) = match (&s.tls_cert_file, &s.tls_key_file) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => bail!(
            "invalid setting tls_cert_file / tls_key_file (HUIMIN_TLS_CERT_FILE / HUIMIN_TLS_KEY_FILE): \
             give both for HTTPS, or neither"
        ),
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert)
        .with_context(|| setting_error("tls_cert_file", cert))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .with_context(|| setting_error("tls_key_file", key))?;
    b.check_private_key().context(
        "invalid setting tls_key_file (HUIMIN_TLS_KEY_FILE): it is not the key of tls_cert_file",
    )?;
    if let Some(ca) = &s.tls_client_ca_file {
        b.set_ca_file(ca)
            .with_context(|| setting_error("tls_client_ca_file", ca))?;
        // The CAs' names go to clients so they pick the right certificate.
        let pem = std::fs::read(ca).with_context(|| setting_error("tls_client_ca_file", ca))?;
        let cas = openssl::x509::X509::stack_from_pem(&pem)
            .with_context(|| setting_error("tls_client_ca_file", ca))?;
        let mut stack = openssl::stack::Stack::new()?;
        for c in &cas {
            stack.push(c.subject_name().to_owned()?)?;
        }
        b.set_client_ca_list(stack);
        let mut mode = SslVerifyMode::PEER;
        if s.tls_client_auth == ClientAuth::Required {
            mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        }
        b.set_verify(mode);
    } else if s.tls_client_auth == ClientAuth::Required {
        bail!(
            "invalid setting tls_client_auth (HUIMIN_TLS_CLIENT_AUTH): 'required' needs tls_client_ca_file"
        );
    }
    Ok(Some(b))
}

fn setting_error(name: &str, path: &Path) -> String {
    format!(
        "invalid setting {name} (HUIMIN_{}): cannot use {}",
        name.to_ascii_uppercase(),
        path.display()
    )
}

/// Note a connection's verified client certificate for its requests.
pub fn on_connect(conn: &dyn Any, data: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    let ssl = tls.ssl();
    if ssl.verify_result() != X509VerifyResult::OK {
        return;
    }
    let Some(cert) = ssl.peer_certificate() else {
        return;
    };
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    if let Some(common_name) = cn.filter(|c| crate::fhir::validate::is_valid_id(c)) {
        data.insert(ClientCertificate { common_name });
    }
}
