//! The national commercial algorithms (国密) the platform uses, through OpenSSL (built from
//! source, 3.x, so that a fresh machine needs no `-dev` package and SM4-GCM is available):
//! SM3 hashes (the audit trail's hash chain), HMAC-SM3 (keyed blind indexes, so that an
//! encrypted identifier can still be found by its exact value) and SM4-GCM (identifiers
//! encrypted at rest, authenticated so that an altered ciphertext is refused).

use std::sync::OnceLock;

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::hash::{Hasher, MessageDigest, hash};

/// Length of an SM3 digest.
pub const SM3_LEN: usize = 32;
/// SM4 key length (128 bits).
pub const SM4_KEY_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cryptography failed: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("the ciphertext is malformed or was altered")]
    Tampered,
}

/// The SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> Result<[u8; SM3_LEN], CryptoError> {
    let d = hash(MessageDigest::sm3(), data)?;
    let mut out = [0u8; SM3_LEN];
    out.copy_from_slice(&d);
    Ok(out)
}

/// The SM3 digest of `data`, as lowercase hex.
pub fn sm3_hex(data: &[u8]) -> Result<String, CryptoError> {
    Ok(hex(&sm3(data)?))
}

/// HMAC-SM3 of `data` under `key`.
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> Result<[u8; SM3_LEN], CryptoError> {
    HmacSm3::new(key)?.mac(data)
}

/// SM3's block length.
const SM3_BLOCK: usize = 64;

/// An HMAC-SM3 key (RFC 2104) with its inner and outer hash states computed once: each MAC
/// then costs two state copies and the data's blocks, where OpenSSL's keyed signer sets up a
/// key object and fetches its algorithms on every call (a blind index is computed for every
/// protected identifier written or searched).
pub struct HmacSm3 {
    inner: Hasher,
    outer: Hasher,
}

impl HmacSm3 {
    pub fn new(key: &[u8]) -> Result<HmacSm3, CryptoError> {
        let mut block = [0u8; SM3_BLOCK];
        if key.len() > SM3_BLOCK {
            block[..SM3_LEN].copy_from_slice(&sm3(key)?);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| -> Result<Hasher, CryptoError> {
            let padded: Vec<u8> = block.iter().map(|b| b ^ byte).collect();
            let mut h = Hasher::new(MessageDigest::sm3())?;
            h.update(&padded)?;
            Ok(h)
        };
        Ok(HmacSm3 {
            inner: pad(0x36)?,
            outer: pad(0x5c)?,
        })
    }

    pub fn mac(&self, data: &[u8]) -> Result<[u8; SM3_LEN], CryptoError> {
        let mut inner = self.inner.clone();
        inner.update(data)?;
        let digest = inner.finish()?;
        let mut outer = self.outer.clone();
        outer.update(&digest)?;
        let mac = outer.finish()?;
        let mut out = [0u8; SM3_LEN];
        out.copy_from_slice(&mac);
        Ok(out)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn sm4_gcm() -> Result<&'static Cipher, CryptoError> {
    static CIPHER: OnceLock<Cipher> = OnceLock::new();
    if let Some(c) = CIPHER.get() {
        return Ok(c);
    }
    let c = Cipher::fetch(None, "SM4-GCM", None)?;
    Ok(CIPHER.get_or_init(|| c))
}

/// An SM4 key. Its bytes never appear in `Debug` output.
pub struct Sm4Key([u8; SM4_KEY_LEN]);

impl std::fmt::Debug for Sm4Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Key(..)")
    }
}

impl Sm4Key {
    pub fn new(bytes: [u8; SM4_KEY_LEN]) -> Sm4Key {
        Sm4Key(bytes)
    }

    /// A new random key (OpenSSL's CSPRNG).
    pub fn generate() -> Result<Sm4Key, CryptoError> {
        let mut k = [0u8; SM4_KEY_LEN];
        openssl::rand::rand_bytes(&mut k)?;
        Ok(Sm4Key(k))
    }

    /// Encrypt `plaintext` with SM4-GCM under a fresh random nonce, binding `aad` (for example
    /// the column and resource it belongs to, so a ciphertext moved elsewhere is refused):
    /// nonce ‖ ciphertext ‖ tag.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce)?;
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(sm4_gcm()?), Some(&self.0), Some(&nonce))?;
        ctx.cipher_update(aad, None)?;
        let mut out = nonce.to_vec();
        ctx.cipher_update_vec(plaintext, &mut out)?;
        ctx.cipher_final_vec(&mut out)?;
        let mut tag = [0u8; TAG_LEN];
        ctx.tag(&mut tag)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypt what [`Sm4Key::encrypt`] made with the same `aad`; [`CryptoError::Tampered`]
    /// when it was altered, cut, made under another key or bound to other data.
    pub fn decrypt(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Tampered);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut ctx = CipherCtx::new()?;
        ctx.decrypt_init(Some(sm4_gcm()?), Some(&self.0), Some(nonce))?;
        ctx.cipher_update(aad, None)?;
        let mut out = Vec::with_capacity(body.len());
        ctx.cipher_update_vec(body, &mut out)?;
        ctx.set_tag(tag)?;
        ctx.cipher_final_vec(&mut out)
            .map_err(|_| CryptoError::Tampered)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sm3_matches_the_standards_example() {
        // GB/T 32905-2016, example 1.
        assert_eq!(
            sm3_hex(b"abc").unwrap(),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn sm4_matches_the_standards_example() {
        // GB/T 32907-2016, example 1: one block under key = plaintext.
        let key = unhex("0123456789abcdeffedcba9876543210");
        let mut ctx = CipherCtx::new().unwrap();
        ctx.encrypt_init(Some(openssl::cipher::Cipher::sm4_ecb()), Some(&key), None)
            .unwrap();
        ctx.set_padding(false);
        let mut out = Vec::new();
        ctx.cipher_update_vec(&key, &mut out).unwrap();
        ctx.cipher_final_vec(&mut out).unwrap();
        assert_eq!(hex(&out), "681edf34d206965e86b3e94f536e4246");
    }

    #[test]
    fn hmac_sm3_is_keyed_and_deterministic() {
        let a = hmac_sm3(b"key one", b"110101199003077777").unwrap();
        assert_eq!(a, hmac_sm3(b"key one", b"110101199003077777").unwrap());
        assert_ne!(a, hmac_sm3(b"key two", b"110101199003077777").unwrap());
        assert_ne!(a, sm3(b"110101199003077777").unwrap());
    }

    #[test]
    fn hmac_sm3_matches_openssls_keyed_signer() {
        use openssl::pkey::PKey;
        use openssl::sign::Signer;
        for key in [&b"k"[..], &[7u8; 32], &[9u8; 64], &[3u8; 100]] {
            for data in [&b""[..], b"110101199003077777", &[1u8; 200]] {
                let pkey = PKey::hmac(key).unwrap();
                let mut signer = Signer::new(MessageDigest::sm3(), &pkey).unwrap();
                signer.update(data).unwrap();
                assert_eq!(
                    hmac_sm3(key, data).unwrap().to_vec(),
                    signer.sign_to_vec().unwrap()
                );
            }
        }
    }

    #[test]
    fn sm4_gcm_round_trips_and_refuses_altered_ciphertexts() {
        let key = Sm4Key::generate().unwrap();
        let plain = "13800000000".as_bytes();
        let sealed = key.encrypt(plain, b"Patient.telecom").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + plain.len() + TAG_LEN);
        assert_eq!(key.decrypt(&sealed, b"Patient.telecom").unwrap(), plain);
        // A fresh nonce each time: the same value encrypts differently.
        assert_ne!(sealed, key.encrypt(plain, b"Patient.telecom").unwrap());
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert!(matches!(
            key.decrypt(&altered, b"Patient.telecom"),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            key.decrypt(&sealed, b"Patient.identifier"),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            Sm4Key::generate()
                .unwrap()
                .decrypt(&sealed, b"Patient.telecom"),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            key.decrypt(&sealed[..10], b"Patient.telecom"),
            Err(CryptoError::Tampered)
        ));
        assert_eq!(format!("{key:?}"), "Sm4Key(..)");
    }
}
