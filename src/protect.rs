//! Identifiers protected at rest (architecture principle 8): resident ID numbers, health card
//! numbers (and the other systems whose values are ID numbers) and phone numbers of people are
//! stored encrypted with SM4-GCM, and found by exact value through a keyed blind index
//! (HMAC-SM3).
//!
//! - **Stored JSON.** Such a value is replaced by a sealed string: U+0001, `sm4:`, the key id,
//!   `:` and the base64 of nonce ‖ ciphertext ‖ tag. FHIR strings may not hold U+0001, so
//!   every write refuses it ([`guard`]) and a sealed value cannot be forged by a client. Every
//!   store function that returns stored JSON opens the sealed values again ([`reveal`]); the
//!   rest of the server sees plain values.
//! - **Search index.** The index rows of a protected value hold `bi:<key id>:<hex>`, the first
//!   16 bytes of HMAC-SM3 of the value (trimmed, upper case); `_content` holds the same
//!   instead of the value. A token search that may concern a protected value
//!   ([`search_codes`]) looks for the value as written and for its blind form under every key,
//!   so searches keep working while a new key is rolled out.
//! - **Other copies.** Conditional-create keys and the queries recorded in the audit trail hold
//!   the blind form of protected search values ([`redact_query`]).
//!
//! Keys live in a keyring file (JSON, mode 0600): the active key seals and blinds, the others
//! only open and search. In development mode the keyring is generated in the data directory.
//! `huimin keys rotate` adds a key and makes it active; `huimin keys reencrypt` moves what is
//! stored onto it; `huimin keys retire` drops a key nothing uses any more (README, "Keys").
//!
//! The protection a database uses belongs to its [`crate::store::Store`]: every unit of work
//! is passed a [`crate::store::Tx`] that carries it, and the functions here take it as their
//! first argument.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, SM4_KEY_LEN, Sm4Key};
use crate::fhir::json::Json;
use crate::ident;

/// Marks a sealed value inside a stored JSON string.
const SEALED: &str = "\u{1}sm4:";
/// The same marker as the JSON writer escapes it in stored text.
const SEALED_IN_JSON: &str = "\\u0001sm4:";
/// Prefix of a blind index value.
const BLIND: &str = "bi:";
/// Bytes of HMAC-SM3 kept in a blind index value.
const BLIND_BYTES: usize = 16;
/// Bound into every ciphertext (with the key id).
const AAD: &str = "huimin-protect-v1:";

/// Resource types describing people, whose phone numbers are protected. (Identifier values are
/// protected in every resource, also inside references.)
const PEOPLE: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Person",
    "Practitioner",
    "PractitionerRole",
];

/// Token search parameters whose values may be protected.
fn is_protected_param(param: &str) -> bool {
    let base = param.strip_suffix(":of-type").unwrap_or(param);
    matches!(base, "identifier" | "telecom" | "phone") || base.ends_with(":identifier")
}

/// Whether a query parameter named `name` (as written: chains, modifiers, `_has`) may carry an
/// identifier or phone number, so that the audit trail and conditional-create keys keep its
/// value blinded: the protected parameters with any modifier (`identifier:not`, `:of-type`,
/// `:text`), a reference's `:identifier`, chains and `_has` ending in one, the IHE PIXm source
/// identifier, and the free-text parameters (`_content`, `_text`), which match any string.
fn is_redacted_param(name: &str) -> bool {
    let end = chain_end(name);
    let base = end.split(':').next().unwrap_or("");
    matches!(
        base,
        "telecom" | "phone" | "sourceIdentifier" | "_content" | "_text"
    ) || end.split(':').any(|p| p == "identifier")
}

fn is_phone_system(system: &str) -> bool {
    matches!(system, "phone" | "sms")
}

/// One key: an SM4 key that seals and an HMAC-SM3 key that blinds.
pub struct Key {
    pub id: String,
    sm4: Sm4Key,
    hmac: crypto::HmacSm3,
    /// The key that chains the audit trail under this key: HMAC-SM3 keyed by this key's HMAC
    /// of a fixed label, so that it is neither the blinding key nor derivable without it.
    chain: crypto::HmacSm3,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    fn aad(&self) -> Vec<u8> {
        format!("{AAD}{}", self.id).into_bytes()
    }

    /// The blind index form of `value` under this key.
    pub fn blind(&self, value: &str) -> Result<String, crypto::CryptoError> {
        let mac = self.hmac.mac(normal(value).as_bytes())?;
        Ok(format!(
            "{BLIND}{}:{}",
            self.id,
            crypto::hex(&mac[..BLIND_BYTES])
        ))
    }

    /// The audit chain's seal of `data` under this key.
    pub fn chain_mac(&self, data: &[u8]) -> Result<[u8; 32], crypto::CryptoError> {
        self.chain.mac(data)
    }

    fn seal(&self, value: &str) -> Result<String, crypto::CryptoError> {
        let sealed = self.sm4.encrypt(value.as_bytes(), &self.aad())?;
        Ok(format!(
            "{SEALED}{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)
        ))
    }
}

/// The comparison form of a protected value: trimmed, ASCII upper case (an ID number's check
/// character may be written `x`).
fn normal(value: &str) -> String {
    value.trim().to_ascii_uppercase()
}

/// A database's keys; the last one is active.
#[derive(Debug)]
pub struct Protection {
    keys: Vec<Key>,
    /// Whether writes seal and blind (`protect_identifiers`); reads open sealed values either
    /// way, with whatever keys there are.
    enabled: bool,
}

/// What is wrong with a stored or written value.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("a stored value is sealed under key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("a stored sealed value is malformed")]
    Malformed,
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl Protection {
    /// No keys, nothing sealed: for databases that never held protected values.
    pub fn disabled() -> Protection {
        Protection {
            keys: Vec::new(),
            enabled: false,
        }
    }

    /// Load the keyring at `path`; `enabled` says whether writes seal. In development mode
    /// (`create`) a missing keyring is generated.
    pub fn load(path: &Path, enabled: bool, create: bool) -> anyhow::Result<Protection> {
        let file = if path.exists() {
            KeyringFile::read(path)?
        } else if create && enabled {
            let file = KeyringFile {
                keys: vec![KeyEntry::generate()?],
            };
            file.write_new(path)?;
            tracing::warn!(
                file = %path.display(),
                "DEVELOPMENT MODE: generated a new keyring for identifiers at rest; configure keyring_file in production"
            );
            file
        } else if enabled {
            bail!(
                "no keyring at {} (HUIMIN_KEYRING_FILE): identifiers are protected at rest \
                 (protect_identifiers), so a keyring is required; create one with `huimin keys rotate`",
                path.display()
            );
        } else {
            return Ok(Protection::disabled());
        };
        Ok(Protection {
            keys: file.keys()?,
            enabled,
        })
    }

    /// A protection with the given keys (the last active), for tools and tests.
    pub fn with_keys(keys: Vec<Key>, enabled: bool) -> Protection {
        Protection { keys, enabled }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled && !self.keys.is_empty()
    }

    /// The active key when writes are protected.
    pub fn active(&self) -> Option<&Key> {
        if self.enabled { self.keys.last() } else { None }
    }

    /// The key the audit trail is chained under now: the newest of the keyring (whether or not
    /// identifiers are protected); `None` without a keyring.
    pub fn chain_key(&self) -> Option<&Key> {
        self.keys.last()
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The key of id `id`.
    pub fn key(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Open the sealed values in stored JSON text; the text itself when there are none.
    pub fn reveal<'a>(&self, stored: &'a str) -> Result<Cow<'a, str>, ProtectError> {
        let Some(first) = stored.find(SEALED_IN_JSON) else {
            return Ok(Cow::Borrowed(stored));
        };
        let mut out = String::with_capacity(stored.len());
        let mut rest = stored;
        let mut at = first;
        loop {
            out.push_str(&rest[..at]);
            let token = &rest[at + SEALED_IN_JSON.len()..];
            let end = token.find('"').ok_or(ProtectError::Malformed)?;
            let plain = self.open(&token[..end])?;
            crate::fhir::json::escape_into(&mut out, &plain);
            rest = &token[end..];
            match rest.find(SEALED_IN_JSON) {
                Some(next) => at = next,
                None => {
                    out.push_str(rest);
                    return Ok(Cow::Owned(out));
                }
            }
        }
    }

    /// Open one sealed value (`<key id>:<base64>`, after the marker).
    fn open(&self, token: &str) -> Result<String, ProtectError> {
        let (id, data) = token.split_once(':').ok_or(ProtectError::Malformed)?;
        let key = self
            .key(id)
            .ok_or_else(|| ProtectError::UnknownKey(id.to_owned()))?;
        let sealed = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(data)
            .map_err(|_| ProtectError::Malformed)?;
        let plain = key.sm4.decrypt(&sealed, &key.aad())?;
        String::from_utf8(plain).map_err(|_| ProtectError::Malformed)
    }

    /// The codes a token search for `system|code` on `param` looks for: the code as written,
    /// and when it may be a protected value, its blind form under every key.
    pub fn search_codes(&self, param: &str, system: Option<&str>, code: &str) -> Vec<String> {
        let mut out = vec![code.to_owned()];
        if !self.blinds(param, system) {
            return out;
        }
        // `:of-type` codes are `type|value`: the value part is blinded.
        let (prefix, value) = match param.ends_with(":of-type") {
            true => match code.rsplit_once('|') {
                Some((p, v)) => (format!("{p}|"), v),
                None => return out,
            },
            false => (String::new(), code),
        };
        for k in &self.keys {
            if let Ok(b) = k.blind(value) {
                out.push(format!("{prefix}{b}"));
            }
        }
        out
    }

    /// Whether a token search on `param` under `system` may meet protected values, indexed in
    /// their blind form.
    pub fn blinds(&self, param: &str, system: Option<&str>) -> bool {
        if self.keys.is_empty() || !is_protected_param(param) {
            return false;
        }
        match system {
            Some(s) => {
                ident::is_person_number_system(s)
                    || is_phone_system(s)
                    || param.ends_with(":of-type")
            }
            None => true,
        }
    }

    /// `query` (a URL path with its query, as the audit trail and conditional-create keys keep
    /// it) with the values of protected search parameters in their blind form under the active
    /// key; unchanged when writes are not protected.
    pub fn redact_query(&self, query: &str) -> String {
        let Some(key) = self.active() else {
            return query.to_owned();
        };
        let Some((path, params)) = query.split_once('?') else {
            return query.to_owned();
        };
        let mut out = format!("{path}?");
        for (i, pair) in params.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value))
                    if is_redacted_param(
                        &percent_encoding::percent_decode_str(name).decode_utf8_lossy(),
                    ) =>
                {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&blind_values(key, value));
                }
                _ => out.push_str(pair),
            }
        }
        out
    }
}

/// The parameter a (possibly chained) search parameter name ends in: `subject:Patient.identifier`
/// → `identifier`.
fn chain_end(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Blind each comma-separated `[system|]value` of a query value (percent-encoded as sent).
fn blind_values(key: &Key, value: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
    let parts: Vec<String> = decoded
        .split(',')
        .map(|v| {
            // Whatever the system: an ID number searched under an institution's own system is
            // still an ID number.
            let (system, code) = match v.rsplit_once('|') {
                Some((s, c)) => (Some(s), c),
                None => (None, v),
            };
            match key.blind(code) {
                Ok(b) => system.map_or(b.clone(), |s| format!("{s}|{b}")),
                Err(_) => "(protected)".to_owned(),
            }
        })
        .collect();
    percent_encoding::utf8_percent_encode(&parts.join(","), QUERY_VALUE).to_string()
}

const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>');

/// A resource on its way to the store: the JSON to store (protected values sealed) and the
/// JSON to index (protected values blinded).
#[derive(Debug)]
pub struct Guarded {
    pub sealed: Json,
    pub blinded: Json,
}

/// Check a resource about to be written and protect its identifiers: `Ok(None)` when it holds
/// no protected value (or writes are not protected); an error naming the element when a
/// string holds a control character FHIR does not allow.
pub fn guard(p: &Protection, res_type: &str, tree: &Json) -> Result<Option<Guarded>, GuardError> {
    let Some(person) = holds_protected(res_type, tree)? else {
        return Ok(None);
    };
    let Some(key) = p.active() else {
        return Ok(None);
    };
    let mut sealed = tree.clone();
    let mut blinded = tree.clone();
    rewrite(&mut sealed, person, &mut |v| key.seal(v))?;
    rewrite(&mut blinded, person, &mut |v| key.blind(v))?;
    Ok(Some(Guarded { sealed, blinded }))
}

/// The copy of a stored resource its index rows come from: protected values blinded under the
/// active key (`None`: it holds none, or writes are not protected). No sealing: for a version
/// whose stored form already exists.
pub fn blinded(p: &Protection, res_type: &str, tree: &Json) -> Result<Option<Json>, GuardError> {
    let Some(person) = holds_protected(res_type, tree)? else {
        return Ok(None);
    };
    let Some(key) = p.active() else {
        return Ok(None);
    };
    let mut blinded = tree.clone();
    rewrite(&mut blinded, person, &mut |v| key.blind(v))?;
    Ok(Some(blinded))
}

/// Why a resource could not be guarded.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{0} holds a control character, which FHIR strings may not contain")]
    ControlCharacter(String),
    #[error(transparent)]
    Protect(#[from] ProtectError),
}

impl From<crypto::CryptoError> for GuardError {
    fn from(e: crypto::CryptoError) -> Self {
        GuardError::Protect(ProtectError::Crypto(e))
    }
}

/// Whether `node` is an Identifier with a protected system, or (in a resource about a person)
/// a phone ContactPoint: the string value to protect.
fn protected_value(node: &Json, person: bool) -> bool {
    let (Some(system), Some(Json::String(_))) = (node.get_str("system"), node.get("value")) else {
        return false;
    };
    ident::is_person_number_system(system) || (person && is_phone_system(system))
}

/// Walk a resource once: an error naming the element holding a control character, `None` when
/// it holds no protected value, else whether it describes a person (its phones are protected).
fn holds_protected(res_type: &str, tree: &Json) -> Result<Option<bool>, GuardError> {
    let mut found = false;
    let person = PEOPLE.contains(&res_type);
    check(tree, person, &mut found).map_err(|at| {
        let path: String = at.iter().rev().map(String::as_str).collect();
        GuardError::ControlCharacter(format!("{res_type}{path}"))
    })?;
    Ok(found.then_some(person))
}

/// Walk `node`: note whether it holds a protected value, and refuse a control character. The
/// element's path is built only for the error, on the way back up (`segments`, innermost
/// first).
fn check(node: &Json, person: bool, found: &mut bool) -> Result<(), Vec<String>> {
    match node {
        Json::String(s)
            if s.bytes()
                .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) =>
        {
            return Err(Vec::new());
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check(v, person, found).map_err(|mut at| {
                    at.push(format!("[{i}]"));
                    at
                })?;
            }
        }
        Json::Object(members) => {
            if protected_value(node, person) {
                *found = true;
            }
            for (k, v) in members {
                check(v, person, found).map_err(|mut at| {
                    at.push(format!(".{k}"));
                    at
                })?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn rewrite(
    node: &mut Json,
    person: bool,
    f: &mut impl FnMut(&str) -> Result<String, crypto::CryptoError>,
) -> Result<(), crypto::CryptoError> {
    let protect = protected_value(node, person);
    match node {
        Json::Array(items) => {
            for v in items {
                rewrite(v, person, f)?;
            }
        }
        Json::Object(members) => {
            for (k, v) in members.iter_mut() {
                match v {
                    Json::String(s) if protect && k == "value" => *s = f(s)?,
                    _ => rewrite(v, person, f)?,
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A conditional-create key or resident key with protected values blinded (active key).
pub fn match_key(p: &Protection, criteria: &str) -> Result<String, ProtectError> {
    let Some(key) = p.active() else {
        return Ok(criteria.to_owned());
    };
    if let Some(number) = criteria.strip_prefix("resident|") {
        return Ok(format!("resident|{}", key.blind(number)?));
    }
    Ok(p.redact_query(&format!("?{criteria}"))[1..].to_owned())
}

/// Stored JSON with its sealed values opened, as the store's read functions return it.
pub fn reveal(p: &Protection, stored: String) -> diesel::QueryResult<String> {
    if !stored.contains(SEALED_IN_JSON) {
        return Ok(stored);
    }
    let opened = p
        .reveal(&stored)
        .map(Cow::into_owned)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    Ok(opened)
}

/// Whether stored JSON text that holds protected values needs sealing again under the active
/// key `active`: some value is in the clear or sealed under another key.
pub fn needs_rekey(stored: &str, active: &str) -> bool {
    let all = stored.matches(SEALED_IN_JSON).count();
    all == 0
        || all
            != stored
                .matches(&format!("{SEALED_IN_JSON}{active}:"))
                .count()
}

/// What stored text holds when a value is sealed under key `id`.
pub fn sealed_marker(id: &str) -> String {
    format!("{SEALED_IN_JSON}{id}:")
}

/// What index rows and keys hold when a value is blinded under key `id`.
pub fn blind_marker(id: &str) -> String {
    format!("{BLIND}{id}:")
}

/// Whether stored JSON text holds a value sealed under key `id`.
pub fn sealed_under(stored: &str, id: &str) -> bool {
    stored.contains(&format!("{SEALED_IN_JSON}{id}:"))
}

/// The keyring file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringFile {
    /// Oldest first; the last is active.
    pub keys: Vec<KeyEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: String,
    pub created: String,
    /// SM4 key, hex.
    pub sm4: String,
    /// HMAC-SM3 key, hex.
    pub hmac: String,
}

impl KeyEntry {
    pub fn generate() -> anyhow::Result<KeyEntry> {
        let mut sm4 = [0u8; SM4_KEY_LEN];
        let mut hmac = [0u8; 32];
        let mut id = [0u8; 4];
        openssl::rand::rand_bytes(&mut sm4)?;
        openssl::rand::rand_bytes(&mut hmac)?;
        openssl::rand::rand_bytes(&mut id)?;
        Ok(KeyEntry {
            id: format!("k{}", crypto::hex(&id)),
            created: crate::clock::instant(crate::clock::now_millis()),
            sm4: crypto::hex(&sm4),
            hmac: crypto::hex(&hmac),
        })
    }

    fn key(&self) -> anyhow::Result<Key> {
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("key id '{}' must be letters and digits", self.id);
        }
        let sm4: [u8; SM4_KEY_LEN] = unhex(&self.sm4)
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("key {}: sm4 must be 32 hex digits", self.id))?;
        let hmac: [u8; 32] = unhex(&self.hmac)
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("key {}: hmac must be 64 hex digits", self.id))?;
        let blinding = crypto::HmacSm3::new(&hmac)?;
        let chain = crypto::HmacSm3::new(&blinding.mac(b"huimin audit chain v1")?)?;
        Ok(Key {
            id: self.id.clone(),
            sm4: Sm4Key::new(sm4),
            hmac: blinding,
            chain,
        })
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyringFile {
    pub fn read(path: &Path) -> anyhow::Result<KeyringFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: KeyringFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a keyring", path.display()))?;
        file.keys()
            .with_context(|| format!("keyring {}", path.display()))?;
        Ok(file)
    }

    pub fn keys(&self) -> anyhow::Result<Vec<Key>> {
        if self.keys.is_empty() {
            bail!("the keyring holds no key");
        }
        let keys = self
            .keys
            .iter()
            .map(KeyEntry::key)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != keys.len() {
            bail!("two keys share an id");
        }
        Ok(keys)
    }

    /// Write a new keyring file readable by its owner only; refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        crate::files::write_private(path, text.as_bytes())
    }

    /// Replace the keyring file at `path` (written beside it, then renamed over it).
    pub fn replace(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = PathBuf::from(format!("{}.new", path.display()));
        let _ = std::fs::remove_file(&tmp);
        self.write_new(&tmp)?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

impl crate::config::Settings {
    /// The protection of identifiers at rest: the keyring, generated in dev mode when missing.
    pub fn protection(&self) -> anyhow::Result<std::sync::Arc<Protection>> {
        let p = Protection::load(
            &self.keyring_path(),
            self.protect_identifiers,
            self.auth_mode == crate::config::AuthMode::Dev,
        )
        .context("invalid setting keyring_file (HUIMIN_KEYRING_FILE)")?;
        Ok(std::sync::Arc::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    fn protection(n: usize) -> Arc<Protection> {
        let file = KeyringFile {
            keys: (0..n).map(|_| KeyEntry::generate().unwrap()).collect(),
        };
        Arc::new(Protection::with_keys(file.keys().unwrap(), true))
    }

    fn patient() -> Json {
        Json::parse(
            br#"{"resourceType":"Patient","identifier":[
                {"system":"urn:oid:2.16.156.10011.1.3","value":"11010119900307777x"},
                {"system":"urn:oid:1.2.3.mrn","value":"MRN-1"}],
              "telecom":[{"system":"phone","value":"13800000000"},{"system":"email","value":"a@b.cn"}],
              "name":[{"text":"\u5f20\u4e09"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn seals_blinds_and_reveals_only_protected_values() {
        let p = protection(1);
        let g = guard(&p, "Patient", &patient()).unwrap().unwrap();
        let stored = String::from_utf8(g.sealed.to_bytes()).unwrap();
        assert!(!stored.contains("11010119900307777"), "{stored}");
        assert!(!stored.contains("13800000000"), "{stored}");
        assert!(stored.contains("MRN-1") && stored.contains("a@b.cn"));
        let blinded = String::from_utf8(g.blinded.to_bytes()).unwrap();
        let key = &p.keys[0];
        assert!(blinded.contains(&key.blind("11010119900307777X").unwrap()));
        assert!(blinded.contains(&key.blind("13800000000").unwrap()));
        let opened = p.reveal(&stored).unwrap();
        assert_eq!(opened, String::from_utf8(patient().to_bytes()).unwrap());
        // Another keyring cannot open it; an altered value is refused.
        assert!(protection(1).reveal(&stored).is_err());
        let altered = stored.replacen("sm4:k", "sm4:kz", 1);
        assert!(p.reveal(&altered).is_err());
    }

    #[test]
    fn phones_are_protected_for_people_only_and_identifiers_everywhere() {
        let p = protection(1);
        let org = Json::parse(br#"{"telecom":[{"system":"phone","value":"010-1"}]}"#).unwrap();
        assert!(guard(&p, "Organization", &org).unwrap().is_none());
        let obs = Json::parse(
            br#"{"subject":{"identifier":{"system":"urn:oid:2.16.156.10011.1.19","value":"1"}}}"#,
        )
        .unwrap();
        assert!(guard(&p, "Observation", &obs).unwrap().is_some());
        // Without keys nothing is sealed.
        let off = Protection::disabled();
        assert!(guard(&off, "Patient", &patient()).unwrap().is_none());
    }

    #[test]
    fn control_characters_are_refused_with_their_element() {
        let bad = Json::parse(br#"{"name":[{"text":"a\u0001sm4:x"}]}"#).unwrap();
        match guard(&Protection::disabled(), "Patient", &bad) {
            Err(GuardError::ControlCharacter(at)) => assert_eq!(at, "Patient.name[0].text"),
            other => panic!("{other:?}"),
        }
        let fine = Json::parse(br#"{"text":{"div":"a\tb\r\nc"}}"#).unwrap();
        assert!(
            guard(&Protection::disabled(), "Patient", &fine)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn searches_look_for_every_keys_blind_form() {
        let p = protection(2);
        let codes = p.search_codes("identifier", Some(ident::ID_CARD), "11010119900307777x");
        assert_eq!(codes.len(), 3);
        assert_eq!(codes[2], p.keys[1].blind("11010119900307777X").unwrap());
        assert_eq!(p.search_codes("identifier", Some("urn:x"), "1").len(), 1);
        assert_eq!(p.search_codes("phone", None, "138").len(), 3);
        assert_eq!(p.search_codes("code", None, "138").len(), 1);
        let of_type = p.search_codes("identifier:of-type", None, "MR|138");
        assert!(of_type[1].starts_with("MR|bi:"));
    }

    #[test]
    fn queries_and_match_keys_keep_protected_values_blind() {
        let p = protection(1);
        let q = p.redact_query(
            "Patient?identifier=urn:oid:2.16.156.10011.1.3%7C11010119900307777X&name=Li&phone=138",
        );
        // (A blinded value is hex: it may hold the digits "138" by chance, not as the value.)
        assert!(
            !q.contains("11010119900307777X") && !q.contains("phone=138"),
            "{q}"
        );
        assert!(q.contains("name=Li"));
        assert!(q.contains(&p.keys[0].blind("138").unwrap()));
        // Identifier values are kept blind under any system.
        let mrn = p.redact_query("Patient?identifier=urn:oid:1.2.3%7CMRN-1&_count=5");
        assert!(
            !mrn.contains("MRN-1") && mrn.contains("urn:oid:1.2.3|bi:"),
            "{mrn}"
        );
        assert!(mrn.ends_with("&_count=5"));
        let k = match_key(&p, "resident|11010119900307777X").unwrap();
        assert_eq!(
            k,
            format!(
                "resident|{}",
                p.keys[0].blind("11010119900307777X").unwrap()
            )
        );
        let off = Arc::new(Protection::disabled());
        assert_eq!(match_key(&off, "identifier=a|1").unwrap(), "identifier=a|1");
    }

    #[test]
    fn keyring_files_round_trip_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let p = Protection::load(&path, true, true).unwrap();
        assert_eq!(p.key_ids().len(), 1);
        let again = Protection::load(&path, true, false).unwrap();
        assert_eq!(again.key_ids(), p.key_ids());
        assert!(Protection::load(&dir.path().join("none.json"), true, false).is_err());
        assert!(
            !Protection::load(&dir.path().join("none.json"), false, false)
                .unwrap()
                .is_enabled()
        );
        std::fs::write(
            dir.path().join("bad.json"),
            r#"{"keys":[{"id":"k1","created":"","sm4":"00","hmac":""}]}"#,
        )
        .unwrap();
        let e = Protection::load(&dir.path().join("bad.json"), true, false).unwrap_err();
        assert!(
            format!("{e:#}").contains("sm4 must be 32 hex digits"),
            "{e:#}"
        );
    }
}
