//! JWT auth tokens (`--auth-token jwt,...`), as etcd signs them: claims `username`,
//! `revision` (the auth revision at login) and `exp`, signed with the configured key and
//! method. A token is checked by its signature and expiry alone, so it needs no replicated
//! state and survives restarts; it goes stale when the auth state changes (its revision is
//! then old, and clients log in again).
//!
//! What it does not do: decide what a user may do (the core does, with the user and revision
//! a verified token names), or read a clock other than the system's for `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// etcd's default JWT lifetime: 5 minutes.
const TTL_DEFAULT: Duration = Duration::from_secs(300);

/// A JWT signer and verifier.
pub struct Jwt {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.encoding.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl Jwt {
    /// Reads etcd's option list after `jwt,`: `pub-key=FILE`, `priv-key=FILE`,
    /// `sign-method=ALG` (required), `ttl=DURATION`. Other keys are ignored, as etcd only
    /// warns about them.
    pub fn from_options(options: &str) -> Result<Jwt, String> {
        let mut pairs = std::collections::BTreeMap::new();
        for item in options.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .filter(|(_, v)| !v.contains('='))
                .ok_or_else(|| "auth: invalid auth options".to_string())?;
            if pairs.insert(k.to_string(), v.to_string()).is_some() {
                return Err("auth: invalid auth options".into());
            }
        }
        let method = pairs
            .get("sign-method")
            .ok_or("auth: invalid auth signature method")?;
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| "auth: invalid auth signature method".to_string())?;
        let ttl = match pairs.get("ttl") {
            Some(t) => parse_duration(t).ok_or_else(|| format!("auth: invalid ttl {t:?}"))?,
            None => TTL_DEFAULT,
        };
        let read = |k: &str| -> Result<Option<Vec<u8>>, String> {
            pairs
                .get(k)
                .map(|path| std::fs::read(path).map_err(|e| format!("auth: reading {path}: {e}")))
                .transpose()
        };
        let (private, public) = (read("priv-key")?, read("pub-key")?);
        let bad = |e: jsonwebtoken::errors::Error| format!("auth: invalid key: {e}");
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or("auth: missing key data")?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let encoding = private
                    .as_deref()
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(bad)?;
                let public = public.ok_or("auth: missing key data")?;
                (encoding, rsa_decoding(&public)?)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let encoding = private
                    .as_deref()
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(bad)?;
                let public = public.ok_or("auth: missing key data")?;
                (encoding, ec_decoding(&public)?)
            }
            Algorithm::EdDSA => return Err("auth: invalid auth signature method".into()),
        };
        Ok(Jwt {
            algorithm,
            encoding,
            decoding,
            ttl,
        })
    }

    /// A token for `user` at auth revision `revision`.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let key = self
            .encoding
            .as_ref()
            .ok_or("auth: token signing attempted with verify-only key")?;
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs();
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// The user and auth revision a valid, unexpired token names.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

/// The public key of a PEM file holding a public key or a certificate (etcd's tests pass the
/// server's certificate).
fn rsa_decoding(pem: &[u8]) -> Result<DecodingKey, String> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok(k);
    }
    let der = certificate_public_key(pem)?;
    Ok(DecodingKey::from_rsa_der(&der))
}

fn ec_decoding(pem: &[u8]) -> Result<DecodingKey, String> {
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok(k);
    }
    let der = certificate_public_key(pem)?;
    Ok(DecodingKey::from_ec_der(&der))
}

/// The subject public key (its bit string's contents) of the first certificate in `pem`.
fn certificate_public_key(pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "auth: key file is not PEM".to_string())?;
    let (_, cert) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| format!("auth: key file: {e}"))?;
    let cert = cert
        .parse_x509()
        .map_err(|e| format!("auth: key file: {e}"))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// `1s`, `500ms`, `5m`, `1h` (Go durations, the forms etcd's options use).
fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    };
    Some(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_etcd_writes_them() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn hmac_tokens_round_trip_and_forged_ones_do_not() {
        let key = std::env::temp_dir().join(format!("oxcd-jwt-test-{}", std::process::id()));
        std::fs::write(&key, b"secret").unwrap();
        let jwt =
            Jwt::from_options(&format!("priv-key={},sign-method=HS256", key.display())).unwrap();
        let token = jwt.sign("alice", 7).unwrap();
        assert_eq!(jwt.verify(&token), Some(("alice".into(), 7)));
        let mut forged = token.clone();
        forged.pop();
        assert_eq!(jwt.verify(&forged), None);
        assert_eq!(jwt.verify("not.a.token"), None);
        assert!(Jwt::from_options("sign-method=XX256").is_err());
        assert!(Jwt::from_options("priv-key=a,priv-key=b,sign-method=HS256").is_err());
        std::fs::remove_file(&key).unwrap();
    }
}
