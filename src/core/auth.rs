//! Who may connect: user names and passwords from a Mosquitto password file (as written by
//! `mosquitto_passwd`), whether clients without a user name are let in, and the ACL file that
//! says what each may publish and subscribe to.

use std::sync::{Arc, RwLock};

use ahash::AHashMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::acl::{AclFile, ClientAcl};
use crate::protocol::ReasonCode;

/// The CONNECT credentials policy.
#[derive(Debug, Clone)]
pub struct Authenticator {
    passwords: Option<PasswordFile>,
    allow_anonymous: bool,
    acl: Option<AclFile>,
}

impl Default for Authenticator {
    /// Everyone in, as with no password file.
    fn default() -> Self {
        Authenticator {
            passwords: None,
            allow_anonymous: true,
            acl: None,
        }
    }
}

impl Authenticator {
    /// With a password file, clients must name a user in it (with the right password) unless
    /// `allow_anonymous`, which then admits clients that name no user at all.
    pub fn new(passwords: Option<PasswordFile>, allow_anonymous: bool) -> Authenticator {
        let allow_anonymous = allow_anonymous || passwords.is_none();
        Authenticator {
            passwords,
            allow_anonymous,
            acl: None,
        }
    }

    pub fn with_acl(mut self, acl: Option<AclFile>) -> Authenticator {
        self.acl = acl;
        self
    }

    /// The client's access rules; `None` when no ACL file is in force (everything allowed).
    pub fn client_acl(&self, username: Option<&str>, client_id: &str) -> Option<Arc<ClientAcl>> {
        Some(self.acl.as_ref()?.for_client(username, client_id))
    }

    /// `Ok` to let the client in, else the CONNACK refusal.
    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), ReasonCode> {
        let Some(passwords) = &self.passwords else {
            return Ok(());
        };
        match username {
            None if self.allow_anonymous => Ok(()),
            None => Err(ReasonCode::NotAuthorized),
            Some(user) if passwords.verify(user, password.unwrap_or_default()) => Ok(()),
            Some(_) => Err(ReasonCode::BadUserNameOrPassword),
        }
    }
}

/// The policy every shard reads on CONNECT, replaced whole when the password file is reloaded
/// (SIGHUP): connections already in keep going, new ones meet the new file.
#[derive(Debug, Default)]
pub struct AuthHandle(RwLock<Arc<Authenticator>>);

impl AuthHandle {
    pub fn new(auth: Authenticator) -> AuthHandle {
        AuthHandle(RwLock::new(Arc::new(auth)))
    }

    pub fn current(&self) -> Arc<Authenticator> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, auth: Authenticator) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
    }
}

/// A parsed password file: `user:$7$iterations$salt$hash` (PBKDF2-HMAC-SHA512, the default of
/// mosquitto_passwd 2.x) or `user:$6$salt$hash` (SHA-512 of password then salt, 1.6 and
/// earlier), base64; blank lines and `#` comments ignored.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: AHashMap<String, PasswordHash>,
}

#[derive(Debug, Clone)]
enum PasswordHash {
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// Why a line of a password file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("no ':' after the user name")]
    NoColon,
    #[error("bad iteration count")]
    BadIterations,
    #[error("{what} is not base64: {source}")]
    NotBase64 {
        what: &'static str,
        source: base64::DecodeError,
    },
    #[error(
        "not a $7$ (sha512-pbkdf2) or $6$ (sha512) hash; plain text passwords must be hashed \
         with mosquitto_passwd -U"
    )]
    UnknownHash,
}

/// A password file that cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct PasswordFileError {
    pub line: usize,
    pub problem: PasswordProblem,
}

impl PasswordFile {
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users = AHashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = (|| {
                let (user, hash) = line.split_once(':').ok_or(PasswordProblem::NoColon)?;
                Ok((user.to_string(), PasswordHash::parse(hash)?))
            })();
            let (user, hash) = entry.map_err(|problem| PasswordFileError {
                line: n + 1,
                problem,
            })?;
            users.insert(user, hash);
        }
        Ok(PasswordFile { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. An unknown user costs a hash too, so the answer's
    /// timing does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.matches(password),
            None => {
                let _ = DECOY.with(|decoy| decoy.matches(password));
                false
            }
        }
    }
}

thread_local! {
    /// Checked against for unknown users, at the cost of a real entry.
    static DECOY: PasswordHash = PasswordHash::Pbkdf2Sha512 {
        iterations: 101,
        salt: vec![0; 12],
        hash: vec![0; 64],
    };
}

impl PasswordHash {
    fn parse(text: &str) -> Result<PasswordHash, PasswordProblem> {
        let parts: Vec<&str> = text.split('$').collect();
        let decode = |what: &'static str, b64: &str| {
            BASE64
                .decode(b64)
                .map_err(|source| PasswordProblem::NotBase64 { what, source })
        };
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => Ok(PasswordHash::Pbkdf2Sha512 {
                iterations: iterations
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(PasswordProblem::BadIterations)?,
                salt: decode("salt", salt)?,
                hash: decode("hash", hash)?,
            }),
            ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
                salt: decode("salt", salt)?,
                hash: decode("hash", hash)?,
            }),
            _ => Err(PasswordProblem::UnknownHash),
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        let (expected, got) = match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                (hash, out)
            }
            PasswordHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                (hash, digest.finalize().to_vec())
            }
        };
        expected.ct_eq(&got).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd` 2.0.11: sensor-1 / `s3cret!` and ops / `pässwörd` with
    /// the default sha512-pbkdf2, legacy / `old-style` with `-H sha512`.
    const FILE: &str = include_str!("../../tests/fixtures/passwords.txt");

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        let file = PasswordFile::parse(FILE).unwrap();
        assert_eq!(file.len(), 3);
        assert!(file.verify("sensor-1", b"s3cret!"));
        assert!(file.verify("ops", "pässwörd".as_bytes()));
        assert!(file.verify("legacy", b"old-style"));
        assert!(!file.verify("sensor-1", b"s3cret"));
        assert!(!file.verify("ops", b"s3cret!"));
        assert!(!file.verify("legacy", b""));
        assert!(!file.verify("nobody", b"s3cret!"));
    }

    #[test]
    fn policy_refuses_with_the_right_reason() {
        let file = PasswordFile::parse(FILE).unwrap();
        let strict = Authenticator::new(Some(file.clone()), false);
        assert_eq!(strict.check(Some("sensor-1"), Some(b"s3cret!")), Ok(()));
        assert_eq!(
            strict.check(Some("sensor-1"), Some(b"wrong")),
            Err(ReasonCode::BadUserNameOrPassword)
        );
        assert_eq!(
            strict.check(Some("sensor-1"), None),
            Err(ReasonCode::BadUserNameOrPassword)
        );
        assert_eq!(strict.check(None, None), Err(ReasonCode::NotAuthorized));
        let lenient = Authenticator::new(Some(file), true);
        assert_eq!(lenient.check(None, None), Ok(()));
        assert_eq!(
            lenient.check(Some("nobody"), Some(b"x")),
            Err(ReasonCode::BadUserNameOrPassword)
        );
        let open = Authenticator::new(None, false);
        assert_eq!(open.check(Some("anyone"), Some(b"anything")), Ok(()));
        assert_eq!(open.check(None, None), Ok(()));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err =
            PasswordFile::parse("# users\n\nok:$6$c2FsdA==$aGFzaA==\nplain:secret\n").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        let problem = |text| PasswordFile::parse(text).map(|_| ()).map_err(|e| e.problem);
        assert_eq!(
            problem("x:$7$0$c2FsdA==$aGFzaA=="),
            Err(PasswordProblem::BadIterations)
        );
        assert!(matches!(
            problem("x:$7$101$!!$aGFzaA=="),
            Err(PasswordProblem::NotBase64 { what: "salt", .. })
        ));
        assert_eq!(problem("no-colon"), Err(PasswordProblem::NoColon));
        assert_eq!(problem("x:plain"), Err(PasswordProblem::UnknownHash));
        assert_eq!(
            PasswordFile::parse("# users\na:$6$c2FsdA==$aGFzaA==\nb")
                .map(|_| ())
                .map_err(|e| e.line),
            Err(3)
        );
    }
}
