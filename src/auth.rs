//! Authentication (bearer JWT) and authorisation by SMART v2 scopes.
//!
//! Two modes:
//! - `dev` (the embedded default): an HS256 secret is generated in the data directory on first
//!   start, the log says loudly that this is development mode, and `huimin token` prints tokens.
//! - `jwt` (production): RS256 or ES256 tokens are verified against the public keys in a PEM or
//!   JWKS file (`HUIMIN_AUTH_KEYS_FILE`), with `iss`, `aud`, `exp` and `nbf` checked.
//!
//! Claims: `sub`, `scope` (space separated SMART scopes such as `system/*.cruds`,
//! `user/Observation.rs`, `patient/*.rs`; v1 `.read`/`.write`/`.*` are accepted too), `role`
//! (`his`, `doctor`, `resident`, `official`, `admin`), `org` (`Organization/<id>`) and
//! `fhirUser` (`Practitioner/<id>`, `Patient/<id>`, …). Scopes are enforced per interaction
//! and resource type; scopes narrowed by search parameters (`?category=…`) grant nothing yet.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthMode, Settings};
use crate::error::ApiError;

/// Who may call: the roles of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    His,
    Doctor,
    Resident,
    Official,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "his" => Ok(Role::His),
            "doctor" => Ok(Role::Doctor),
            "resident" => Ok(Role::Resident),
            "official" => Ok(Role::Official),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role '{other}' (his, doctor, resident, official, admin)"
            )),
        }
    }
}

/// Token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
    pub scope: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The area an `official` answers for: a GB/T 2260 code (province, city or district,
    /// six digits) or a township's nine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
}

/// The permissions of SMART v2: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Perm {
    fn letter(self) -> char {
        match self {
            Perm::Create => 'c',
            Perm::Read => 'r',
            Perm::Update => 'u',
            Perm::Delete => 'd',
            Perm::Search => 's',
        }
    }
}

/// One resource scope: context (`patient`, `user`, `system`), type (`None` = `*`), letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: String,
    pub resource_type: Option<String>,
    pub perms: String,
}

impl Scope {
    /// Parse one scope; `None` for scopes that grant no resource access (openid, launch, …).
    pub fn parse(s: &str) -> Option<Scope> {
        let (context, rest) = s.split_once('/')?;
        if !matches!(context, "patient" | "user" | "system") || rest.contains('?') {
            return None;
        }
        let (ty, perms) = rest.rsplit_once('.')?;
        let perms = match perms {
            "read" => "rs".to_owned(),
            "write" => "cud".to_owned(),
            "*" => "cruds".to_owned(),
            p if !p.is_empty() && is_ordered_subset(p) => p.to_owned(),
            _ => return None,
        };
        let resource_type = match ty {
            "*" => None,
            t if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => Some(t.to_owned()),
            _ => return None,
        };
        Some(Scope {
            context: context.to_owned(),
            resource_type,
            perms,
        })
    }

    pub fn grants(&self, perm: Perm, resource_type: Option<&str>) -> bool {
        let type_ok = match (&self.resource_type, resource_type) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        type_ok && self.perms.contains(perm.letter())
    }
}

/// SMART v2 letters must appear in the order c r u d s, each at most once.
fn is_ordered_subset(p: &str) -> bool {
    let mut last = None;
    for c in p.chars() {
        let Some(i) = "cruds".find(c) else {
            return false;
        };
        if last.is_some_and(|l| i <= l) {
            return false;
        }
        last = Some(i);
    }
    true
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
    pub org: Option<String>,
    pub fhir_user: Option<String>,
    /// An official's area (see [`Claims::area`]).
    pub area: Option<String>,
    pub scopes: Vec<Scope>,
    /// Emergency access (break-glass): the reason a doctor stated in the
    /// `X-Break-Glass-Reason` header of this request.
    pub break_glass: Option<String>,
    /// The purpose of use stated in `X-Purpose-Of-Use` (HL7 v3 ActReason); treatment when
    /// none is stated.
    pub purpose: Option<String>,
}

/// The header a hospital system or doctor states the purpose of a request in.
pub const PURPOSE_HEADER: &str = "x-purpose-of-use";

/// Purposes of use a `his` or `doctor` caller may state (HL7 v3 ActReason), with their names:
/// treatment, coordination of care (referrals, 转诊), research, public health. Emergency
/// treatment is stated with `X-Break-Glass-Reason`.
pub const PURPOSES: &[(&str, &str)] = &[
    ("TREAT", "treatment"),
    ("COC", "coordination of care"),
    ("HRESCH", "healthcare research"),
    ("PUBHLTH", "public health"),
];

/// The header a doctor states an emergency in (break-glass, 破窗).
pub const BREAK_GLASS_HEADER: &str = "x-break-glass-reason";

impl Caller {
    /// The platform itself as the author of its own audited work (`sub`, e.g.
    /// `huimin:hold-expiry`): an administrator with no scopes and no institution.
    pub fn platform(sub: &str) -> Caller {
        Caller {
            sub: sub.to_owned(),
            role: Role::Admin,
            org: None,
            fhir_user: None,
            area: None,
            scopes: Vec::new(),
            break_glass: None,
            purpose: None,
        }
    }

    /// Allow `perm` on `resource_type` (`None` for system-wide interactions) or answer 403.
    pub fn require(&self, perm: Perm, resource_type: Option<&str>) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s.grants(perm, resource_type)) {
            Ok(())
        } else {
            let what = resource_type.unwrap_or("all resource types");
            Err(ApiError::Forbidden(format!(
                "the token's scopes do not allow '{}' on {what}",
                perm.letter()
            )))
        }
    }
}

/// Verifies tokens.
pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    /// Tokens already verified, with their expiry: a client sends the same token with every
    /// request, and checking a signature costs more than the rest of a read.
    verified: Mutex<HashMap<String, (Caller, u64)>>,
}

/// Verified tokens remembered at most; the cache is emptied when full.
const MAX_VERIFIED: usize = 10_000;

enum Keys {
    Single(DecodingKey),
    /// JWKS: keys by `kid`, with their algorithm when the JWK names one.
    Set(HashMap<String, DecodingKey>, Option<DecodingKey>),
}

impl Authenticator {
    /// Build from settings; in dev mode the development secret is created when missing.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Authenticator> {
        match s.auth_mode {
            AuthMode::Dev => {
                let secret = dev_secret(&s.data_dir, true)?;
                let mut v = Validation::new(Algorithm::HS256);
                v.set_issuer(&[s.issuer()]);
                v.set_audience(&[&s.auth_audience]);
                v.validate_nbf = true;
                v.leeway = TOKEN_LEEWAY_SECS;
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                Ok(Authenticator {
                    keys: Keys::Single(DecodingKey::from_secret(&secret)),
                    validation: v,
                    verified: Mutex::new(HashMap::new()),
                })
            }
            AuthMode::Jwt => {
                let path = s
                    .auth_keys_file
                    .as_deref()
                    .context("auth_keys_file is required in jwt mode")?;
                let keys = load_public_keys(path)?;
                let mut v = Validation::new(Algorithm::RS256);
                v.algorithms = vec![Algorithm::RS256, Algorithm::ES256];
                v.set_issuer(&[s.issuer()]);
                v.set_audience(&[&s.auth_audience]);
                v.validate_nbf = true;
                v.leeway = TOKEN_LEEWAY_SECS;
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                Ok(Authenticator {
                    keys,
                    validation: v,
                    verified: Mutex::new(HashMap::new()),
                })
            }
        }
    }

    /// Verify a bearer token and return the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        {
            let cache = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((caller, exp)) = cache.get(token)
                && now < *exp
            {
                return Ok(caller.clone());
            }
        }
        let (caller, exp) = self.verify_signature(token)?;
        let mut cache = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_VERIFIED {
            cache.clear();
        }
        cache.insert(token.to_owned(), (caller.clone(), exp));
        Ok(caller)
    }

    /// Full verification: signature, algorithm, issuer, audience, expiry, not-before.
    fn verify_signature(&self, token: &str) -> Result<(Caller, u64), ApiError> {
        let unauthorized = |why: &str| ApiError::Unauthorized(format!("invalid token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed"))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(unauthorized("algorithm not accepted"));
        }
        let key = match &self.keys {
            Keys::Single(k) => k,
            Keys::Set(by_kid, only) => match header.kid.as_deref() {
                Some(kid) => by_kid
                    .get(kid)
                    .ok_or_else(|| unauthorized("unknown key id"))?,
                None => only
                    .as_ref()
                    .ok_or_else(|| unauthorized("the token names no key id"))?,
            },
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => unauthorized("expired"),
                K::ImmatureSignature => unauthorized("not yet valid"),
                K::InvalidAudience => unauthorized("wrong audience"),
                K::InvalidIssuer => unauthorized("wrong issuer"),
                K::InvalidSignature => unauthorized("bad signature"),
                K::MissingRequiredClaim(c) => unauthorized(&format!("missing claim {c}")),
                _ => unauthorized("rejected"),
            }
        })?;
        let c = data.claims;
        // An institution's system or doctor acts for one institution, named as a reference:
        // custody and consent are decided by it, so a token without one (or with a full URL,
        // which names no institution of this platform) is refused rather than let through
        // unrestricted.
        if matches!(c.role, Role::His | Role::Doctor) && !is_institution(c.org.as_deref()) {
            return Err(unauthorized(
                "a his or doctor token must name its institution as org: Organization/<id>",
            ));
        }
        // An official answers for one area: statistics are scoped by it, so a token without
        // one is refused rather than read as the whole region.
        if c.role == Role::Official && !is_area(c.area.as_deref()) {
            return Err(unauthorized(
                "an official token must name its area as area: a GB/T 2260 code (6 digits) or a township's (9)",
            ));
        }
        // A token not yet valid is refused above, so it is never cached early.
        let exp = c.exp;
        let caller = Caller {
            sub: c.sub,
            role: c.role,
            org: c.org,
            fhir_user: c.fhir_user,
            area: c.area,
            scopes: c
                .scope
                .split_whitespace()
                .filter_map(Scope::parse)
                .collect(),
            break_glass: None,
            purpose: None,
        };
        Ok((caller, exp))
    }
}

/// Clock skew allowed on `exp` and `nbf`: a few seconds between the issuer's clock and ours.
pub const TOKEN_LEEWAY_SECS: u64 = 5;

/// Whether `area` is an area code: GB/T 2260 (six digits) or a township's (nine).
pub fn is_area(area: Option<&str>) -> bool {
    area.is_some_and(|a| matches!(a.len(), 6 | 9) && a.bytes().all(|b| b.is_ascii_digit()))
}

/// The prefix the codes of the areas inside `area` share: `510000` (a province) → `51`,
/// `510100` (a city) → `5101`, a district's or a township's code itself.
pub fn area_prefix(area: &str) -> &str {
    if area.len() == 6 {
        if let Some(p) = area.strip_suffix("0000") {
            return p;
        }
        if let Some(p) = area.strip_suffix("00") {
            return p;
        }
    }
    area
}

/// Whether `org` is a well-formed institution reference, `Organization/<id>`.
pub fn is_institution(org: Option<&str>) -> bool {
    org.and_then(|o| o.strip_prefix("Organization/"))
        .is_some_and(crate::fhir::validate::is_valid_id)
}

fn load_public_keys(path: &Path) -> anyhow::Result<Keys> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading auth_keys_file {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim_start().starts_with('{') {
        let set: JwkSet = serde_json::from_slice(&bytes)
            .with_context(|| format!("auth_keys_file {} is not a JWKS", path.display()))?;
        let mut by_kid = HashMap::new();
        let mut only = None;
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk)
                .with_context(|| format!("unsupported key in {}", path.display()))?;
            if let Some(kid) = &jwk.common.key_id {
                by_kid.insert(kid.clone(), key.clone());
            }
            if set.keys.len() == 1 {
                only = Some(key);
            }
        }
        if set.keys.is_empty() {
            bail!("auth_keys_file {} holds no keys", path.display());
        }
        Ok(Keys::Set(by_kid, only))
    } else if text.contains("BEGIN PUBLIC KEY") || text.contains("BEGIN RSA PUBLIC KEY") {
        let key = DecodingKey::from_rsa_pem(&bytes)
            .or_else(|_| DecodingKey::from_ec_pem(&bytes))
            .with_context(|| {
                format!(
                    "auth_keys_file {} is not an RSA or EC public key",
                    path.display()
                )
            })?;
        Ok(Keys::Single(key))
    } else {
        bail!(
            "auth_keys_file {} is neither a PEM public key nor a JWKS",
            path.display()
        )
    }
}

const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// The development HS256 secret in `data_dir`, created on first use when `create` is set.
pub fn dev_secret(data_dir: &Path, create: bool) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(DEV_SECRET_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64", path.display()));
    }
    if !create {
        bail!(
            "no development secret at {}: start the server once in dev mode",
            path.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);
    crate::files::write_private(&path, encoded.as_bytes())?;
    tracing::warn!(
        file = %path.display(),
        "DEVELOPMENT MODE: generated a new HS256 token secret; do not use auth_mode=dev in production"
    );
    Ok(secret)
}

/// What `huimin token` signs.
pub struct TokenRequest {
    pub sub: String,
    pub role: Role,
    pub scope: String,
    pub org: Option<String>,
    pub fhir_user: Option<String>,
    /// An official's area.
    pub area: Option<String>,
    pub ttl_secs: u64,
}

/// Sign a development token with the dev secret.
pub fn dev_token(s: &Settings, req: &TokenRequest) -> anyhow::Result<String> {
    if s.auth_mode != AuthMode::Dev {
        bail!("huimin token signs development tokens only; auth_mode is jwt");
    }
    let secret = dev_secret(&s.data_dir, true)?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: req.sub.clone(),
        iss: s.issuer().to_owned(),
        aud: s.auth_audience.clone(),
        exp: now + req.ttl_secs,
        nbf: Some(now.saturating_sub(5)),
        iat: Some(now),
        scope: req.scope.clone(),
        role: req.role,
        org: req.org.clone(),
        fhir_user: req.fhir_user.clone(),
        area: req.area.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .context("signing the token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let s = Scope::parse("system/*.cruds").unwrap();
        assert!(s.grants(Perm::Delete, Some("Patient")));
        let s = Scope::parse("user/Observation.rs").unwrap();
        assert!(s.grants(Perm::Read, Some("Observation")));
        assert!(!s.grants(Perm::Read, Some("Patient")));
        assert!(!s.grants(Perm::Create, Some("Observation")));
        assert!(!s.grants(Perm::Search, None));
        let s = Scope::parse("patient/*.read").unwrap();
        assert_eq!(s.perms, "rs");
        assert!(Scope::parse("openid").is_none());
        assert!(Scope::parse("user/Observation.sr").is_none());
        assert!(Scope::parse("user/Observation.rs?category=lab").is_none());
        assert!(Scope::parse("admin/*.rs").is_none());
    }
}
