//! Minting new secret values: a prefix, then characters drawn uniformly from an alphabet by
//! the operating system's random generator. A spec must promise at least 128 bits of entropy.

use rand::seq::SliceRandom;
use zeroize::Zeroizing;

use crate::InvalidRule;

/// The fewest bits of entropy a generated value may have.
pub const MIN_ENTROPY_BITS: f64 = 128.0;
/// The longest value (after the prefix) a spec may ask for.
pub const MAX_LENGTH: u32 = 4096;
pub const MAX_PREFIX: usize = 64;
const DEFAULT_LENGTH: u32 = 40;

/// The characters a value is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Alphabet {
    /// `A-Z a-z 0-9`.
    #[default]
    Alphanumeric,
    /// `0-9 a-f`.
    Hex,
    /// `A-Z a-z 0-9 - _`.
    Base64url,
    /// Printable ASCII without space, quotes and backslash (safe in most shells and `.env`
    /// files unquoted... mostly: quote it anyway).
    Symbols,
}

impl Alphabet {
    fn characters(self) -> &'static [u8] {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        match self {
            Self::Alphanumeric => ALNUM,
            Self::Hex => b"0123456789abcdef",
            Self::Base64url => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            }
            Self::Symbols => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~"
            }
        }
    }
}

/// How a rotation mints the next value: `{length?, alphabet?, prefix?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Characters after the prefix (default 40, at most 4096; enough for 128 bits).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4096))]
    pub length: Option<u32>,
    pub alphabet: Option<Alphabet>,
    /// Put before the random part, as is (at most 64 printable characters, no spaces).
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub prefix: Option<String>,
}

impl GeneratorSpec {
    /// The spec with its defaults, or what is wrong with it.
    pub fn checked(&self) -> Result<Self, InvalidRule> {
        let alphabet = self.alphabet.unwrap_or_default();
        let length = self.length.unwrap_or(DEFAULT_LENGTH);
        if length == 0 || length > MAX_LENGTH {
            return Err(InvalidRule::new(
                "generator.length",
                format!("must be between 1 and {MAX_LENGTH}"),
            ));
        }
        let bits = f64::from(length) * (alphabet.characters().len() as f64).log2();
        if bits < MIN_ENTROPY_BITS {
            return Err(InvalidRule::new(
                "generator.length",
                format!(
                    "{length} characters of {} give {bits:.0} bits; at least {MIN_ENTROPY_BITS:.0} are needed",
                    serde_json::to_value(alphabet)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(prefix) = &self.prefix {
            if prefix.chars().count() > MAX_PREFIX || prefix.chars().any(|c| !c.is_ascii_graphic())
            {
                return Err(InvalidRule::new(
                    "generator.prefix",
                    format!("at most {MAX_PREFIX} printable ASCII characters, no spaces"),
                ));
            }
        }
        Ok(Self {
            length: Some(length),
            alphabet: Some(alphabet),
            prefix: self.prefix.clone(),
        })
    }

    /// A fresh value (the spec is checked first).
    pub fn generate(&self) -> Result<Zeroizing<String>, InvalidRule> {
        let spec = self.checked()?;
        let characters = spec.alphabet.unwrap_or_default().characters();
        let length = spec.length.unwrap_or(DEFAULT_LENGTH) as usize;
        let prefix = spec.prefix.as_deref().unwrap_or_default();
        let mut value = Zeroizing::new(String::with_capacity(prefix.len() + length));
        value.push_str(prefix);
        let mut rng = rand::rngs::OsRng;
        for _ in 0..length {
            // `choose` draws an index uniformly (no modulo bias).
            let c = characters.choose(&mut rng).copied().unwrap_or(b'0');
            value.push(char::from(c));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_spec_and_differ() {
        let spec = GeneratorSpec {
            length: Some(48),
            alphabet: Some(Alphabet::Hex),
            prefix: Some("sk_live_".into()),
        };
        let a = spec.generate().unwrap();
        let b = spec.generate().unwrap();
        assert_ne!(*a, *b);
        for v in [&a, &b] {
            let rest = v.strip_prefix("sk_live_").unwrap();
            assert_eq!(rest.len(), 48);
            assert!(rest
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        let default = GeneratorSpec::default().generate().unwrap();
        assert_eq!(default.len(), 40);
        assert!(default.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        let spec = GeneratorSpec {
            length: Some(4096),
            alphabet: Some(Alphabet::Symbols),
            prefix: None,
        };
        let v = spec.generate().unwrap();
        for c in Alphabet::Symbols.characters() {
            assert!(v.as_bytes().contains(c), "{} never drawn", char::from(*c));
        }
        assert!(!v.contains(['"', '\'', '\\', ' ']));
    }

    #[test]
    fn weak_or_odd_specs_are_refused_with_the_field() {
        let short = GeneratorSpec {
            length: Some(20),
            alphabet: Some(Alphabet::Hex),
            prefix: None,
        };
        let e = short.generate().unwrap_err();
        assert_eq!(e.field, "generator.length");
        assert!(e.message.contains("80 bits"), "{e}");
        for length in [0, MAX_LENGTH + 1] {
            let e = GeneratorSpec {
                length: Some(length),
                ..Default::default()
            }
            .checked()
            .unwrap_err();
            assert_eq!(e.field, "generator.length");
        }
        for prefix in ["has space", "tab\t", &"p".repeat(65), "é"] {
            let e = GeneratorSpec {
                prefix: Some(prefix.into()),
                ..Default::default()
            }
            .checked()
            .unwrap_err();
            assert_eq!(e.field, "generator.prefix");
        }
    }
}
