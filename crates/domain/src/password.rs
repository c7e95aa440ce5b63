//! Password hashing (argon2id, OWASP parameters) and the team-member password policy.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::ValidationError;

/// argon2id cost parameters. The default is OWASP's baseline: 19 MiB, 2 iterations, 1 lane.
/// Hashes record their parameters, so changing these never breaks verification of old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    /// Rejects parameters below OWASP's floor or beyond what one request should cost.
    pub fn validate(self) -> Result<Self, &'static str> {
        if self.memory_kib < 7 * 1024 || self.memory_kib > 1024 * 1024 {
            return Err("memory must be between 7168 and 1048576 KiB");
        }
        if !(1..=10).contains(&self.iterations) {
            return Err("iterations must be between 1 and 10");
        }
        if !(1..=16).contains(&self.parallelism) {
            return Err("parallelism must be between 1 and 16");
        }
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map(|_| self)
            .map_err(|_| "invalid argon2 parameters")
    }

    fn hasher(self) -> Argon2<'static> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .unwrap_or_default();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

fn argon2() -> Argon2<'static> {
    Argon2Params::default().hasher()
}

/// Application users' password rules: a minimum length, at most 256 characters, and optionally no
/// password from a list of common ones (compared case-insensitively).
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub denylist: Option<std::sync::Arc<std::collections::HashSet<String>>>,
    pub argon2: Argon2Params,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            denylist: Some(std::sync::Arc::new(common_passwords())),
            argon2: Argon2Params::default(),
        }
    }
}

impl PasswordPolicy {
    pub fn check(&self, password: &str) -> Result<(), ValidationError> {
        if password.chars().count() < self.min_length {
            return Err(ValidationError::new("password", "is too short"));
        }
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(ValidationError::new(
                "password",
                "must be at most 256 characters",
            ));
        }
        if let Some(list) = &self.denylist {
            if list.contains(&password.to_lowercase()) {
                return Err(ValidationError::new(
                    "password",
                    "is too common; choose another",
                ));
            }
        }
        Ok(())
    }

    pub fn hash(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    }
}

/// The built-in offline list of common passwords (lowercase), for [`PasswordPolicy`].
pub fn common_passwords() -> std::collections::HashSet<String> {
    parse_password_list(include_str!("common_passwords.txt"))
}

/// One password per line; blank lines and `#` comments ignored; lowercased.
pub fn parse_password_list(text: &str) -> std::collections::HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_lowercase)
        .collect()
}

/// The longest password anyone can set (at most 1 KiB of UTF-8, within what sign-in reads).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Team-member passwords: 12 to 256 characters.
pub fn check_policy(password: &str) -> Result<(), ValidationError> {
    if password.chars().count() < 12 {
        return Err(ValidationError::new(
            "password",
            "must be at least 12 characters",
        ));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ValidationError::new(
            "password",
            "must be at most 256 characters",
        ));
    }
    Ok(())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing only fails for parameter or output-length errors, which are constants here.
        .unwrap_or_default()
}

/// Verifies in constant time; a malformed stored hash never verifies.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as a real verification, so an unknown email costs what a wrong password
/// costs and response times do not reveal which accounts exist.
pub fn verify_against_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("dummy password for timing"));
    let _ = verify_password(password, dummy);
}

/// A password for the break-glass owner: 32 base62 characters (~190 bits).
pub fn generate_password() -> String {
    crate::keys::random_base62()[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn user_policy_and_params() {
        let policy = PasswordPolicy::default();
        assert!(policy.check("short").is_err());
        assert!(
            policy.check("Password123").is_err(),
            "common, whatever the case"
        );
        assert!(policy.check("correct horse battery staple").is_ok());
        assert!(policy.check(&"x".repeat(257)).is_err());
        // Characters, as the API description's maxLength counts them: 256 of them are at most
        // 1 KiB of UTF-8, all that sign-in reads.
        assert!(policy.check(&"é".repeat(256)).is_ok());
        assert!(policy.check(&"é".repeat(257)).is_err());
        assert!(check_policy(&"é".repeat(256)).is_ok());
        assert!(check_policy(&"é".repeat(257)).is_err());
        let strict = PasswordPolicy {
            min_length: 12,
            denylist: None,
            ..PasswordPolicy::default()
        };
        assert!(strict.check("elevenchars").is_err());
        assert!(common_passwords().len() > 100);
        let cheap = PasswordPolicy {
            argon2: Argon2Params {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
            },
            ..PasswordPolicy::default()
        };
        let h = cheap.hash("some password");
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        assert!(
            verify_password("some password", &h),
            "verification reads the hash's own params"
        );
        assert!(Argon2Params {
            memory_kib: 1024,
            ..Argon2Params::default()
        }
        .validate()
        .is_err());
        assert!(Argon2Params::default().validate().is_ok());
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("twelve chars").is_ok());
        assert!(check_policy(&"x".repeat(257)).is_err());
        assert!(check_policy(&generate_password()).is_ok());
    }
}
